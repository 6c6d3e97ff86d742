"""A fleet of 100,000 certificates on SQLite and PostgreSQL: listing, expiry scan, due selection, plans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import section
from .common import new_home

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def postgresql_url(work: Path):
    """CERTMGR_TEST_PG if set, else a throw-away cluster from scripts/pg_cluster.sh; a fresh database in it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url, cluster = os.environ.get("CERTMGR_TEST_PG"), None
    if not admin_url:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "pg_cluster.sh"), "start"], capture_output=True, text=True, check=True).stdout
        exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
        admin_url, cluster = exports["CERTMGR_TEST_PG"], exports["CERTMGR_PG_DIR"]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS certmgr_bench WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE certmgr_bench"))
    try:
        yield make_url(admin_url).set(database="certmgr_bench").render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text("DROP DATABASE IF EXISTS certmgr_bench WITH (FORCE)"))
        admin.dispose()
        if cluster:
            subprocess.run(["bash", str(ROOT / "scripts" / "pg_cluster.sh"), "stop", cluster], capture_output=True)


def seed(ctx, count: int, now: datetime) -> None:
    """A healthy fleet: renewals at two thirds of a year, renewal dates spread over the next 8 months, 1%
    already due, and 500 stragglers that failed to renew and expire within 30 days. Rows only."""
    import random

    from sqlalchemy import insert, select

    import db

    rng = random.Random(7)
    with ctx.database().write() as session:
        authority_id, der = session.execute(select(db.Authority.id, db.Authority.certificate_der)).one()
    batch = 10_000
    for start in range(0, count, batch):
        apps, certs = [], []
        for i in range(start, min(start + batch, count)):
            if i < 500:
                not_after = now + timedelta(days=rng.uniform(1, 30))
            else:
                renew_after = now + timedelta(days=rng.uniform(-2.4, 240))
                not_after = renew_after + timedelta(days=365 / 3)
            not_before = not_after - timedelta(days=365)
            apps.append({"id": 1000 + i, "app_uri": f"urn:fleet:site{i // 1000}:app{i}", "name": f"app{i}", "role": db.Role.SERVER,
                         "store_path": f"/srv/opcua/app{i}/pki", "layout": "ua-net", "key_size": 2048, "validity_days": 365,
                         "authority_id": authority_id, "created_at": now, "updated_at": now, "dns_names": [],
                         "ip_addresses": [], "internal": False})
            certs.append({"application_id": 1000 + i, "authority_id": authority_id, "serial_hex": format(10**30 + i, "x"),
                          "thumbprint": f"{i:040X}", "subject": f"CN=app{i}", "not_before": not_before, "not_after": not_after,
                          "renew_after": not_after - timedelta(days=365 / 3), "status": db.CertStatus.ACTIVE, "key_size": 2048,
                          "der": der, "created_at": now})
        with ctx.database().write() as session:
            session.execute(insert(db.Application), apps)
            session.execute(insert(db.Certificate), certs)
    with ctx.database().write() as session:
        session.execute(db.Application.__table__.update().where(db.Application.id < 1500).values(last_renewal_status="failed"))
        if not ctx.database().is_sqlite:
            from sqlalchemy import text

            session.execute(text("ANALYZE"))


def timed_query(ctx, statement, repeat: int = 5) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        with ctx.database().read() as session:
            started = time.perf_counter()
            rows = len(session.execute(statement).all())
            best = min(best, time.perf_counter() - started)
    return best, rows


def plan(ctx, statement) -> list[str]:
    """EXPLAIN of the statement exactly as certmgr sends it (captured from the cursor)."""
    from sqlalchemy import event

    engine = ctx.database().engine
    captured = {}

    def capture(conn, cursor, sql, params, context, executemany):
        if sql.lstrip().upper().startswith("SELECT"):
            captured.setdefault("sql", (sql, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with ctx.database().read() as session:
            session.execute(statement).all()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    sql, params = captured["sql"]
    prefix = "EXPLAIN QUERY PLAN " if ctx.database().is_sqlite else "EXPLAIN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + sql, params).all()
    return [" ".join(str(c) for c in row[-1:]) for row in rows]


def cli_run(home: Path, url: str, *args: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and output lines of `certmgr ARGS`, end to end in a new process."""
    env = {**os.environ, "CERTMGR_HOME": str(home), "CERTMGR_DB": url}
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from this (large) benchmark process
    code = ("import runpy, sys; sys.argv = ['certmgr'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('certmgr', run_name='__main__')\nfinally:\n"
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "    print(hwm, file=sys.stderr)\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024, len(done.stdout.splitlines())


def run_backend(name: str, work: Path, url: str | None, count: int, now: datetime) -> None:
    from certmgr.alerts.levels import scan
    from certmgr.alerts.settings import AlertSettings
    from db import queries

    ctx = new_home(work / name, db_url=url)
    started = time.perf_counter()
    seed(ctx, count, now)
    print(f"-- {name}: seeded {count:,} applications and certificates in {time.perf_counter() - started:.1f} s")
    settings = AlertSettings()
    widest = max(settings.warning, settings.critical)
    for label, statement in (
        ("expiry scan query", queries.attention_statement(now, widest)),
        ("expiry scan: failed renewals", queries.failed_renewal_statement()),
        ("due-for-renewal selection", queries.due_statement(now)),
        ("expiring within 30 days", queries.active_statement(now + timedelta(days=30))),
    ):
        seconds, rows = timed_query(ctx, statement)
        print(f"{label:28} {seconds * 1000:7.1f} ms, {rows:,} rows (target < 100 ms)")
        for line in plan(ctx, statement):
            print(f"    plan: {line}")
    started = time.perf_counter()
    subjects = sum(1 for _ in scan(ctx, now, settings))
    print(f"{'expiry scan with levels':28} {(time.perf_counter() - started) * 1000:7.1f} ms, {subjects:,} subjects above ok")
    db_url = url or ctx.db_url
    # the listing target is `list --expiring 30d --json`; every row is shown for scale and memory
    for label, args, target in (("--version (baseline)", ["--version"], "baseline"),
                                ("list --expiring 30d --json", ["list", "--expiring", "30d", "--json"], "target < 3 s, flat memory"),
                                ("list --jsonl (all)", ["list", "--jsonl"], "every row: no time target, flat memory")):
        wall, rss, lines = cli_run(ctx.home.root, db_url, *args)
        print(f"{'certmgr ' + label:34} {wall:5.2f} s end to end, peak RSS {rss:5.0f} MB, {lines:,} lines ({target})")
    ctx.close()


@section("fleet", "100,000 certificates on SQLite and PostgreSQL: listing, scan, selection, query plans")
def bench_fleet(work: Path, quick: bool = False) -> None:
    count = 10_000 if quick else 100_000
    now = datetime.now(timezone.utc)
    run_backend("sqlite", work, None, count, now)
    with postgresql_url(work) as url:
        run_backend("postgresql", work, url, count, now)
