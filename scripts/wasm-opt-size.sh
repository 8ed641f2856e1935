#!/usr/bin/env bash
# Prints the size in bytes of MODULE after `wasm-opt -Oz` (binaryen), or nothing and exit 1
# without wasm-opt. rustc's wasm output uses post-MVP features wasm-opt must be told about.
#   scripts/wasm-opt-size.sh MODULE   (make size; make bench puts the figure in its table)
set -euo pipefail
command -v wasm-opt >/dev/null 2>&1 || exit 1
out=$(mktemp --suffix .wasm)
trap 'rm -f "$out"' EXIT
wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-multivalue --enable-reference-types "$1" -o "$out"
stat -c %s "$out"
