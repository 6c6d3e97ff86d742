#!/usr/bin/env bash
# A throw-away SoftHSM2 token for tests and trials, in a temp directory (SOFTHSM2_CONF points there).
#   eval "$(bash scripts/softhsm.sh start LABEL USER_PIN_FILE)"   # exports SOFTHSM2_CONF, CERTMGR_SOFTHSM_DIR,
#                                                                 # CERTMGR_PKCS11_MODULE
#   bash scripts/softhsm.sh stop "$CERTMGR_SOFTHSM_DIR"
# Installs Debian's softhsm2 package first when the module is missing (as root, or with sudo -n).
# softhsm2-util takes PINs only as arguments or at a prompt; this is a test token with throw-away PINs, so
# the user PIN is read from the file given (kept out of the caller's command line) and the SO PIN is random.
set -euo pipefail
. "$(dirname "$0")/debian_package.sh"

find_module() {
    local candidate
    for candidate in "${CERTMGR_PKCS11_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so \
            /usr/local/lib/softhsm/libsofthsm2.so; do
        if [ -n "$candidate" ] && [ -f "$candidate" ]; then echo "$candidate"; return; fi
    done
    return 1
}

install_softhsm() {
    install_debian_package softhsm2 SoftHSM2 "install Debian's softhsm2 package"
}

start() {
    local label=$1 pin_file=$2 module dir so_pin
    module=$(find_module) || { install_softhsm; module=$(find_module); }
    command -v softhsm2-util >/dev/null || install_softhsm
    dir=$(mktemp -d "${TMPDIR:-/tmp}/certmgr-softhsm.XXXXXX")
    mkdir -m 700 "$dir/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$dir/softhsm2.conf"
    so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
        --so-pin "$so_pin" --pin "$(cat "$pin_file")" >"$dir/init.log" 2>&1 || { cat "$dir/init.log" >&2; exit 1; }
    echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
    echo "export CERTMGR_SOFTHSM_DIR=$dir"
    echo "export CERTMGR_PKCS11_MODULE=$module"
}

stop() {
    local dir=$1
    case "$dir" in */certmgr-softhsm.*) rm -rf "$dir" ;; *) echo "not a softhsm.sh directory: $dir" >&2; exit 2 ;; esac
}

case "${1:-}" in
    start) start "${2:?usage: softhsm.sh start LABEL USER_PIN_FILE}" "${3:?usage: softhsm.sh start LABEL USER_PIN_FILE}" ;;
    stop) stop "${2:?usage: softhsm.sh stop DIR}" ;;
    *) echo "usage: softhsm.sh start LABEL USER_PIN_FILE | stop DIR" >&2; exit 2 ;;
esac
