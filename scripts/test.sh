#!/usr/bin/env bash
# Create or update .venv with certmgr and its test extra, then run the whole test suite twice:
# on SQLite, then every database-touching test again on a throw-away PostgreSQL cluster (installed from
# Debian's packages if missing, started on a temp directory and a loopback port, stopped at the end).
# Extra arguments go to pytest, e.g. scripts/test.sh -k crl -x
# CERTMGR_TEST_PG=skip runs only the SQLite pass; CERTMGR_TEST_PG=URL uses an existing server;
# CERTMGR_TEST_WORKERS=1 runs the tests one after another.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
# What the tests will install (Debian's postgresql, softhsm2, chromium; node-opcua), fetched in the background
# while pip and pass 1 run; the fixtures wait on the same locks and find it done.
bash scripts/test_prefetch.sh > "${TMPDIR:-/tmp}/certmgr-test-prefetch.log" 2>&1 &
.venv/bin/python -m pip install -q -e '.[test]'
# One worker per core (pytest-xdist): many tests wait on sockets and subprocesses.
WORKERS=${CERTMGR_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}

echo "== pass 1: SQLite"
.venv/bin/python -m pytest -p no:cacheprovider -n "$WORKERS" --dist loadgroup --durations=15 "$@"

if [ "${CERTMGR_TEST_PG:-}" = "skip" ]; then
    echo "== pass 2 skipped (CERTMGR_TEST_PG=skip)"
    exit 0
fi
if [ -z "${CERTMGR_TEST_PG:-}" ]; then
    eval "$(bash scripts/pg_cluster.sh start)"
    trap 'bash scripts/pg_cluster.sh stop "$CERTMGR_PG_DIR"' EXIT
fi
echo "== pass 2: PostgreSQL ($CERTMGR_TEST_PG)"
CERTMGR_TEST_PG="$CERTMGR_TEST_PG" .venv/bin/python -m pytest -p no:cacheprovider -n "$WORKERS" --dist loadgroup -m uses_db --durations=15 "$@"
