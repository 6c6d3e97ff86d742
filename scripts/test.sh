#!/usr/bin/env bash
# Create or update .venv with certmgr and its test extra, then run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k crl -x
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "certmgr needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'

exec .venv/bin/python -m pytest "$@"
