#!/usr/bin/env bash
# Makes sure the Postgres that the tests use answers at DATABASE_URL (default
# postgres://postgres:postgres@localhost:5432/postgres). When DATABASE_URL is
# set and reachable it is used as is; otherwise this starts (and, on Debian as
# root, installs) a local server and gives the postgres role the password.
set -euo pipefail

url="${DATABASE_URL:-postgres://postgres:postgres@localhost:5432/postgres}"
say() { echo "ensure-postgres: $*" >&2; }

can_login() { psql "$url" -Atqc 'select 1' >/dev/null 2>&1; }

if command -v psql >/dev/null 2>&1 && can_login; then
  exit 0
fi
if [ -n "${DATABASE_URL:-}" ]; then
  say "DATABASE_URL is set but cannot be reached; start that server or unset DATABASE_URL to use a local one"
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else say "need root for: $*"; return 1; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    say "installing postgresql with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null ||
      { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
  else
    say "no local Postgres and no apt-get: start Postgres yourself and set DATABASE_URL"
    exit 1
  fi
fi

cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  say "creating cluster $version main"
  as_root pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
# shellcheck disable=SC2086
if ! pg_lsclusters --no-header | awk '{print $4}' | grep -q online; then
  say "starting cluster $cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
fi
for _ in $(seq 1 30); do pg_isready -q -h localhost && break; sleep 0.5; done

if ! can_login; then
  say "setting the password of role postgres to match $url"
  password=$(printf '%s' "$url" | sed -nE 's#^[a-z]+://[^:/@]+:([^@]*)@.*#\1#p')
  as_root su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD '${password}'\"" >/dev/null
fi
can_login || { say "Postgres runs but $url still refuses the login"; exit 1; }
