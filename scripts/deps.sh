#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (idempotent): tshark (the
# oracle), tcpdump and openssl (TLS captures), snmpd/snmp (poller tests),
# PostgreSQL (store tests, started and given a "test" database), chromium
# (page tests, in headless mode), tcpreplay and logger (serve tests), promtool (package prometheus: alert rules
# and /metrics checks), systemd-analyze (unit check), git (version test),
# @redocly/cli (npm, pinned: OpenAPI lint). Run as root; `make test` runs it.
set -euo pipefail

need=()
for pair in curl:curl tshark:tshark tcpdump:tcpdump openssl:openssl snmpd:snmpd snmpget:snmp psql:postgresql-client ip:iproute2 tcpreplay:tcpreplay logger:bsdutils chromium:chromium promtool:prometheus systemd-analyze:systemd git:git; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then need+=(postgresql); fi
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ -x /usr/bin/time ] || need+=(time) # GNU time: scripts/bench.sh reads CPU time and peak RSS
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# redocly lint of api/openapi.json (TestRedoclyLint), pinned. @redocly/cli
# needs Node.js >= 20.19 (Debian's nodejs 18 is too old: use NodeSource's).
REDOCLY_VERSION=2.77.0
if ! command -v redocly >/dev/null 2>&1 || [ "$(redocly --version 2>/dev/null | tail -1)" != "$REDOCLY_VERSION" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' ||
    { echo "deps: @redocly/cli $REDOCLY_VERSION needs Node.js >= 20.19, found $(node --version)" >&2; exit 1; }
  echo "deps: installing @redocly/cli@$REDOCLY_VERSION"
  npm install -g --no-fund --no-audit "@redocly/cli@$REDOCLY_VERSION" >/dev/null
fi
bash "$(dirname "$0")/ensure-postgres.sh"
