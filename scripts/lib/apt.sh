# Shared by palaestra's set-up scripts (source it; it needs a `die` function):
#   apt_install PACKAGE WHAT   installs a Debian package with apt-get, as root or through `sudo -n`,
#                              or dies with a message that says how to install WHAT by hand.
apt_install() {
    local package="$1" what="$2"
    command -v apt-get >/dev/null 2>&1 \
        || die "$what is not installed and apt-get is not available; install $what yourself"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "installing $what needs root; run: sudo apt-get install -y $package"
        sudo=(sudo -n)
    fi
    echo "installing Debian's $package package (apt-get)" >&2
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "$package" >&2
}
