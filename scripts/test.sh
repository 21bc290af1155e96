#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer's: installs the real peers the
# tests drive (sipp, tshark, kamailio, baresip, nftables) when missing, keeps a Python venv with
# pycrate in .venv/, then runs `cargo test --workspace --locked`. Safe to re-run: it installs only
# what is missing. Extra arguments go to `cargo test` (e.g. `./scripts/test.sh --test man_pages`).
#
# Under CI=true a test whose peer is missing fails; elsewhere it says it was skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian package names. python3-venv: `python3 -m venv` on Debian needs it.
PACKAGES=(sip-tester tshark kamailio baresip nftables xz-utils iproute2 python3 python3-venv prometheus systemd sngrep)
PY_PACKAGES=(pycrate sipvicious pylibsrtp)
VENV=.venv

installed=()

say() { printf 'test.sh: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: install a Rust toolchain (https://rustup.rs), then re-run"
    exit 2
fi

# --- system packages --------------------------------------------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done
else
    say "not a Debian system: not checking system packages (tests needing them say so)"
fi

if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            sudo=(unavailable)
        fi
    fi
    if [[ ${sudo[*]-} == unavailable ]]; then
        say "missing packages and not root: ${missing[*]}"
        say "install them with: sudo apt-get install ${missing[*]}"
        say "continuing: tests that need them are skipped (they fail under CI=true)"
    else
        say "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # tshark asks whether non-root users may capture; answer no without a prompt.
        echo 'wireshark-common wireshark-common/install-setuid boolean false' |
            "${sudo[@]}" debconf-set-selections
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        installed+=("${missing[@]}")
    fi
fi

# --- Python venv with pycrate -----------------------------------------------------------------
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
if command -v "$python" >/dev/null 2>&1; then
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
        installed+=("venv $VENV")
    fi
    for p in "${PY_PACKAGES[@]}"; do
        if ! "$VENV/bin/python" -m pip show --quiet "$p" >/dev/null 2>&1; then
            if "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$p"; then
                installed+=("$p (pip)")
            elif [[ ${CI-} == true ]]; then
                say "pip could not install $p"
                exit 2
            else
                say "pip could not install $p: tests that need it are skipped"
            fi
        fi
    done
    SGW_PYTHON="$PWD/$VENV/bin/python"
    export SGW_PYTHON
else
    say "python3 not found: tests that need pycrate are skipped (they fail under CI=true)"
fi

if ((${#installed[@]})); then
    say "installed: ${installed[*]}"
else
    say "nothing to install"
fi

# --- the suite --------------------------------------------------------------------------------
cargo test --workspace --locked --no-fail-fast "$@"
