"""Scale-out: migrations as the only schema path, fleet onboarding, and several certmgr nodes sharing one
PostgreSQL database (pg_only tests run in the PostgreSQL pass of scripts/test.sh)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, select, update

import db
import pki
from tests.conftest import Certmgr
from tests.helpers import configure, free_port, utc

ROOT = Path(__file__).resolve().parent.parent



def test_db_check_fails_on_a_model_change_without_migration(certmgr: Certmgr):
    certmgr("init", "--ca-key-size", "2048")
    assert certmgr.json("db", "check")["ok"] is True
    engine = db.make_engine(certmgr.url)
    changed = MetaData()
    for table in db.Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["applications"].append_column(Column("site", Integer))  # a model change, no migration
    differences = db.schema_differences(engine, changed)
    engine.dispose()
    assert any("site" in str(d) for d in differences)
    # and from the CLI: a database that drifted from the models fails `db check`
    certmgr.sql("ALTER TABLE applications ADD COLUMN site INTEGER")
    result = certmgr("db", "check", "--json", code=1)
    assert result.json()["ok"] is False and any("site" in d for d in result.json()["differences"])


def test_database_connection_errors_are_one_line(certmgr: Certmgr):
    certmgr.env["CERTMGR_DB"] = f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/none"
    result = certmgr("init", "--ca-key-size", "2048", code=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("certmgr: error")]
    assert len(errors) == 1 and "cannot open database postgresql+psycopg://nobody:***@127.0.0.1" in errors[0]
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_issue_batch_reports_each_row_and_goes_on(initialised: Certmgr, tmp_path):
    csv_file = tmp_path / "fleet.csv"
    rows = ["app_uri,store,dns,ip,role,key_size,days,renew_before"]
    for i in range(6):
        rows.append(f"urn:fleet:plc{i},{tmp_path / f'plc{i}'},plc{i}.local plc{i},10.0.0.{i + 1},server,2048,200,30d")
    rows.append(f"urn:fleet:bad-ip,{tmp_path / 'bad1'},,10.0.0.300,server,,,")
    rows.append(f"not a uri,{tmp_path / 'bad2'},,,client,,,")
    rows.append(f"urn:fleet:plc0,{tmp_path / 'again'},,,server,,,")
    rows.append(f"urn:fleet:keysize,{tmp_path / 'bad3'},,,server,1024,,")
    csv_file.write_text("\n".join(rows) + "\n")
    result = initialised("issue", "--batch", str(csv_file), "--json", code=1)
    report = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["outcome"] for r in report] == ["issued"] * 6 + ["failed"] * 4
    assert [r["line"] for r in report] == list(range(2, 12))
    assert "IPv4 or IPv6" in report[6]["detail"] and "URI" in report[7]["detail"]
    assert "twice" in report[8]["detail"] and "1024" in report[9]["detail"]
    assert "4 of 10 rows failed" in result.stderr
    shown = initialised.json("show", "urn:fleet:plc3")
    assert shown["dns_names"] == ["plc3.local", "plc3"] and shown["renew_before_seconds"] == 30 * 86400
    assert not (tmp_path / "bad1").exists() and not (tmp_path / "again").exists()
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"app_uri": "urn:fleet:gw", "store": str(tmp_path / "gw"), "layout": "node-opcua", "dns": ["gw.local"]}) + "\n")
    assert json.loads(initialised("issue", "--batch", str(jsonl), "--json").stdout)["outcome"] == "issued"
    assert (tmp_path / "gw" / "own" / "certs" / "certificate.pem").exists()


# --- several nodes on one PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def two_nodes(initialised: Certmgr, tmp_path):
    """Node a (the first home) and node b, which joined with the same database and CA files."""
    if not initialised.db_url:
        pytest.fail("pg_only tests run only with CERTMGR_TEST_PG")
    b = Certmgr(tmp_path / "home-b", initialised.db_url)
    ca_dir = initialised.home / "ca"
    b("init", "--join", "--ca-cert", str(ca_dir / "ca.der"), "--ca-key", str(ca_dir / "private" / "ca-key.pem"), "--node", "node-b")
    for node in (initialised, b):
        configure(node, '[renew]\nclaim_timeout = "3s"')
    return initialised, b


def spawn(cm: Certmgr, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "certmgr", *args], env={**cm.subprocess_env(), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_due(cm: Certmgr, uris: list[str]) -> None:
    cm("renew", "--all-due")  # nothing is due yet: this only settles renew_after (a dry run writes nothing)
    engine = db.make_engine(cm.url)
    with engine.begin() as connection:
        ids = select(db.Application.id).where(db.Application.app_uri.in_(uris)).scalar_subquery()
        connection.execute(update(db.Certificate).where(db.Certificate.status == db.CertStatus.ACTIVE,
                                                        db.Certificate.application_id.in_(ids)).values(renew_after=utc() - timedelta(hours=1)))
    engine.dispose()


def status_counts(cm: Certmgr, uri: str) -> dict[str, int]:
    rows = cm.sql("SELECT c.status, count(*) FROM certificates c JOIN applications a ON a.id = c.application_id "
                  "WHERE a.app_uri = :uri GROUP BY c.status", uri=uri)
    return dict(rows)


@pytest.mark.pg_only
def test_two_daemons_run_the_renewal_once(two_nodes, tmp_path):
    a, b = two_nodes
    uris = [f"urn:plant:dev{i}" for i in range(3)]
    for uri in uris:
        a("issue", "--app-uri", uri, "--store", str(tmp_path / uri.rsplit(":", 1)[1]), "--role", "client")
        a("app", "update", "--app-uri", uri, "--deploy-hook", "sleep 2")  # keeps the first node busy
    make_due(a, uris)
    first = spawn(a, "daemon", "--once", "renew-due")
    deadline = time.monotonic() + 60
    while not a.sql("SELECT count(*) FROM applications WHERE renewal_claimed_by IS NOT NULL")[0][0]:
        assert time.monotonic() < deadline and first.poll() is None, "node a never claimed the batch"
        time.sleep(0.1)
    second = spawn(b, "daemon", "--once", "renew-due")
    out_b, err_b = second.communicate(timeout=120)
    out_a, err_a = first.communicate(timeout=180)
    assert first.returncode == 0 and second.returncode == 0, err_a + err_b
    assert "another certmgr node runs this job now; skipped" in err_b
    assert err_a.count("outcome=renewed") == 3
    for uri in uris:
        assert status_counts(a, uri) == {"active": 1, "superseded": 1}


@pytest.mark.pg_only
def test_crl_numbers_from_two_nodes_revoking_at_once(two_nodes, tmp_path):
    a, b = two_nodes
    uris = [f"urn:plant:dev{i}" for i in range(8)]
    for uri in uris:
        a("issue", "--app-uri", uri, "--store", str(tmp_path / uri.rsplit(":", 1)[1]))
    script = ("import sys\nfrom certmgr.cli import main\nfor uri in sys.argv[1:]:\n"
              "    sys.argv = ['certmgr', 'revoke', '--app-uri', uri, '--yes']\n"
              "    try:\n        main()\n    except SystemExit as exit:\n        assert not exit.code, exit.code\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, *uris[i::2]], env=node.subprocess_env(), stderr=subprocess.PIPE, text=True)
             for i, node in enumerate((a, b))]
    for proc in procs:
        assert proc.wait(timeout=180) == 0, proc.stderr.read()
    rows = a.sql("SELECT number, this_update FROM crls ORDER BY number")
    assert [row[0] for row in rows] == list(range(1, 10))  # no gap, no duplicate
    assert [row[1] for row in rows] == sorted(row[1] for row in rows)  # numbers increase with issue time
    counts = [row[0] for row in a.sql("SELECT revoked_count FROM crls ORDER BY number")]
    assert counts == sorted(counts) and counts[-1] == 8 + 9  # 8 revocations and the canary of each of the 9 CRLs


@pytest.mark.pg_only
def test_a_killed_node_leaves_nothing_pending_and_nothing_renewed_twice(two_nodes, tmp_path):
    a, b = two_nodes
    uris = [f"urn:plant:dev{i}" for i in range(3)]
    for uri in uris:
        a("issue", "--app-uri", uri, "--store", str(tmp_path / uri.rsplit(":", 1)[1]), "--role", "client")
        # the hook hangs only on node a, so a can be killed in the middle of its batch
        a("app", "update", "--app-uri", uri, "--deploy-hook", 'if [ -n "$SLOW_HOOK" ]; then sleep 120; fi')
    make_due(a, uris)
    issued = {uri: a.json("show", uri)["active"]["thumbprint"] for uri in uris}
    stores = {uri: pki.ApplicationStore(tmp_path / uri.rsplit(":", 1)[1]) for uri in uris}
    node_a = spawn(a, "renew", "--all-due", env={"SLOW_HOOK": "1"})
    deadline = time.monotonic() + 120
    switched: set[str] = set()
    while time.monotonic() < deadline and not switched:  # until a switched its first store and sits in the hook
        switched = {uri for uri, store in stores.items() if (own := store.own()) is not None and own.thumbprint != issued[uri]}
        assert node_a.poll() is None, node_a.stderr.read()
        time.sleep(0.2)
    time.sleep(1)
    # the new certificates stay pending (the intent) until hook and live proof pass: all of a's batch is pending
    pending_before = a.sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0]
    node_a.send_signal(signal.SIGKILL)
    node_a.wait(timeout=30)
    assert len(switched) == 1 and pending_before == 3
    time.sleep(3.5)  # a's claims time out (claim_timeout = 3s; a is another host's process for b)
    out = b.json("renew", "--all-due")
    # b's recovery completes the switch a made (the store serves it) and undoes the two a had only staged
    assert {r["app_uri"] for r in out if r["outcome"] == "renewed"} == set(uris) - switched
    assert a.sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0] == 0
    assert a.sql("SELECT count(*) FROM applications WHERE renewal_claimed_by IS NOT NULL")[0][0] == 0
    for uri in uris:
        counts = status_counts(a, uri)
        assert counts["active"] == 1 and counts["superseded"] == 1, (uri, counts)  # renewed exactly once
        assert stores[uri].own().thumbprint == a.json("show", uri)["active"]["thumbprint"]
    abandoned = a.sql("SELECT count(*) FROM certificates WHERE status = 'failed' AND revoked_at IS NOT NULL")[0][0]
    assert abandoned == pending_before - len(switched)
    recovered = a.sql("SELECT count(DISTINCT target) FROM audit_events WHERE action = 'renewal.recover'")[0][0]
    assert recovered == pending_before


def test_batch_row_with_a_wrong_type_is_reported_and_the_rest_goes_on(initialised: Certmgr, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"app_uri": "urn:fleet:typo", "store": 5}) + "\n"
                    + json.dumps({"app_uri": "urn:fleet:fine", "store": str(tmp_path / "fine")}) + "\n")
    report = [json.loads(line) for line in initialised("issue", "--batch", str(rows), "--json", code=1).stdout.splitlines()]
    assert [r["outcome"] for r in report] == ["failed", "issued"]


def test_limits_and_shared_stores_are_refused(initialised: Certmgr, tmp_path):
    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"))
    taken = initialised("issue", "--app-uri", "urn:plant:b", "--store", str(tmp_path / "a"), code=2)
    assert "belongs to urn:plant:a" in taken.stderr
    assert "100 years" in initialised("issue", "--app-uri", "urn:plant:c", "--store", str(tmp_path / "c"), "--days", "100000000", code=2).stderr
    assert "100 years" in initialised("list", "--expiring", "99999999999d", code=2).stderr
    initialised("app", "update", "--app-uri", "urn:plant:a", "--renew-before", "30d")
    nightly = initialised("app", "update", "--app-uri", "urn:plant:a", "--days", "10", code=2)
    assert "every night" in nightly.stderr
    link = tmp_path / "linked"
    (tmp_path / "elsewhere").mkdir()
    link.symlink_to(tmp_path / "elsewhere")
    refused = initialised("issue", "--app-uri", "urn:plant:d", "--store", str(link), code=None)
    assert refused.exit_code in (1, 2) and "symbolic link" in refused.stderr
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.pg_only
def test_join_with_a_wrong_passphrase_leaves_no_half_home(initialised: Certmgr, tmp_path):
    b = Certmgr(tmp_path / "home-b", initialised.db_url)
    b.env["CERTMGR_CA_PASSPHRASE"] = "wrong"
    ca_dir = initialised.home / "ca"
    args = ["init", "--join", "--ca-cert", str(ca_dir / "ca.der"), "--ca-key", str(ca_dir / "private" / "ca-key.pem"), "--node", "b"]
    assert "wrong CA passphrase" in b(*args, code=2).stderr
    assert not (b.home / "certmgr.toml").exists()
    b.env["CERTMGR_CA_PASSPHRASE"] = initialised.env["CERTMGR_CA_PASSPHRASE"]
    b(*args)
