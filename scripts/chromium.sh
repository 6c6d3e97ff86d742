#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the browser test (tests/test_web_browser.py).
#   bash scripts/chromium.sh        # prints the chromium and chromedriver paths; installs them first when missing
# No browser downloads: plants are offline, and Debian's chromium is the one a Debian host updates.
set -euo pipefail
. "$(dirname "$0")/debian_package.sh"

find_pair() {
    local browser driver
    browser=$(command -v chromium || true)
    driver=$(command -v chromedriver || true)
    [ -n "$browser" ] && [ -n "$driver" ] && echo "$browser $driver"
}

find_pair || {
    install_debian_package chromium Chromium "install Debian's chromium package"
    install_debian_package chromium-driver "Chromium's WebDriver" "install Debian's chromium-driver package"
    find_pair
}
