#!/bin/sh
# Regenerates the real-peer captures: real TLS peers (Go crypto/tls and
# openssl s_server/s_client) on 127.0.0.1/127.0.0.2, captured with tcpdump
# on lo. Run from anywhere as root (tcpdump):
#
#   sh gen.sh            # peers.pcap and certs/*.pem
#   sh gen.sh outcomes   # outcomes.pcap.gz and certs/outcomes/*.pem
#
# peers ports: 47001 SNI-selected cert / self-signed default, 47002 expired,
# 47003 TLS 1.0 only, 47004 TLS 1.3, 47005 openssl -cert2/-servername,
# 47006 two certs for one SNI, 47007 "Microsoft" (127.0.0.2) aborting on
# the default cert 4 times, 47008 client-auth-only EKU, 47009 mutual TLS,
# 47010 client reset. See tlsaudit/peers_test.go for what each must show.
# outcomes ports 47101-47113: see genpeers/outcomes.go and
# tlsaudit/outcomes_test.go.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
command -v tcpdump >/dev/null && command -v openssl >/dev/null
set=${1:-peers}
case $set in
peers)
	certs=certs out=peers.pcap ports=47000-47099
	rm -f certs/*.pem
	;;
outcomes)
	certs=certs/outcomes out=outcomes.pcap ports=47100-47199
	rm -rf certs/outcomes
	;;
*)
	echo "gen.sh: unknown set $set (peers or outcomes)" >&2
	exit 2
	;;
esac
mkdir -p "$certs"
tcpdump -i lo -U -s 0 -w "$out" "tcp portrange $ports" 2>tcpdump.log &
tpid=$!
sleep 1
(cd genpeers && go run . -set "$set" -certs "$here/$certs")
sleep 1
kill "$tpid"
wait "$tpid" || true
cat tcpdump.log >&2
rm -f tcpdump.log
if [ "$set" = outcomes ]; then
	gzip -9f "$out"
	out=$out.gz
fi
ls -l "$out" "$certs"
