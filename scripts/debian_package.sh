# Sourced by scripts that need a Debian package for tests (pg_cluster.sh, softhsm.sh, chromium.sh, test_prefetch.sh).
#   install_debian_package PACKAGE WHAT ALTERNATIVE
# Installs PACKAGE with apt-get as root, or with sudo -n; otherwise exits 1 naming WHAT and ALTERNATIVE.
# Every caller takes one lock first: the test run installs several packages at once (test_prefetch.sh in the
# background, fixtures on two xdist workers), and apt-get fails at once when another apt-get holds dpkg's lock.
# A package that is installed by the time the lock is ours is not installed again.
CERTMGR_APT_LOCK=${CERTMGR_APT_LOCK:-${TMPDIR:-/tmp}/certmgr-apt.lock}

debian_package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_debian_package() {
    local package=$1 what=$2 alternative=$3 apt="apt-get"
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || { echo "$what is not installed and there is no root or sudo to install it;" \
            "$alternative" >&2; exit 1; }
        apt="sudo -n apt-get"
    fi
    (
        flock 9
        debian_package_installed "$package" && exit 0
        echo "installing $what from Debian's packages..." >&2
        DEBIAN_FRONTEND=noninteractive $apt update -qq >&2
        DEBIAN_FRONTEND=noninteractive $apt install -y -qq "$package" >&2
    ) 9>"$CERTMGR_APT_LOCK"
}
