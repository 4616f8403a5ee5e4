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
source "$(dirname "${BASH_SOURCE[0]}")/lib/binary.sh"

say() { echo "stockfish.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

binary_main Stockfish PALAESTRA_STOCKFISH stockfish "stockfish /usr/games/stockfish" "$@"
