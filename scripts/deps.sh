#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (idempotent): tshark (the
# oracle), tcpdump and openssl (TLS captures), snmpd/snmp (poller tests),
# PostgreSQL (store tests, started and given a "test" database), chromium
# (page tests, in headless mode), promtool (package prometheus: alert rules
# and /metrics checks). Run as root; `make test` runs it.
set -euo pipefail

need=()
for pair in tshark:tshark tcpdump:tcpdump openssl:openssl snmpd:snmpd snmpget:snmp psql:postgresql-client ip:iproute2 chromium:chromium promtool:prometheus; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then need+=(postgresql); fi
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$(dirname "$0")/ensure-postgres.sh"
