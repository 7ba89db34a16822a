#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth
# for user postgres from loopback, and that the database "test" exists.
# Starts an installed but stopped cluster; on a fresh install (test
# machines only) adds trust auth for loopback first.
set -euo pipefail
host=127.0.0.1
ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$ver" ]; then
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  changed=0
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    changed=1
  fi
  if ! pg_isready -q -h "$host" -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    for _ in $(seq 1 30); do pg_isready -q -h "$host" -p 5432 && break; sleep 1; done
  elif [ "$changed" = 1 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  fi
elif ! pg_isready -q -h "$host" -p 5432 2>/dev/null; then
  echo "ensure-postgres: no PostgreSQL cluster found; run scripts/deps.sh as root" >&2
  exit 1
fi
pg_isready -h "$host" -p 5432
if ! psql -h "$host" -U postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1; then
  psql -h "$host" -U postgres -c 'create database test'
fi
