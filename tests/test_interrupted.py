"""An interrupted renewal never blocks the next one (issue 12, finding 4): real SIGINT and SIGKILL to a
`certmgr renew` child while its deploy hook runs, then `certmgr renew` again at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pki
from tests.conftest import ROOT, Certmgr


@pytest.fixture
def slow_hook_app(initialised: Certmgr, tmp_path):
    """A client whose deploy hook, while `hold` exists, says it started and then waits (as a slow reload would)."""
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--role", "client")
    started, hold = tmp_path / "hook-started", tmp_path / "hold"
    # exec: the hook process is the sleep itself, so a Ctrl-C to the group never finds a shell between two commands
    hook = (f'if [ "$CERTMGR_ACTION" = renewed ] && [ -e {hold} ]; then touch {started}; exec sleep 60; fi')
    initialised("app", "update", "--app-uri", "urn:plant:hmi", "--deploy-hook", hook)
    hold.touch()
    return initialised, started, hold


def start_renewal(cm: Certmgr, started: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "certmgr", "renew", "--app-uri", "urn:plant:hmi", "--force", "--no-verify"],
        cwd=ROOT, env=cm.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        # a test run started in the background (nohup, `&`) inherits SIGINT ignored; an operator's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the renewal never reached its hook: {process.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)  # the hook has exec'd its sleep: the interrupt lands mid-hook, as an operator's Ctrl-C would
    return process


def leftovers(cm: Certmgr, store: pki.ApplicationStore) -> dict:
    return {
        "pending": cm.sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0],
        "claims": cm.sql("SELECT count(*) FROM applications WHERE renewal_claimed_by IS NOT NULL")[0][0],
        "staged": sorted(p.name for p in store.staged_dir.iterdir()) if store.staged_dir.is_dir() else [],
    }


def test_sigint_mid_renewal_makes_it_whole_and_the_next_renewal_runs_at_once(slow_hook_app, tmp_path):
    cm, started, hold = slow_hook_app
    store = pki.ApplicationStore(tmp_path / "hmi")
    old = store.own().thumbprint
    process = start_renewal(cm, started)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr.decode() and "unexpected" not in stderr.decode()
    assert leftovers(cm, store) == {"pending": 0, "claims": 0, "staged": []}
    assert store.own().thumbprint == old  # rolled back: the previous pair is current again
    cut = cm.sql("SELECT status, revoked_at FROM certificates WHERE thumbprint != :t AND status != 'active' "
                 "AND application_id = (SELECT id FROM applications WHERE app_uri = 'urn:plant:hmi')", t=old)
    assert [row[0] for row in cut] == ["failed"] and cut[0][1] is not None
    hold.unlink()
    again = cm("renew", "--app-uri", "urn:plant:hmi", "--force", "--no-verify", "--json").json()[0]
    assert again["outcome"] == "renewed" and store.own().thumbprint == again["new_thumbprint"]


def test_sigkill_mid_renewal_is_taken_over_at_once_by_the_next_renewal(slow_hook_app, tmp_path):
    cm, started, hold = slow_hook_app
    store = pki.ApplicationStore(tmp_path / "hmi")
    process = start_renewal(cm, started)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    left = leftovers(cm, store)
    assert left["pending"] == 0 or left["claims"] == 1  # killed between its phases: what it left is recorded
    cut = cm.sql("SELECT thumbprint FROM certificates WHERE status = 'active'")
    assert cut, "the database still names an active certificate"
    checked = cm("db", "check", code=None)
    assert checked.exit_code in (0, 1)
    hold.unlink()
    again = cm("renew", "--app-uri", "urn:plant:hmi", "--force", "--no-verify", "--json").json()[0]
    assert again["outcome"] == "renewed", again
    assert leftovers(cm, store) == {"pending": 0, "claims": 0, "staged": []}
    assert store.own().thumbprint == again["new_thumbprint"]
    own = {p.name for p in store.own_certs_dir.iterdir()}
    assert len(own) == 1  # one own certificate a stack would load
    assert cm.sql("SELECT count(*) FROM certificates WHERE status = 'pending'") == [(0,)]
    # the renewal the kill cut short had switched (its hook ran): recovery completed it, the new renewal superseded it
    statuses = [s for (s,) in cm.sql("SELECT status FROM certificates WHERE application_id = "
                                     "(SELECT id FROM applications WHERE app_uri = 'urn:plant:hmi') ORDER BY id")]
    assert statuses == ["superseded", "superseded", "active"]


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_but_another_hosts_waits(initialised: Certmgr, tmp_path):
    from certmgr import owners

    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"), "--role", "client")
    dead = owners.current_owner().split(":")
    dead[2] = "999999"  # no such process
    initialised.sql("UPDATE applications SET renewal_claimed_by = :o, renewal_claimed_at = CURRENT_TIMESTAMP "
                    "WHERE app_uri = 'urn:plant:a'", o=":".join(dead))
    taken = initialised("renew", "--app-uri", "urn:plant:a", "--force", "--no-verify", "--json").json()[0]
    assert taken["outcome"] == "renewed"
    other = "root@another-host:4242:123:abcdef123456:ff"
    initialised.sql("UPDATE applications SET renewal_claimed_by = :o, renewal_claimed_at = CURRENT_TIMESTAMP "
                    "WHERE app_uri = 'urn:plant:a'", o=other)
    waiting = initialised("renew", "--app-uri", "urn:plant:a", "--force", "--no-verify", "--json").json()[0]
    assert waiting["outcome"] == "skipped" and "another-host" in waiting["reason"]
    # a claim that has not moved for a third of claim_timeout is stale: said, and the command exits 1
    initialised.sql("UPDATE applications SET renewal_claimed_at = '2026-01-01 00:00:00' WHERE app_uri = 'urn:plant:a'")
    initialised("renew", "--app-uri", "urn:plant:a", "--force", "--no-verify", code=0)  # older than the timeout: recovered
    initialised.sql("UPDATE applications SET renewal_claimed_by = :o, renewal_claimed_at = :t WHERE app_uri = 'urn:plant:a'",
                    o=other, t=(__import__("datetime").datetime.utcnow() - __import__("datetime").timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S"))
    stale = initialised("renew", "--app-uri", "urn:plant:a", "--force", "--no-verify", code=1)
    assert "has not moved" in stale.stdout + stale.stderr


def test_store_status_reports_a_renewal_left_staged(slow_hook_app, tmp_path):
    cm, started, hold = slow_hook_app
    store = pki.ApplicationStore(tmp_path / "hmi")
    process = start_renewal(cm, started)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    # killed after the switch: nothing staged is left (the switch consumed it); stage one as a cut renewal would
    (store.staged_dir).mkdir(exist_ok=True)
    (store.staged_dir / "hmi [ABCDEF0123456789ABCDEF0123456789ABCDEF01].der").write_bytes(b"x")
    report = cm.json("store", "status", str(store.root))
    assert any("has not finished" in p["message"] for p in report["problems"])
    assert cm("db", "check", code=None).exit_code in (0, 1)


def test_a_key_compromise_revocation_destroys_every_copy_of_the_key(initialised: Certmgr, tmp_path):
    initialised("issue", "--app-uri", "urn:plant:lost", "--store", str(tmp_path / "lost"), "--role", "client")
    store = pki.ApplicationStore(tmp_path / "lost")
    own = store.own()
    key_bytes = own.key_path.read_bytes()
    outcome = initialised.json("revoke", own.thumbprint, "--reason", "keyCompromise", "--yes")
    assert str(own.key_path) in outcome["destroyed_keys"]
    assert not own.key_path.exists()
    leftover = [p for p in (tmp_path / "lost").rglob("*") if p.is_file() and p.read_bytes() == key_bytes]
    assert leftover == []
    # a plain revocation keeps the key (the operator may still need the application to run until renewed)
    initialised("renew", "--app-uri", "urn:plant:lost", "--force", "--no-verify")
    again = store.own()
    initialised("revoke", again.thumbprint, "--reason", "cessationOfOperation", "--yes")
    assert again.key_path.exists()
