# mcptrail — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS      ?= $(CURDIR)/.tools
WASM       := target/wasm32-wasip1/release/mcptrail.wasm
# docker-compose targets; e.g. COMPOSE="podman compose".
COMPOSE    ?= docker compose
TOKEN_USER ?= alice
# make fuzz: seconds per target.
FUZZ_SECONDS ?= 60
export PATH := $(TOOLS)/bin:$(HOME)/.cargo/bin:$(PATH)
export MCPTRAIL_TOOLS := $(TOOLS)
# Logic tests compiled to wasm run under Node through wasm-bindgen's runner.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER := $(TOOLS)/bin/wasm-bindgen-test-runner

.PHONY: help setup build build-cli lint fmt unit test-wasm e2e test run size fixtures bench bench-micro bench-exchange bench-v8 bench-auth \
	bench-sse bench-review clean image validate-deploy compose-up compose-down compose-token compose-audit \
	fuzz fuzz-smoke fuzz-seeds sse-diff policy-diff faults

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install the toolchain targets, Envoy, MCP SDK peers, test runners into .tools/
	@bash scripts/setup.sh

build: ## Build the filter module (target/wasm32-wasip1/release/mcptrail.wasm)
	cargo build --release -p mcptrail-filter --target wasm32-wasip1
	@ls -l $(WASM) | awk '{print "module: " $$NF " (" $$5 " bytes)"}'

build-cli: ## Build the mcptrail CLI (collect, verify, issuer, token)
	cargo build --release -p mcptrail-cli

fmt: ## Format the code
	cargo fmt --all

lint: ## rustfmt check and clippy (native, wasm32-wasip1, wasm32-unknown-unknown), warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mcptrail-filter --target wasm32-wasip1 --lib --tests -- -D warnings
	cargo clippy -p mcptrail-filter --target wasm32-unknown-unknown --lib --tests -- -D warnings

unit: ## Unit tests, native (filter logic and CLI)
	cargo test -p mcptrail-filter -p mcptrail-cli

test-wasm: setup ## The filter's logic tests compiled to wasm, run under Node (wasm-bindgen-test)
	cargo test -p mcptrail-filter --lib --target wasm32-unknown-unknown

e2e: setup build ## End-to-end tests: real Envoy, clients, collector; deployment files (tests/deploy.rs); the dev authorization server (tests/authz.rs); stock SDK clients signing in through it (tests/oauth_clients.rs)
	cargo test -p mcptrail-integration

test: setup lint unit test-wasm e2e sse-diff policy-diff fuzz-smoke ## Everything CI runs (sets up what it needs first)

fuzz: ## Fuzz every target FUZZ_SECONDS (60) each: pinned nightly + cargo-fuzz (scripts/setup-fuzz.sh); docs/security.md
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke: ## The CI fuzz smoke: every target 15 s, two at a time (installs the pinned nightly; fails under CI=true if it cannot)
	@FUZZ_SANITIZER=none FUZZ_JOBS=2 bash scripts/fuzz.sh 15

faults: setup build ## Faults, VM failure policies and resource bounds through real Envoy (also in make e2e)
	cargo test -p mcptrail-integration --test faults --test vm_failure --test bounds -- --nocapture

sse-diff: setup ## The SSE parser against the official Python MCP SDK's reader, on 5000 generated streams
	cargo build -q -p mcptrail-filter --example sse_events
	$(TOOLS)/venv/bin/python scripts/sse-differential.py --streams 5000

policy-diff: setup ## Policy verdicts on 5000 mutated tools/call bodies against how the official Python MCP SDK server reads them
	cargo build -q -p mcptrail-filter --features testkit --example policy_verdicts
	$(TOOLS)/venv/bin/python scripts/policy-differential.py --bodies 5000

fuzz-seeds: ## Rewrite the fuzz seed corpora from the recorded exchanges (fuzz/gen_seeds.py)
	python3 fuzz/gen_seeds.py

run: setup build ## Start the local stack (Envoy + filter, demo MCP server, collector, token issuer)
	cargo run -q -p mcptrail-integration --bin mcptrail-stack

