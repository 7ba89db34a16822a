#!/bin/sh
# Regenerates testdata/peers.pcap and testdata/certs/*.pem: real TLS peers
# (Go crypto/tls and openssl s_server/s_client) on 127.0.0.1, captured
# with tcpdump on lo. Run from anywhere as root (tcpdump): sh gen.sh
# Ports: 47001 SNI-selected cert / self-signed default, 47002 expired,
# 47003 TLS 1.0 only, 47004 TLS 1.3, 47005 openssl -cert2/-servername,
# 47006 two certs for one SNI, 47007 "Microsoft" (127.0.0.2) aborting on
# the default cert 4 times, 47008 client-auth-only EKU, 47009 mutual TLS,
# 47010 client reset. See tlsaudit/peers_test.go for what each must show.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
command -v tcpdump >/dev/null && command -v openssl >/dev/null
rm -rf certs && mkdir certs
tcpdump -i lo -U -s 0 -w peers.pcap 'tcp portrange 47000-47099' 2>tcpdump.log &
tpid=$!
sleep 1
(cd genpeers && go run . -certs "$here/certs")
sleep 1
kill "$tpid"
wait "$tpid" || true
cat tcpdump.log >&2
rm -f tcpdump.log
ls -l peers.pcap certs
