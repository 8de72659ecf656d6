#!/usr/bin/env bash
# Makes sure the Postgres that the tests use answers at DATABASE_URL (default
# postgres://postgres:postgres@localhost:5432/postgres). When DATABASE_URL is
# set and reachable it is used as is; otherwise this starts (and, on Debian as
# root, installs) a local server and gives the postgres role the password.
set -euo pipefail

url="${DATABASE_URL:-postgres://postgres:postgres@localhost:5432/postgres}"
say() { echo "ensure-postgres: $*" >&2; }

can_login() { psql "$url" -Atqc 'select 1' >/dev/null 2>&1; }

# TLS for the sslmode tests: a test CA (its certificate in .tools/pg-tls/ca.crt)
# signs a server certificate for the name localhost only, so that verify-full
# to 127.0.0.1 fails on the name while verify-ca passes; ssl is turned on with
# a reload. Plain connections keep working (pg_hba's "host" lines take both).
# Only for a local cluster this script may administer.
tls_dir=".tools/pg-tls"
tls_san="DNS:localhost"
# Another checkout's run (a clean clone's `make test`) may have signed the
# server's certificate with its own CA: then ours no longer verifies it, and
# this checkout issues a new pair rather than failing every TLS test.
trusts_our_ca() {
  local sep='?'
  case "$url" in *\?*) sep='&' ;; esac
  psql "${url}${sep}sslmode=verify-ca&sslrootcert=$tls_dir/ca.crt" -Atqc 'select 1' >/dev/null 2>&1
}
ensure_tls() {
  [ -f "$tls_dir/ca.crt" ] && [ "$(cat "$tls_dir/san" 2>/dev/null)" = "$tls_san" ] &&
    [ "$(psql "$url" -Atqc 'show ssl' 2>/dev/null)" = on ] && trusts_our_ca && return 0
  local data
  data=$(psql "$url" -Atqc 'show data_directory' 2>/dev/null) || return 0
  [ -d "$data" ] || { say "ssl is off and the server's data directory is not on this machine; the TLS tests need ssl on"; return 0; }
  say "turning on TLS with a test CA (certificate in $tls_dir/ca.crt)"
  mkdir -p "$tls_dir"
  local work
  work=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=login-etl test CA" \
    -keyout "$work/ca.key" -out "$tls_dir/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$tls_san" >"$work/ext"
  openssl x509 -req -in "$work/server.csr" -CA "$tls_dir/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 3650 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null
  as_root install -D -o postgres -g postgres -m 0600 "$work/server.key" "$data/login-etl-tls/server.key"
  as_root install -D -o postgres -g postgres -m 0644 "$work/server.crt" "$data/login-etl-tls/server.crt"
  rm -rf "$work"
  printf '%s' "$tls_san" >"$tls_dir/san"
  psql "$url" -qc "ALTER SYSTEM SET ssl_cert_file = '$data/login-etl-tls/server.crt'" \
    -c "ALTER SYSTEM SET ssl_key_file = '$data/login-etl-tls/server.key'" \
    -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 20); do [ "$(psql "$url" -Atqc 'show ssl')" = on ] && return 0; sleep 0.25; done
  say "ssl is still off after the reload; see the server log"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else say "need root for: $*"; return 1; fi; }

if command -v psql >/dev/null 2>&1 && can_login; then
  ensure_tls
  exit 0
fi
if [ -n "${DATABASE_URL:-}" ]; then
  say "DATABASE_URL is set but cannot be reached; start that server or unset DATABASE_URL to use a local one"
  exit 1
fi

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
ensure_tls
