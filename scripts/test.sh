#!/usr/bin/env bash
# The test command: formatting, lints and the whole test suite, after installing what the tests
# need (the chain binary, busybox for the container image). Run from anywhere:
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "build test binaries"
cargo nextest run --workspace --all-features --no-run

step "tests"
cargo nextest run --workspace --all-features --no-fail-fast --profile ci
