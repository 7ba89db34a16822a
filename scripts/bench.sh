#!/usr/bin/env bash
# Measures sbcwatch analyze against tshark on the same synthetic capture in
# the same run, then the peak memory of sbcwatch on two busy-SBC captures
# (30 000 and 300 000 calls, 6 000 up at once), and writes the figures to
# BENCHMARKS.md. Usage:
#   scripts/bench.sh [CALLS]     (default 20000 calls, ~48 MB)
# MEM=0 skips the memory part (it writes a 700 MB temporary capture);
# SPEED=0 skips the tshark comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/sbcwatch" ./cmd/sbcwatch
# append_row HEADER ROW: adds ROW at the end of the Markdown table whose
# header line starts with HEADER (tables may follow one another).
append_row() {
  awk -v h="$1" -v row="$2" '
    index($0, h) == 1 { intable = 1 }
    intable && !/^\|/ { print row; intable = 0; done = 1 }
    { print }
    END { if (intable) print row; else if (!done) exit 1 }
  ' BENCHMARKS.md >"$tmp/bm" && cp "$tmp/bm" BENCHMARKS.md
}

if [ "${SPEED:-1}" = 1 ]; then
go run ./tools/gencap -calls "$calls" -o "$tmp/bench.pcap"
size=$(stat -c %s "$tmp/bench.pcap")
frames=$(capinfos -c -M "$tmp/bench.pcap" | awk -F: '/Number of packets/{gsub(/ /,"",$2);print $2}')

# best of 3 wall-clock seconds and peak RSS (KiB) of a command
measure() {
  local best="" rss=""
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    read -r s m <"$tmp/t"
    if [ -z "$best" ] || awk "BEGIN{exit !($s < $best)}"; then best=$s; fi
    if [ -z "$rss" ] || [ "$m" -gt "$rss" ]; then rss=$m; fi
  done
  echo "$best $rss"
}
read -r ts tr < <(measure tshark -r "$tmp/bench.pcap" -T fields -e sip.Call-ID -e sip.Method -e sip.Status-Code \
  -e tls.handshake.extensions_server_name -e x509sat.printableString -e tls.alert_message.desc)
read -r ss sr < <(measure "$tmp/sbcwatch" analyze --format json "$tmp/bench.pcap")
ratio=$(awk "BEGIN{printf \"%.1f\", $ts/$ss}")
mb=$(awk "BEGIN{printf \"%.1f\", $size/1048576}")
echo "capture: $calls calls, $frames frames, $mb MB"
echo "tshark:   ${ts}s  peak RSS $((tr/1024)) MiB"
echo "sbcwatch: ${ss}s  peak RSS $((sr/1024)) MiB  (${ratio}x tshark)"
if [ "${WRITE:-1}" = 1 ]; then
  {
    echo "| date | capture | tshark s | tshark MiB | sbcwatch s | sbcwatch MiB | speed-up |"
    echo "|---|---|---|---|---|---|---|"
  } >"$tmp/head"
  line="| $(date -u +%Y-%m-%d) | gencap $calls calls, $frames frames, $mb MB | $ts | $((tr/1024)) | $ss | $((sr/1024)) | ${ratio}× |"
  if [ -f BENCHMARKS.md ] && grep -q '^| date | capture |' BENCHMARKS.md; then
    append_row '| date | capture |' "$line"
  else
    echo "bench: BENCHMARKS.md has no results table; add one" >&2
  fi
fi

fi

# Memory: peak RSS of `analyze --format json` on SIP-heavy captures of a
# busy SBC (SIP over UDP, 6 000 calls up at once, each up 3 minutes). The
# streaming engine's memory follows the calls up at once and the
# correlation windows, not the length of the capture.
if [ "${MEM:-1}" = 1 ]; then
  mem_rows=()
  for n in 30000 300000; do
    go run ./tools/gencap -calls "$n" -up 6000 -hold 3m -tls-every 0 -o "$tmp/busy.pcap"
    msize=$(awk "BEGIN{printf \"%.0f\", $(stat -c %s "$tmp/busy.pcap")/1048576}")
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$tmp/sbcwatch" analyze --format json "$tmp/busy.pcap" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    read -r s m <"$tmp/t"
    echo "busy SBC: $n calls, $msize MB: ${s}s, peak RSS $((m/1024)) MiB"
    mem_rows+=("| $(date -u +%Y-%m-%d) | gencap -calls $n -up 6000 -hold 3m -tls-every 0, $msize MB | $s | $((m/1024)) |")
    rm -f "$tmp/busy.pcap"
  done
  if [ "${WRITE:-1}" = 1 ]; then
    if grep -q '^| date | busy capture |' BENCHMARKS.md; then
      for r in "${mem_rows[@]}"; do append_row '| date | busy capture |' "$r"; done
    else
      echo "bench: BENCHMARKS.md has no memory table; add one" >&2
    fi
  fi
fi
