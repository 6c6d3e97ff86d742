# Sourced by scripts that need a Debian package for tests (pg_cluster.sh, softhsm.sh).
#   install_debian_package PACKAGE WHAT ALTERNATIVE
# Installs PACKAGE with apt-get as root, or with sudo -n; otherwise exits 1 naming WHAT and ALTERNATIVE.
install_debian_package() {
    local package=$1 what=$2 alternative=$3 apt="apt-get"
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || { echo "$what is not installed and there is no root or sudo to install it;" \
            "$alternative" >&2; exit 1; }
        apt="sudo -n apt-get"
    fi
    echo "installing $what from Debian's packages..." >&2
    DEBIAN_FRONTEND=noninteractive $apt update -qq >&2
    DEBIAN_FRONTEND=noninteractive $apt install -y -qq "$package" >&2
}
