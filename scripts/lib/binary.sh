# Shared by palaestra's find-or-install scripts for a program a test needs (source it after apt.sh):
#
#   binary_main NAME VAR PACKAGE CANDIDATES COMMAND
#
# NAME is what the messages call it (Stockfish), VAR the environment variable that may point at the binary
# (PALAESTRA_STOCKFISH), PACKAGE the Debian package that provides it, CANDIDATES a space-separated list of
# command names looked up on PATH or absolute paths, in order, and COMMAND one of:
#   start (default)  find the binary, installing PACKAGE with apt-get when it is missing; print its path
#   path             print the path only; exit 1 when it is not installed (installs nothing)
#   env              like start, printed as: export VAR=PATH
# Progress and errors go to stderr so stdout stays machine-readable.

binary_find() {
    local var="$1" candidates="$2" candidate
    if [[ -n "${!var:-}" ]]; then
        [[ -x "${!var}" ]] || return 1
        echo "${!var}"
        return 0
    fi
    for candidate in $candidates; do
        if [[ "$candidate" == /* ]]; then
            [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
        elif command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

binary_main() {
    local name="$1" var="$2" package="$3" candidates="$4" command="${5:-start}" bin
    case "$command" in
        start | env)
            bin="$(binary_find "$var" "$candidates" || true)"
            if [[ -z "$bin" ]]; then
                [[ -z "${!var:-}" ]] || die "$var=${!var} is not an executable file; fix it or unset it"
                apt_install "$package" "$name (then set $var to its path if it is not on PATH)"
                bin="$(binary_find "$var" "$candidates")" || die "the $package package was installed but no binary was found"
            fi
            if [[ "$command" == env ]]; then echo "export $var=$bin"; else echo "$bin"; fi
            ;;
        path)
            binary_find "$var" "$candidates" || { say "$name is not installed; run: bash $0"; exit 1; }
            ;;
        *) die "unknown command '$command'; use start (default), path or env" ;;
    esac
}
