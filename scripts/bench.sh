#!/usr/bin/env bash
# Measures sbcwatch analyze against tshark on the same synthetic capture in
# the same run, and writes the figures to BENCHMARKS.md. Usage:
#   scripts/bench.sh [CALLS]     (default 20000 calls, ~48 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/sbcwatch" ./cmd/sbcwatch
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
  if [ -f BENCHMARKS.md ] && grep -q '^| date |' BENCHMARKS.md; then
    echo "$line" >>BENCHMARKS.md
  else
    echo "bench: BENCHMARKS.md has no results table; add one" >&2
  fi
fi
