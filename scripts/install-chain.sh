#!/usr/bin/env bash
# Installs the devnet chain binary `injectived` (PyPI package `injective-core`) unless it is
# already on PATH. Idempotent and quiet; prints where injectived is. Used by the test script and
# by anyone who wants `leasemesh-testnet devnet`.
set -euo pipefail

find_injectived() {
    command -v injectived 2>/dev/null && return 0
    # pip --user puts scripts in the user base, which is often not on PATH.
    local user_bin
    user_bin="$(python3 -m site --user-base 2>/dev/null)/bin"
    if [ -x "$user_bin/injectived" ]; then
        echo "$user_bin/injectived"
        return 0
    fi
    return 1
}

if path="$(find_injectived)"; then
    echo "$path"
    exit 0
fi

pip_cmd=(python3 -m pip)
if ! "${pip_cmd[@]}" --version >/dev/null 2>&1; then
    echo "install-chain: python3 with pip is needed to install injective-core" >&2
    exit 1
fi

# Outside a virtualenv/pyenv, install for the user only.
extra=()
if [ -z "${VIRTUAL_ENV:-}" ] && [ "$(python3 -c 'import sys; print(sys.prefix == sys.base_prefix)')" = "True" ] \
    && ! [ -w "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" ]; then
    extra=(--user)
fi
"${pip_cmd[@]}" install --quiet --disable-pip-version-check --root-user-action=ignore "${extra[@]}" injective-core >&2

# pyenv keeps per-version shims that must be regenerated to see a new script.
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash >/dev/null 2>&1 || true
fi

if path="$(find_injectived)"; then
    # The first run unpacks the real binary (~230 MB) beside the package: do it now, once,
    # rather than in two test processes at the same time.
    "$path" version >/dev/null 2>&1 || true
    echo "$path"
    exit 0
fi
echo "install-chain: injective-core installed but injectived is not on PATH" >&2
echo "install-chain: add \"$(python3 -m site --user-base)/bin\" to PATH" >&2
exit 1
