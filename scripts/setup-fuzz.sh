#!/usr/bin/env bash
# Installs what `make fuzz` / `make fuzz-smoke` need, into .tools/ (idempotent, quick on re-runs).
# Kept out of scripts/setup.sh so `make setup` stays fast for everyone who does not fuzz.
#   - a pinned nightly Rust toolchain (libFuzzer needs -Zsanitizer), installed with rustup
#     when missing (minimal profile); FUZZ_TOOLCHAIN names another one
#   - cargo-fuzz (crates.io, pinned), built with the stable toolchain into .tools/bin
# Exit status: 0 ready, 3 no nightly toolchain could be had (under CI=true the callers fail;
# elsewhere they print a loud SKIPPED), other: failure.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
# The nightly the fuzz targets are built with, pinned: a moving nightly could break CI.
FUZZ_NIGHTLY=nightly-2026-05-20
toolchain=${FUZZ_TOOLCHAIN:-$FUZZ_NIGHTLY}

root=$(cd "$(dirname "$0")/.." && pwd)
tools="${MCPTRAIL_TOOLS:-$root/.tools}"
mkdir -p "$tools/bin"
say() { printf '\033[1msetup-fuzz:\033[0m %s\n' "$*"; }

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  say "installing the $toolchain toolchain (minimal profile, once)"
  if ! rustup toolchain install "$toolchain" --profile minimal >&2 \
    || ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    say "no $toolchain toolchain could be installed"
    exit 3
  fi
fi
if [[ $("$tools/bin/cargo-fuzz" --version 2>/dev/null || true) != *" $CARGO_FUZZ_VERSION" ]]; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools (a couple of minutes, once)"
  cargo install --quiet --locked --force --root "$tools" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
say "ready: $(rustup run "$toolchain" rustc --version), cargo-fuzz $CARGO_FUZZ_VERSION"
