"""certmgr daemon as a real subprocess: scheduled renewal, CRL refresh, alerts, signals, restarts."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta

from sqlalchemy import update

import db
from certmgr.daemon.schedule import JOBS
from tests.conftest import Certmgr
from tests.helpers import configure, free_port, smtp_channel, utc


def start_daemon(cm: Certmgr, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "certmgr", "daemon", *args], env=cm.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the daemon exited ({process.returncode}) before {what}: {process.stderr.read()}")
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def age_everything(cm: Certmgr) -> None:
    """Time passing, without a clock: the certificate became due, the CRL is past a third of its life."""
    cm("renew", "--all-due")  # settle renew_after first
    engine = db.make_engine(cm.url)
    with engine.begin() as connection:
        connection.execute(update(db.Certificate).where(db.Certificate.status == db.CertStatus.ACTIVE,
                           db.Certificate.subject.like("CN=gateway%")).values(renew_after=utc() - timedelta(hours=1)))
        connection.execute(update(db.Crl).values(this_update=utc() - timedelta(days=25), next_update=utc() + timedelta(days=5)))
    engine.dispose()


def test_daemon_renews_refreshes_alerts_and_stops_on_sigterm(initialised: Certmgr, tmp_path, smtp):
    initialised("issue", "--app-uri", "urn:plant:gateway", "--store", str(tmp_path / "gateway"), "--role", "server")
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--days", "20")
    old = initialised.json("show", "urn:plant:gateway")["active"]["thumbprint"]
    age_everything(initialised)
    port = free_port()
    configure(initialised, smtp_channel(smtp.port) + f'''
[schedule]
renew_due = "every 2s"
renew_due_jitter = "0s"
crl_refresh = "every 2s"
expiry_scan = "every 2s"

[daemon]
node = "test-node"
metrics_listen = "127.0.0.1:{port}"
''')
    daemon = start_daemon(initialised)
    try:
        wait_for(lambda: initialised.json("show", "urn:plant:gateway")["active"]["thumbprint"] != old, 90, "the renewal", daemon)
        wait_for(lambda: initialised.json("ca", "show")["crl_number"] >= 2, 30, "the CRL refresh")
        wait_for(lambda: smtp.messages, 30, "the alert mail")
        second = subprocess.run([sys.executable, "-m", "certmgr", "daemon"], env=initialised.subprocess_env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "another certmgr daemon runs on" in second.stderr
        assert daemon.poll() is None
        # Prometheus scrapes the daemon itself: the renewed certificate's notAfter, a renewal just succeeded
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        renewed = initialised.json("show", "urn:plant:gateway")["active"]
        expected = datetime.fromisoformat(renewed["not_after"]).timestamp()
        line = next(l for l in scraped.splitlines() if l.startswith("certmgr_certificate_not_after_timestamp_seconds{")
                    and "urn:plant:gateway" in l and renewed["thumbprint"] in l)
        assert float(line.rsplit(" ", 1)[1]) == expected
        success = next(l for l in scraped.splitlines() if l.startswith("certmgr_renewal_last_success_timestamp_seconds "))
        assert float(success.split()[1]) > time.time() - 300
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, err
    assert re.search(r"job=renew-due app_uri=urn:plant:gateway thumbprint=\w+ outcome=renewed", err), err
    # the renewal job re-signs a CRL past a third of its life before its proofs, or crl-refresh does
    assert re.search(r"job=crl-refresh outcome=(resigned|current) crl_number=[2-9]", err), err
    assert "msg=\"daemon stopped\"" in err
    assert any("urn:plant:hmi" in m.get_content() for m in smtp.messages)
    crl = initialised.json("ca", "show")
    assert datetime.fromisoformat(crl["crl_next_update"]) > utc() + timedelta(days=29)


def test_restarted_daemon_runs_a_missed_job_once(initialised: Certmgr):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    configure(initialised, '''
[schedule]
expiry_scan = "every 1h"

[daemon]
node = "test-node"
metrics_listen = ""
''')
    daemon = start_daemon(initialised)
    time.sleep(0.5)
    wait_for(lambda: initialised.sql("SELECT count(*) FROM apscheduler_jobs")[0][0] == len(JOBS), 60, "the jobs to be stored")
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0 and "job=expiry-scan outcome=started" not in err
    # the daemon was down for three hours: three hourly scans were missed
    # (edited through the job store alone: a started scheduler would process the job itself)
    engine = db.make_engine(initialised.url)
    store = SQLAlchemyJobStore(engine=engine)
    store.start(BackgroundScheduler(), "default")
    job = store.lookup_job("test-node:expiry-scan")
    job._modify(next_run_time=utc() - timedelta(hours=3))
    store.update_job(job)
    engine.dispose()

    daemon = start_daemon(initialised)
    try:
        time.sleep(8)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert re.search(r'job=expiry-scan next_run=\S+ msg="kept schedule every 1h"', err), err
    assert err.count("job=expiry-scan outcome=started") == 1, err  # coalesced: once, not three times


def test_each_node_loads_only_its_own_jobs(initialised: Certmgr):
    """Nodes share one job table; each node's scheduler must see only its own jobs."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from certmgr.daemon.runner import JOB_FUNCTION, node_job_store

    engine = db.make_engine(initialised.url)
    schedulers = {}
    for node in ("a", "b"):
        scheduler = BackgroundScheduler(jobstores={"default": node_job_store(engine, node)})
        scheduler.start(paused=True)
        scheduler.add_job(JOB_FUNCTION, "interval", hours=1, args=["expiry-scan"], id=f"{node}:expiry-scan",
                          next_run_time=utc() - timedelta(minutes=1))
        schedulers[node] = scheduler
    try:
        for node, scheduler in schedulers.items():
            store = scheduler._lookup_jobstore("default")
            assert [job.id for job in store.get_all_jobs()] == [f"{node}:expiry-scan"]
            assert [job.id for job in store.get_due_jobs(utc())] == [f"{node}:expiry-scan"]
        assert initialised.sql("SELECT count(*) FROM apscheduler_jobs")[0][0] == 2
    finally:
        for scheduler in schedulers.values():
            scheduler.shutdown(wait=False)
        engine.dispose()
