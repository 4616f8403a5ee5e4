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
source "$(dirname "${BASH_SOURCE[0]}")/lib/binary.sh"

say() { echo "chromium.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

binary_main Chromium PALAESTRA_CHROMIUM chromium "chromium chromium-browser /usr/bin/chromium" "$@"