size: build ## Module size, plain and after wasm-opt -Oz (needs binaryen: apt-get install binaryen)
	@ls -l $(WASM) | awk '{print "plain:        " $$5 " bytes"}'
	@command -v wasm-opt >/dev/null || { echo "wasm-opt not found (apt-get install binaryen)"; exit 1; }
	@bash scripts/wasm-opt-size.sh $(WASM)

fixtures: setup ## Re-record the decoder fixtures from real MCP servers (filter/testdata/exchanges/; MCPTRAIL_CONFORMANCE=checkout of modelcontextprotocol/conformance re-records its reference server too)
	cargo build -q -p mcptrail-integration --bin demo-mcp-server
	$(TOOLS)/venv/bin/python scripts/capture_fixtures.py

bench: setup build build-cli ## The benchmark: plain Envoy vs jwt_authn vs mcptrail (wrk, h2load), streaming; table in bench/results/
	@bash scripts/setup-bench.sh
	cargo build -q --release -p mcptrail-integration --bin bench --bin sse-bench
	./target/release/bench $(BENCH_ARGS)
	@echo; echo "## Streaming (make bench-sse)"; ./target/release/sse-bench 100 | tee -a bench/results/latest.md

bench-micro: ## Criterion micro-benches of the hot paths (JWT verify cold and cached, ...)
	cargo bench -p mcptrail-filter --features testkit --bench hot_paths

bench-exchange: ## One whole tools/call through the glue, natively (criterion), per pipeline depth
	cargo bench -p mcptrail-filter --features testkit --bench exchange

bench-v8: ## The same exchange compiled to wasm and run in Node's V8: the filter's own µs per call and host calls, no Envoy
	cargo build -q --release -p mcptrail-filter --features testkit --example exchange_v8 --example jwt_v8 --target wasm32-wasip1
	node --no-warnings scripts/run-wasi.mjs target/wasm32-wasip1/release/examples/jwt_v8.wasm
	node --no-warnings scripts/run-wasi.mjs target/wasm32-wasip1/release/examples/exchange_v8.wasm

bench-auth: setup build ## Token verification cost inside Envoy: auth off vs cached vs cold
	cargo run -q -p mcptrail-integration --bin auth-bench 300

bench-review: setup build build-cli ## What a review rule costs: a call it does not name, and a check per call (window approval, service on loopback)
	cargo run -q -p mcptrail-integration --bin review-bench 400

bench-sse: setup build ## Streaming through the filter: time to first SSE event, a 100 MB SSE answer (memory, throughput)
	cargo run -q --release -p mcptrail-integration --bin sse-bench 100

image: build ## Wasm OCI image (layout + archive in target/oci/) for Istio's WasmPlugin; no Docker needed
	python3 scripts/oci-image.py

validate-deploy: setup build ## Check envoy/, Istio manifests, docker-compose.yml and the OCI image (also in make test)
	cargo test -p mcptrail-integration --test deploy

compose-up: build ## Start the docker-compose stack (Envoy + filter, MCP server, Keycloak, OTel Collector, approvals page http://localhost:8787)
	$(COMPOSE) up -d --build
	@echo "MCP endpoint: http://localhost:10000/mcp   token: make -s compose-token   audit: make compose-audit"
	@echo "Approvals:    http://localhost:8787 (sign in as bob/bob; gzip-file-as-resource and delete_* wait for an admin)"

compose-down: ## Stop the docker-compose stack (keeps the audit and approvals volumes; add -v by hand to drop them)
	$(COMPOSE) down

compose-token: ## Print a token from the compose stack's Keycloak (alice; TOKEN_USER=bob: admins)
	@bash scripts/compose-token.sh $(TOKEN_USER)

compose-audit: ## Copy the compose stack's audit files (filter, approvals) out (.run/) and verify their chains
	@COMPOSE="$(COMPOSE)" bash scripts/compose-audit.sh

clean: ## Remove build outputs and the local run state (keeps .tools/)
	cargo clean
	rm -rf .run
