#!/usr/bin/env bash
# The binary's main path, as CI runs it after `make build`:
#   scripts/binary_smoke.sh ./dist/login-etl
# (the tests run it with `deno run <the binary's permissions> src/main.ts`).
# Against the Postgres at DATABASE_URL (required: a fresh schema, dropped after) and an
# SQS endpoint of its own (local-aws-sqs): seed 500 messages, 10% malformed;
# `check` must pass; `drain` with one worker thread must write every valid
# row, reject the rest and empty the queue; `report` must agree.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 LOGIN-ETL-COMMAND..." >&2
  exit 2
fi
cd "$(dirname "$0")/.."
DENO="${DENO:-deno}"
if [ -z "${DATABASE_URL:-}" ]; then
  echo "$0: set DATABASE_URL to a Postgres superuser URL (a fresh schema is made there and dropped after)" >&2
  exit 2
fi
export LOGIN_ETL_SCHEMA="smoke_$$_$(date +%s)"
# A state schema of its own: never the shared default login_etl.
export LOGIN_ETL_STATE_SCHEMA="${LOGIN_ETL_SCHEMA}_state"
export PII_HMAC_KEY="binary smoke test key, not a real one (32+ bytes)"
export LOGIN_ETL_LOG_FORMAT=json
work="$(mktemp -d)"

endpoint_pid=""
cleanup() {
  [ -n "$endpoint_pid" ] && kill "$endpoint_pid" 2>/dev/null || true
  "$DENO" eval --quiet "
    import postgres from 'postgres';
    const sql = postgres(Deno.env.get('DATABASE_URL'), { max: 1, onnotice: () => {} });
    await sql.unsafe('DROP SCHEMA IF EXISTS \"${LOGIN_ETL_STATE_SCHEMA}\" CASCADE');
    await sql.unsafe('DROP SCHEMA IF EXISTS \"${LOGIN_ETL_SCHEMA}\" CASCADE');
    await sql.end();" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$DENO" run --allow-net --allow-env --allow-read --allow-sys scripts/sqs_server.ts > "$work/endpoint" &
endpoint_pid=$!
for _ in $(seq 1 100); do [ -s "$work/endpoint" ] && break; sleep 0.1; done
export SQS_QUEUE_URL="$(cat "$work/endpoint")/000000000000/login-queue"

fail() { echo "binary smoke: $*" >&2; exit 1; }
field() { "$DENO" eval --quiet "console.log(JSON.parse(Deno.readTextFileSync('$1'))$2)"; }

"$@" seed --count 500 --bad-ratio 0.1 --seed 7 --summary-json > "$work/seed.json"
[ "$(field "$work/seed.json" .sent)" = 500 ] || fail "seed did not send 500 messages"

"$@" check || fail "check did not pass"

"$@" drain --worker-threads 1 --summary-json --metrics-file "$work/drain.prom" > "$work/drain.json" \
  2> "$work/drain.log" || { cat "$work/drain.log" >&2; fail "drain failed"; }
grep -q '"worker_threads":1' "$work/drain.log" || fail "drain did not start its worker thread"
inserted="$(field "$work/drain.json" .inserted)"
rejected="$(field "$work/drain.json" .rejected)"
[ "$((inserted + rejected))" = 500 ] || fail "inserted $inserted + rejected $rejected is not 500"
[ "$rejected" -gt 0 ] || fail "no malformed message was rejected"
[ "$(field "$work/drain.json" .balanced)" = true ] || fail "the summary does not balance"
grep -q '^login_etl_run_succeeded 1$' "$work/drain.prom" || fail "the metrics file does not say succeeded"

"$@" report --summary-json > "$work/report.json"
[ "$(field "$work/report.json" .rows_in_table)" = "$inserted" ] || fail "report disagrees with drain"
"$@" check --summary-json > "$work/check.json" || fail "check failed after the drain"
grep -q '0 waiting, 0 in flight' "$work/check.json" || fail "the queue is not empty"

echo "binary smoke: seeded 500, drained with a worker thread: ${inserted} rows, ${rejected} rejects; check, report and the metrics file agree"
