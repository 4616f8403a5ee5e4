#!/usr/bin/env bash
# The Stockfish chess engine for palaestra's chess-v0 and endgames-v0: installs Debian's stockfish
# package when no binary is found, then prints the binary's path on stdout.
#
#   scripts/stockfish.sh          find (or install) Stockfish and print its path
#   scripts/stockfish.sh path     print the path only; exit 1 when Stockfish is not installed (installs nothing)
#   scripts/stockfish.sh env      same as the default, printed as: export PALAESTRA_STOCKFISH=...
#                                 use: eval "$(scripts/stockfish.sh env)"
#
# The binary is looked up as the environments do: $PALAESTRA_STOCKFISH, else `stockfish` on PATH, else
# /usr/games/stockfish (where Debian puts it; /usr/games is often not on root's PATH).
# Progress goes to stderr so stdout stays machine-readable.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

say() { echo "stockfish.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

find_stockfish() {
    if [[ -n "${PALAESTRA_STOCKFISH:-}" ]]; then
        [[ -x "$PALAESTRA_STOCKFISH" ]] || return 1
        echo "$PALAESTRA_STOCKFISH"
        return 0
    fi
    if command -v stockfish >/dev/null 2>&1; then
        command -v stockfish
        return 0
    fi
    if [[ -x /usr/games/stockfish ]]; then
        echo /usr/games/stockfish
        return 0
    fi
    return 1
}

install_stockfish() {
    if [[ -n "${PALAESTRA_STOCKFISH:-}" ]]; then
        die "PALAESTRA_STOCKFISH=$PALAESTRA_STOCKFISH is not an executable file; fix it or unset it"
    fi
    apt_install stockfish "Stockfish (then set PALAESTRA_STOCKFISH to its path if it is not on PATH)"
}

case "${1:-start}" in
    start | env)
        BIN="$(find_stockfish || true)"
        if [[ -z "$BIN" ]]; then
            install_stockfish
            BIN="$(find_stockfish)" || die "the stockfish package was installed but no binary was found"
        fi
        if [[ "${1:-start}" == env ]]; then echo "export PALAESTRA_STOCKFISH=$BIN"; else echo "$BIN"; fi
        ;;
    path)
        find_stockfish || { say "Stockfish is not installed; run: bash scripts/stockfish.sh"; exit 1; }
        ;;
    *) die "unknown command '$1'; use start (default), path or env" ;;
esac
