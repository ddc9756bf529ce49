#!/usr/bin/env bash
# Installs what the tests need that cargo does not bring: Debian's static busybox (the tiny
# container image is built from it), the `injectived` chain binary (PyPI: injective-core), and
# cargo-nextest. Idempotent and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "installing busybox-static (Debian)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static) >/dev/null
fi

if [ -x scripts/install-chain.sh ]; then
  scripts/install-chain.sh
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
