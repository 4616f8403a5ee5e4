#!/usr/bin/env bash
# Chromium for the dashboard's browser tests (Playwright drives it through `executable_path`; Playwright's
# own browser download is not used): installs Debian's chromium package when no binary is found, then
# prints the binary's path on stdout.
#
#   scripts/chromium.sh          find (or install) Chromium and print its path
#   scripts/chromium.sh path     print the path only; exit 1 when Chromium is not installed (installs nothing)
#   scripts/chromium.sh env      same as the default, printed as: export PALAESTRA_CHROMIUM=...
#                                use: eval "$(scripts/chromium.sh env)"
#
# The binary is looked up as the tests do: $PALAESTRA_CHROMIUM, else `chromium` or `chromium-browser` on
# PATH, else /usr/bin/chromium (where Debian puts it).
# Progress goes to stderr so stdout stays machine-readable.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

say() { echo "chromium.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

find_chromium() {
    if [[ -n "${PALAESTRA_CHROMIUM:-}" ]]; then
        [[ -x "$PALAESTRA_CHROMIUM" ]] || return 1
        echo "$PALAESTRA_CHROMIUM"
        return 0
    fi
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    if [[ -x /usr/bin/chromium ]]; then
        echo /usr/bin/chromium
        return 0
    fi
    return 1
}

install_chromium() {
    if [[ -n "${PALAESTRA_CHROMIUM:-}" ]]; then
        die "PALAESTRA_CHROMIUM=$PALAESTRA_CHROMIUM is not an executable file; fix it or unset it"
    fi
    apt_install chromium "Chromium (then set PALAESTRA_CHROMIUM to its path if it is not on PATH)"
}

case "${1:-start}" in
    start | env)
        BIN="$(find_chromium || true)"
        if [[ -z "$BIN" ]]; then
            install_chromium
            BIN="$(find_chromium)" || die "the chromium package was installed but no binary was found"
        fi
        if [[ "${1:-start}" == env ]]; then echo "export PALAESTRA_CHROMIUM=$BIN"; else echo "$BIN"; fi
        ;;
    path)
        find_chromium || { say "Chromium is not installed; run: bash scripts/chromium.sh"; exit 1; }
        ;;
    *) die "unknown command '$1'; use start (default), path or env" ;;
esac
