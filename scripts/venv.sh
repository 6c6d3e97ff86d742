# Sourced by quickstart.sh and test.sh: checks the Python version and creates .venv when missing.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "certmgr needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
