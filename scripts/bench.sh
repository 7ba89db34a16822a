#!/usr/bin/env bash
# The performance figures of BENCHMARKS.md in one run, each against tshark
# (or a target) in the same run on the same machine:
#   mixed  the original comparison: 20 000 calls with TLS handshakes,
#          tshark extracting the same facts (table "Results")
#   sip    SIP-heavy capture of a busy SBC, 30 000 calls over UDP, 6 000
#          up at once (gencap -up 6000 -hold 3m): sbcwatch analyze vs
#          tshark (and heplify when it is on PATH, see BENCHMARKS.md for
#          how it is built); peak RSS also goes to
#          the table "Memory on a busy SBC"
#   big    the same with 300 000 calls: SIP messages/s end to end
#   rtp    RTP-heavy capture (1 000 calls, 250 RTP packets each way)
#   store  analyze --store on the 30 000-call capture: ingest rate
#   api    one million stored calls, one number in 100 000 of them:
#          p50/p99 at 200 requests/s on search by number, call detail
#          and findings (sbcwatch serve + tools/apibench)
# Usage: scripts/bench.sh            all parts (about 7 minutes on the
#                                    project's 2-core machine when idle;
#                                    tshark runs once per capture, sbcwatch
#                                    best of RUNS=3)
#        PARTS="sip rtp" scripts/bench.sh
#        QUICK=1 scripts/bench.sh    a tenth of every size (a smoke run)
# Figures are appended to BENCHMARKS.md (WRITE=0 to only print them).
# Needs tshark, capinfos, GNU time, and for store/api PostgreSQL at
# $SBCWATCH_BENCH_DB (default the test database).
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${PARTS:-mixed sip big rtp store api}
runs=${RUNS:-3}
db=${SBCWATCH_BENCH_DB:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
scale() { if [ "${QUICK:-0}" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi; }
tmp=$(mktemp -d)
pids=()
schemas=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for s in "${schemas[@]}"; do psql -q "$db" -c "drop schema if exists $s cascade" >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
# append_row HEADER ROW: adds ROW at the end of the Markdown table whose
# header line starts with HEADER (tables may follow one another).
append_row() {
	[ "${WRITE:-1}" = 1 ] || return 0
	awk -v h="$1" -v row="$2" '
    index($0, h) == 1 { intable = 1 }
    intable && !/^\|/ { print row; intable = 0; done = 1 }
    { print }
    END { if (intable) print row; else if (!done) exit 1 }
  ' BENCHMARKS.md >"$tmp/bm" && cp "$tmp/bm" BENCHMARKS.md || echo "bench: BENCHMARKS.md has no table $1" >&2
}
CGO_ENABLED=0 go build -o "$tmp/sbcwatch" ./cmd/sbcwatch
go build -o "$tmp/gencap" ./tools/gencap
go build -o "$tmp/apibench" ./tools/apibench
out="$tmp/results.md"
began=$(date +%s)
{
	echo
	echo "### $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo
	echo "Machine: $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg); tshark $(tshark -v 2>/dev/null | head -1 | awk '{print $2}'); best of $runs wall-clock runs (CPU = user+sys of that run)."
	echo
	echo "| what | command | wall s | CPU s | peak RSS MiB | figure |"
	echo "|---|---|---|---|---|---|"
} >"$out"

# measure LABEL CMD...: best wall-clock of $n (default $runs) runs; sets
# wall, cpu, rss.
measure() {
	local label=$1
	shift
	wall="" cpu="" rss=0
	for _ in $(seq "${n:-$runs}"); do
		/usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" || {
			echo "bench: $label failed:" >&2
			tail -5 "$tmp/err" >&2
			exit 1
		}
		read -r e u s m <"$tmp/t"
		if [ -z "$wall" ] || awk "BEGIN{exit !($e < $wall)}"; then
			wall=$e
			cpu=$(awk "BEGIN{printf \"%.2f\", $u + $s}")
		fi
		[ "$m" -gt "$rss" ] && rss=$m
	done
	echo "$label: ${wall}s wall, ${cpu}s CPU, $((rss / 1024)) MiB" >&2
}
row() { echo "| $1 | \`$2\` | $wall | $cpu | $((rss / 1024)) | $3 |" >>"$out"; }
ratio() { awk "BEGIN{printf \"%.1f\", $1 / $2}"; }

gen() { # gen NAME ARGS...: a capture, made once
	local f="$tmp/$1.pcap"
	shift
	[ -f "$f" ] || "$tmp/gencap" "$@" -o "$f"
	echo "$f"
}

busy_row() { # busy_row CALLS FILE: the memory table of BENCHMARKS.md
	local mb
	mb=$(awk "BEGIN{printf \"%.0f\", $(stat -c %s "$2")/1048576}")
	append_row '| date | busy capture |' "| $(date -u +%Y-%m-%d) | gencap -calls $1 -up $(scale 6000) -hold 3m -tls-every 0, $mb MB | $wall | $((rss / 1024)) |"
}

sip_part() { # sip_part NAME CALLS: sbcwatch vs tshark (and heplify)
	local name=$1 calls=$2 f msgs ts tc
	f=$(gen "$name" -calls "$calls" -up "$(scale 6000)" -hold 3m -tls-every 0)
	msgs=$((calls * 7))
	n=1 measure "tshark $name" tshark -n -r "$f" -Y sip -T fields -e sip.Call-ID -e sip.Method
	ts=$wall tc=$cpu
	row "tshark, $calls calls ($msgs SIP messages)" "tshark -n -r F -Y sip -T fields -e sip.Call-ID -e sip.Method" ""
	measure "sbcwatch $name" "$tmp/sbcwatch" analyze --format json "$f"
	row "sbcwatch, same capture" "sbcwatch analyze --format json F" "$(ratio "$ts" "$wall")× tshark wall, $(ratio "$tc" "$cpu")× CPU; $(awk "BEGIN{printf \"%.0f\", $msgs / $wall}") SIP msg/s"
	sbc_wall=$wall sbc_cpu=$cpu
	busy_row "$calls" "$f"
	if command -v heplify >/dev/null && command -v python3 >/dev/null; then
		heplify_row "$name" "$f"
	elif command -v heplify >/dev/null; then
		echo "bench: heplify skipped: its HEP sink needs python3" >&2
	fi
}

# heplify_row NAME FILE: heplify (github.com/sipcapture/heplify, built as
# BENCHMARKS.md says) reads FILE at full speed (-rs), parses each SIP
# datagram and forwards it as HEP over UDP to a local socket that is
# bound but never read (the kernel drops what overflows it, so no send
# fails and nothing else spends CPU on it). With the default -lp 1 it
# exits at the end of the file (-eof-exit says so too); timeout guards a
# heplify that waits forever, as it does when it cannot open the file.
heplify_row() {
	local name=$1 f=$2 port sink
	port=$((40000 + RANDOM % 20000))
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
time.sleep(3600)' "$port" &
	sink=$!
	pids+=("$sink")
	for _ in $(seq 50); do ss -Hlun "sport = :$port" 2>/dev/null | grep -q . && break || sleep 0.1; done
	measure "heplify $name" timeout 600 heplify -t pcap -rf "$f" -rs -m SIP -eof-exit -hs "127.0.0.1:$port"
	kill "$sink" 2>/dev/null || true
	row "heplify $(heplify -version 2>/dev/null | awk 'NR==1{print $2}') (parse and forward only)" "heplify -t pcap -rf F -rs -m SIP -eof-exit -hs 127.0.0.1:PORT" "sbcwatch $(ratio "$wall" "$sbc_wall")× faster than heplify wall, $(ratio "$cpu" "$sbc_cpu")× CPU"
}

for part in $parts; do
	case $part in
	sip) sip_part sip "$(scale 30000)" ;;
	mixed)
		calls=$(scale 20000)
		f=$(gen mixed -calls "$calls")
		frames=$(capinfos -c -M "$f" | awk -F: '/Number of packets/{gsub(/ /,"",$2);print $2}')
		mb=$(awk "BEGIN{printf \"%.1f\", $(stat -c %s "$f")/1048576}")
		n=1 measure "tshark mixed" tshark -r "$f" -T fields -e sip.Call-ID -e sip.Method -e sip.Status-Code \
			-e tls.handshake.extensions_server_name -e x509sat.printableString -e tls.alert_message.desc
		ts=$wall tr=$rss
		row "tshark, mixed: $calls calls with TLS, $frames frames" "tshark -r F -T fields -e sip.Call-ID … -e tls.alert_message.desc" ""
		measure "sbcwatch mixed" "$tmp/sbcwatch" analyze --format json "$f"
		row "sbcwatch, same capture" "sbcwatch analyze --format json F" "$(ratio "$ts" "$wall")× tshark wall"
		append_row '| date | capture |' "| $(date -u +%Y-%m-%d) | gencap $calls calls, $frames frames, $mb MB | $ts | $((tr / 1024)) | $wall | $((rss / 1024)) | $(ratio "$ts" "$wall")× |"
		;;
	big)
		calls=$(scale 300000)
		f=$(gen big -calls "$calls" -up "$(scale 6000)" -hold 3m -tls-every 0)
		msgs=$((calls * 7))
		measure "sbcwatch big" "$tmp/sbcwatch" analyze --format json "$f"
		row "sbcwatch, $calls calls ($msgs SIP messages)" "sbcwatch analyze --format json F" "$(awk "BEGIN{printf \"%.0f\", $msgs / $wall}") SIP msg/s (target ≥ 250 000)"
		busy_row "$calls" "$f"
		rm -f "$f"
		;;
	rtp)
		calls=$(scale 1000)
		f=$(gen rtp -calls "$calls" -rtp 250 -concurrent 200 -tls-every 0)
		frames=$(capinfos -c -M "$f" | awk -F: '/Number of packets/{gsub(/ /,"",$2);print $2}')
		n=1 measure "tshark rtp" tshark -n -r "$f" -Y sip -T fields -e sip.Call-ID -e sip.Method
		ts=$wall tc=$cpu
		row "tshark, RTP-heavy: $calls calls, $frames frames" "tshark -n -r F -Y sip -T fields -e sip.Call-ID -e sip.Method" ""
		measure "sbcwatch rtp" "$tmp/sbcwatch" analyze --format json "$f"
		row "sbcwatch, same capture" "sbcwatch analyze --format json F" "$(ratio "$ts" "$wall")× tshark wall, $(ratio "$tc" "$cpu")× CPU (target ≥ 20×)"
		;;
	store)
		calls=$(scale 30000)
		f=$(gen sip -calls "$calls" -up "$(scale 6000)" -hold 3m -tls-every 0)
		msgs=$((calls * 7))
		measure "analyze without store" "$tmp/sbcwatch" analyze --format json "$f"
		plain=$wall
		# A fresh schema per run, so every run stores everything.
		store_run() {
			local s
			s=sbcw_bench_store_$RANDOM$RANDOM
			schemas+=("$s")
			psql -q "$db" -c "create schema $s" >/dev/null
			local dsn
			if [[ $db == *\?* ]]; then dsn="$db&search_path=$s"; else dsn="$db?search_path=$s"; fi
			"$tmp/sbcwatch" migrate --db "$dsn" >/dev/null 2>&1
			/usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$tmp/sbcwatch" analyze --format json --store --db "$dsn" "$f" >/dev/null 2>"$tmp/err" || {
				tail -5 "$tmp/err" >&2
				exit 1
			}
		}
		wall="" rss=0
		for _ in $(seq "$runs"); do
			store_run
			read -r e u s m <"$tmp/t"
			if [ -z "$wall" ] || awk "BEGIN{exit !($e < $wall)}"; then
				wall=$e
				cpu=$(awk "BEGIN{printf \"%.2f\", $u + $s}")
			fi
			[ "$m" -gt "$rss" ] && rss=$m
		done
		extra=$(awk "BEGIN{d = $wall - $plain; if (d < 0.001) d = 0.001; printf \"%.0f\", $msgs / d}")
		row "analyze --store, $calls calls ($msgs SIP messages)" "sbcwatch analyze --format json --store --db DSN F" "$(awk "BEGIN{printf \"%.0f\", $msgs / $wall}") msg/s end to end; store part $extra msg/s (${wall}s − ${plain}s without --store; target ≥ 150 000)"
		;;
	api)
		calls=$(scale 1000000)
		eval "$("$tmp/apibench" seed -db "$db" -calls "$calls" -busy "$(scale 100000)")"
		schemas+=("$APIBENCH_SCHEMA")
		port=$((20000 + RANDOM % 20000))
		"$tmp/sbcwatch" serve --db "$APIBENCH_DSN" --listen "127.0.0.1:$port" >"$tmp/serve.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break || sleep 0.2; done
		# shellcheck disable=SC2086 # APIBENCH_PATHS is a list
		"$tmp/apibench" load -url "http://127.0.0.1:$port" -token "$APIBENCH_TOKEN" -rate 200 -duration "${API_DURATION:-30s}" $APIBENCH_PATHS | tee "$tmp/api.txt"
		kill "${pids[-1]}" 2>/dev/null || true
		{
			echo
			echo "API, $calls stored calls ($(scale 100000) of one number), \`apibench load -rate 200 -duration ${API_DURATION:-30s}\` against \`sbcwatch serve\` (open loop; target p99 < 50 ms):"
			echo
			echo '```'
			cat "$tmp/api.txt"
			echo '```'
		} >>"$out"
		;;
	*) echo "bench: unknown part $part (mixed sip big rtp store api)" >&2; exit 2 ;;
	esac
done
echo >>"$out"
echo "Whole run: $(($(date +%s) - began)) s." >>"$out"
cat "$out"
if [ "${WRITE:-1}" = 1 ]; then
	if grep -q '^## Runs of scripts/bench.sh' BENCHMARKS.md; then
		cat "$out" >>BENCHMARKS.md
	else
		echo "bench: BENCHMARKS.md has no section \"Runs of scripts/bench.sh\"; add one" >&2
	fi
fi
