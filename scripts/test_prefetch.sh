#!/usr/bin/env bash
# Started in the background by test.sh: installs what the tests will ask for (Debian's postgresql, softhsm2,
# chromium and chromium-driver; node-opcua by npm ci in tests/apps) while pip installs certmgr and pass 1 runs,
# so no test waits minutes for a download on a fresh machine. It takes the same locks as the fixtures and
# pg_cluster.sh (scripts/debian_package.sh, tests/helpers.py npm_installed), which then find the work done;
# if anything here fails, the fixture that needs it installs it again and reports the failure itself.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/debian_package.sh

missing=()
for package in postgresql softhsm2 chromium chromium-driver; do
    debian_package_installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    apt="apt-get"; [ "$(id -u)" = 0 ] || apt="sudo -n apt-get"
    (
        flock 9
        echo "prefetch: installing ${missing[*]} from Debian's packages"
        DEBIAN_FRONTEND=noninteractive $apt update -qq && DEBIAN_FRONTEND=noninteractive $apt install -y -qq "${missing[@]}"
    ) 9>"$CERTMGR_APT_LOCK"
fi

if command -v npm >/dev/null; then
    for app in tests/apps/node_server tests/apps/node_push; do
        [ -f "$app/package-lock.json" ] || continue
        (
            flock 9
            [ -f "$app/node_modules/node-opcua/package.json" ] && exit 0
            echo "prefetch: npm ci in $app"
            cd "$app" && npm ci --no-audit --no-fund --loglevel=error
        ) 9>"$app/.npm-install.lock"
    done
fi
echo "prefetch: done"
