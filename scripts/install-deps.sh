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

# --- interop: py-libp2p for the foreign-peer test (node/tests/interop_py.rs) ---
# A venv at .venv-interop (the test runs .venv-interop/bin/python) with PyPI `libp2p`, pinned.
# Its build needs a C compiler, Python headers and GMP (fastecdsa builds from source).
INTEROP_VENV=.venv-interop
PY_LIBP2P_VERSION=0.8.1
if ! "$INTEROP_VENV/bin/python" -c "
import sys, blake3, libp2p
from importlib.metadata import version
sys.exit(version('libp2p') != '$PY_LIBP2P_VERSION')" >/dev/null 2>&1; then
  echo "installing py-libp2p $PY_LIBP2P_VERSION into $INTEROP_VENV"
  interop_missing=()
  for p in python3-venv python3-dev libgmp-dev build-essential; do
    dpkg -s "$p" >/dev/null 2>&1 || interop_missing+=("$p")
  done
  if [ ${#interop_missing[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      "${interop_missing[@]}") >/dev/null
  fi
  rm -rf "$INTEROP_VENV"
  python3 -m venv "$INTEROP_VENV"
  "$INTEROP_VENV/bin/pip" install -q --upgrade pip
  "$INTEROP_VENV/bin/pip" install -q "libp2p==$PY_LIBP2P_VERSION" blake3
fi
