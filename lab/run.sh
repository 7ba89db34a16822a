#!/usr/bin/env bash
# lab/run.sh [scenario...] — build the lab network in network namespaces,
# run each scenario (all when none is named) and write
# testdata/lab/<scenario>.pcap. Needs root, ip(8), tcpdump, go; tshark is
# used to check the captures when present. See lab/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${LAB_OUT:-$ROOT/testdata/lab}
PKI=${LAB_PKI:-$ROOT/lab/.pki}
LOGS=${LAB_LOGS:-$ROOT/lab/.out}
LATE_RETRY=${LATE_RETRY:-12s}
P=sbcwlab
LEAVES=(sbc ms car col)
ALL=(transfer_fails_default_cert transfer_works refer_rejected refer_not_followed refer_not_allowed cert_expired cert_expiring contact_ip some_wrong_cert busy_sbc probes_close_notify)

if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh: needs root (network namespaces, tcpdump)" >&2
	exit 2
fi
for tool in ip tcpdump go; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done

SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -eq 0 ]] && SCENARIOS=("${ALL[@]}")
for s in "${SCENARIOS[@]}"; do
	[[ " ${ALL[*]} " == *" $s "* ]] || { echo "run.sh: unknown scenario $s (have: ${ALL[*]})" >&2; exit 2; }
done

BIN=$(mktemp -d)
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	for ns in "${LEAVES[@]}" br; do
		ip netns del "$P-$ns" 2>/dev/null || true
	done
	rm -rf "$BIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building lab programs"
(cd "$ROOT" && go build -o "$BIN/" ./lab/cmd/sbc ./lab/cmd/msproxy ./lab/cmd/carrier ./lab/cmd/collector ./lab/cmd/labcerts)

# Keeps an existing CA; (re)issues certificates that are missing or stale.
"$BIN/labcerts" -dir "$PKI"
mkdir -p "$OUT" "$LOGS"
if [[ -f $OUT/ca.pem ]] && ! cmp -s "$PKI/ca.pem" "$OUT/ca.pem" && [[ ${#SCENARIOS[@]} -lt ${#ALL[@]} ]]; then
	echo "run.sh: warning: $PKI/ca.pem differs from $OUT/ca.pem: captures not re-run now will not match the new CA" >&2
fi

setup_net() {
	for ns in "${LEAVES[@]}" br; do
		ip netns del "$P-$ns" 2>/dev/null || true
		ip netns add "$P-$ns"
		ip netns exec "$P-$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		ip -n "$P-$ns" link set lo up
	done
	ip -n "$P-br" link add br0 type bridge stp_state 0 forward_delay 0
	ip -n "$P-br" link set br0 up
	for leaf in "${LEAVES[@]}"; do
		ip -n "$P-br" link add "p-$leaf" type veth peer name eth0 netns "$P-$leaf"
		ip -n "$P-br" link set "p-$leaf" master br0 up
		ip -n "$P-$leaf" link set eth0 up
	done
	ip -n "$P-sbc" addr add 192.0.2.10/24 dev eth0
	ip -n "$P-col" addr add 192.0.2.200/24 dev eth0
	ip -n "$P-car" addr add 198.51.100.7/24 dev eth0
	ip -n "$P-ms" addr add 52.114.132.46/32 dev eth0
	ip -n "$P-ms" addr add 52.114.76.76/32 dev eth0
	ip -n "$P-ms" addr add 52.114.75.24/32 dev eth0
	# One L2 segment: every leaf reaches every other address on-link.
	for leaf in "${LEAVES[@]}"; do
		ip -n "$P-$leaf" route add default dev eth0
	done
}

run_scenario() {
	local sc=$1 log=$LOGS/$1 pcap=$OUT/$1.pcap
	rm -rf "$log"
	mkdir -p "$log"
	echo "== $sc"
	setup_net
	ip netns exec "$P-br" tcpdump -i br0 -s 0 -U -Z root -w "$pcap" \
		'udp port 5060 or tcp port 5061 or udp port 925' 2>"$log/tcpdump.log" &
	local tcpdump=$!
	PIDS+=("$tcpdump")
	local i
	for i in $(seq 50); do
		grep -q "listening on" "$log/tcpdump.log" 2>/dev/null && break
		sleep 0.1
	done
	local t0=$(($(date +%s%3N) + 1500))
	local common=(-scenario "$sc" -t0 "$t0" -pki "$PKI")
	local pids=()
	ip netns exec "$P-col" timeout 120 "$BIN/collector" "${common[@]}" 2>"$log/collector.log" &
	pids+=($!)
	ip netns exec "$P-ms" timeout 120 "$BIN/msproxy" "${common[@]}" -late-retry "$LATE_RETRY" 2>"$log/msproxy.log" &
	pids+=($!)
	ip netns exec "$P-sbc" timeout 120 "$BIN/sbc" "${common[@]}" 2>"$log/sbc.log" &
	pids+=($!)
	ip netns exec "$P-car" timeout 120 "$BIN/carrier" "${common[@]}" 2>"$log/carrier.log" &
	pids+=($!)
	PIDS+=("${pids[@]}")
	local rc=0 pid
	for pid in "${pids[@]}"; do
		wait "$pid" || rc=1
	done
	sleep 0.5
	kill -INT "$tcpdump" 2>/dev/null || true
	wait "$tcpdump" || true
	PIDS=()
	for ns in "${LEAVES[@]}" br; do
		ip netns del "$P-$ns"
	done
	if [[ $rc -ne 0 ]]; then
		echo "run.sh: $sc: a lab program failed; logs in $log" >&2
		tail -n 5 "$log"/*.log >&2
		return 1
	fi
	tail -n 1 "$log/collector.log"
	if command -v tshark >/dev/null; then
		verify "$pcap"
	fi
}

verify() {
	local f=$1 n
	n=$(tshark -r "$f" -Y 'sip && udp.port==5060' 2>/dev/null | wc -l)
	echo "   carrier SIP (UDP 5060):      $n"
	n=$(tshark -r "$f" -d udp.port==925,acdr -Y 'acdr && sip' 2>/dev/null | wc -l)
	echo "   ACDR packets decoded as SIP: $n"
	echo "   certificates served (CN of each Certificate message, in order):"
	tshark -r "$f" -Y 'tls.handshake.type==11' -T fields -e ip.src -e ip.dst -e x509sat.printableString 2>/dev/null |
		sed 's/^/     /'
	echo "   plaintext TLS alerts (handshake aborts):"
	tshark -r "$f" -Y 'tls.alert_message.desc' -T fields -e frame.time_relative -e ip.src -e ip.dst -e tls.alert_message.desc 2>/dev/null |
		sed 's/^/     /'
	if [[ $(tshark -r "$f" -d udp.port==925,acdr -Y '_ws.expert.message contains "not supported"' 2>/dev/null | wc -l) -ne 0 ]]; then
		echo "run.sh: $f: Wireshark rejects the ACDR version" >&2
		return 1
	fi
}

for sc in "${SCENARIOS[@]}"; do
	run_scenario "$sc"
done
cp "$PKI/ca.pem" "$OUT/ca.pem"
echo "== done: captures in $OUT, logs in $LOGS"
