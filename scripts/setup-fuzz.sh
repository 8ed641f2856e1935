#!/usr/bin/env bash
# Installs what `make fuzz` / `make fuzz-smoke` need, into .tools/ (idempotent, quick on re-runs).
# Kept out of scripts/setup.sh so `make setup` stays fast for everyone who does not fuzz.
#   - a nightly Rust toolchain (libFuzzer needs -Zsanitizer; FUZZ_TOOLCHAIN names another
#     one): used when present, never fetched
#     here, since a nightly is a moving target; without one the fuzz targets print SKIPPED
#   - cargo-fuzz (crates.io, pinned), built with the stable toolchain into .tools/bin
# Exit status: 0 ready, 3 no nightly toolchain (callers print a loud SKIPPED), other: failure.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
toolchain=${FUZZ_TOOLCHAIN:-nightly}

root=$(cd "$(dirname "$0")/.." && pwd)
tools="${MCPTRAIL_TOOLS:-$root/.tools}"
mkdir -p "$tools/bin"
say() { printf '\033[1msetup-fuzz:\033[0m %s\n' "$*"; }

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  say "no $toolchain toolchain (rustup toolchain list shows none)"
  exit 3
fi
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools (a couple of minutes, once)"
  cargo install --quiet --locked --force --root "$tools" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
say "ready: $(rustup run "$toolchain" rustc --version), cargo-fuzz $CARGO_FUZZ_VERSION"
