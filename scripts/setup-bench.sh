#!/usr/bin/env bash
# What `make bench` needs from Debian's packages: the load generators wrk (HTTP/1.1, latency
# percentiles) and h2load (nghttp2-client; h2c), and wasm-opt (binaryen) for the module size
# after `-Oz`. Only the benchmark needs them.
set -euo pipefail
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v wasm-opt >/dev/null 2>&1 || missing+=(binaryen)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-bench: installing ${missing[*]} (apt)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup-bench: $(wrk --version 2>&1 | head -1 | cut -c1-40); $(h2load --version | head -1)"
