"""Expiry alerts through a real SMTP server (aiosmtpd) and a real HTTP receiver; metrics; check codes."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import Certmgr
from tests.helpers import configure, free_port, smtp_channel


class Receiver:
    """An HTTP endpoint that records JSON posts; ``script`` decides the answers (200, 500, or "hang")."""

    def __init__(self, script=()) -> None:
        self.script = list(script)
        self.posts: list[dict] = []
        self.attempts = 0
        self.headers: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.attempts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = receiver.script.pop(0) if receiver.script else 200
                if answer == "hang":
                    time.sleep(5)
                    return
                if answer == 200:
                    receiver.posts.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def travel(cm: Certmgr, moment: datetime) -> None:
    cm.at(moment)


def test_one_mail_per_level_change(initialised: Certmgr, tmp_path, smtp, monkeypatch):
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--days", "20")
    initialised("issue", "--app-uri", "urn:plant:fine", "--store", str(tmp_path / "fine"), "--days", "365")
    configure(initialised, smtp_channel(smtp.port))
    initialised("daemon", "--once", "expiry-scan")
    assert len(smtp.messages) == 1
    first = smtp.messages[0]
    assert first["Subject"].startswith("[certmgr] WARNING: 1 warning")
    body = first.get_content()
    assert "urn:plant:hmi" in body and re.search(r"(19|20)\.\d days left", body) and "urn:plant:fine" not in body
    passphrase = initialised.env.pop("CERTMGR_CA_PASSPHRASE")  # as from cron: the scan needs no CA key
    initialised("daemon", "--once", "expiry-scan")
    assert len(smtp.messages) == 1  # nothing changed: no mail
    assert "passphrase" in initialised("daemon", "--once", "crl-refresh", code=2).stderr  # signing does
    initialised.env["CERTMGR_CA_PASSPHRASE"] = passphrase
    now = datetime.now(timezone.utc)
    travel(initialised, now + timedelta(days=14))
    initialised("daemon", "--once", "expiry-scan")
    assert len(smtp.messages) == 2
    assert smtp.messages[1]["Subject"].startswith("[certmgr] CRITICAL: 1 critical")
    assert "was warning" in smtp.messages[1].get_content()
    travel(initialised, now + timedelta(days=14, hours=12))
    initialised("daemon", "--once", "expiry-scan")
    assert len(smtp.messages) == 2  # critical again within the repeat interval: no mail
    travel(initialised, now + timedelta(days=15, hours=1))
    initialised("daemon", "--once", "expiry-scan")
    assert len(smtp.messages) == 3  # still critical after 24 h: reminded


def test_webhook_document_retries_and_a_hanging_receiver(initialised: Certmgr, tmp_path, smtp, monkeypatch):
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--days", "20")
    flaky = Receiver([500, 500, 200])
    hanging = Receiver(["hang"] * 10)
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    configure(initialised, smtp_channel(smtp.port) + f'''
[[alerts.channel]]
name = "chat"
type = "webhook"
url = "{flaky.url}"
token_file = "{token}"
retries = 3
backoff = 0.1

[[alerts.channel]]
name = "dead"
type = "webhook"
url = "{hanging.url}"
timeout = 1
retries = 2
backoff = 0.1
''')
    try:
        started = time.monotonic()
        result = initialised("daemon", "--once", "expiry-scan", code=1)
        elapsed = time.monotonic() - started
        assert elapsed < 8, elapsed  # two 1 s timeouts and a backoff, not the receiver's 5 s hang each
        assert 'channel=dead' in result.stderr and "outcome=channel-failed" in result.stderr
        assert flaky.attempts == 3 and len(flaky.posts) == 1
        document = flaky.posts[0]
        assert {k: document[k] for k in ("app_uri", "level", "previous_level", "kind")} == {
            "app_uri": "urn:plant:hmi", "level": "warning", "previous_level": "ok", "kind": "certificate"}
        assert document["store"] == str(tmp_path / "hmi") and 19 < document["days_left"] <= 20
        assert document["thumbprint"] == initialised.json("show", "urn:plant:hmi")["active"]["thumbprint"]
        assert datetime.fromisoformat(document["not_after"]) > datetime.now(timezone.utc)
        assert "WARNING" in document["text"] and "urn:plant:hmi" in document["text"] and document["reason"]
        assert flaky.headers[0]["Authorization"] == "Bearer s3cret-token"
        assert len(smtp.messages) == 1  # the dead channel did not stop the others
        # next run: the delivered channels stay quiet, the failed one is tried again
        hanging.script = []
        initialised("daemon", "--once", "expiry-scan")
        assert len(flaky.posts) == 1 and len(smtp.messages) == 1
        assert len(hanging.posts) == 1 and hanging.posts[0]["app_uri"] == "urn:plant:hmi"
    finally:
        flaky.close()
        hanging.close()


def test_alerts_test_command(initialised: Certmgr, smtp):
    configure(initialised, smtp_channel(smtp.port) + f'''
[[alerts.channel]]
name = "nowhere"
type = "webhook"
url = "http://127.0.0.1:{free_port()}/x"
retries = 1
timeout = 1
''')
    ok = initialised.json("alerts", "test", "--channel", "ops-mail")
    assert ok == {"ops-mail": "ok"} and "alert-test" in smtp.messages[0].get_content()
    failed = initialised("alerts", "test", code=1)
    assert "nowhere" in failed.stdout and "failed" in failed.stdout
    assert "no alert channel named" in initialised("alerts", "test", "--channel", "x", code=2).stderr


def test_check_exit_codes(initialised: Certmgr, tmp_path, monkeypatch):
    ok = initialised("check")
    assert ok.stdout.startswith("CERTMGR OK")
    initialised("issue", "--app-uri", "urn:plant:soon", "--store", str(tmp_path / "soon"), "--days", "20")
    warning = initialised("check", code=1)
    assert warning.stdout.startswith("CERTMGR WARNING") and "urn:plant:soon" in warning.stdout and "warning=1" in warning.stdout
    assert initialised("check", "--warn", "10d", code=0).stdout.startswith("CERTMGR OK")
    initialised("app", "update", "--app-uri", "urn:plant:soon", "--warn-before", "10d")  # per application
    assert initialised("check", code=0).stdout.startswith("CERTMGR OK")
    initialised("app", "update", "--app-uri", "urn:plant:soon", "--crit-before", "25d")
    assert initialised("check", code=2).stdout.startswith("CERTMGR CRITICAL")
    initialised("app", "update", "--app-uri", "urn:plant:soon", "--warn-before", "", "--crit-before", "")
    initialised("issue", "--app-uri", "urn:plant:late", "--store", str(tmp_path / "late"), "--days", "5")
    critical = initialised("check", "--json", code=2).json()
    assert critical["status"] == "CRITICAL" and critical["counts"]["critical"] == 1
    travel(initialised, datetime.now(timezone.utc) + timedelta(days=6))
    assert "expired" in initialised("check", code=2).stdout
    # a mistyped check command is UNKNOWN (3), never CRITICAL (2)
    assert "--warn" in initialised("check", "--warn", code=3).stderr
    assert "UNKNOWN" in initialised("check", "--warn", "soon", code=3).stdout
    initialised("check", "--bogus", code=3)
    initialised.env["CERTMGR_DB"] = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    unknown = initialised("check", code=3)
    assert unknown.stdout.startswith("CERTMGR UNKNOWN - cannot open database") and "Traceback" not in unknown.stdout + unknown.stderr


def test_metrics_scraped_over_http_match_the_database(initialised: Certmgr, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from certmgr.context import AppContext
    from certmgr.metrics import serve

    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"))
    initialised("issue", "--app-uri", "urn:plant:b", "--store", str(tmp_path / "b"), "--days", "30")
    ctx = AppContext(initialised.home, db_url=initialised.db_url)
    port = free_port()
    server = serve(ctx, f"127.0.0.1:{port}")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.labels["app_uri"]: s for s in families["certmgr_certificate_not_after_timestamp_seconds"].samples}
    rows = initialised.sql(
        "SELECT a.app_uri, c.thumbprint, a.store_path FROM certificates c JOIN applications a ON a.id = c.application_id WHERE c.status = 'active'"
    )
    assert set(samples) == {row[0] for row in rows}
    for uri, thumb, store in rows:
        shown = initialised.json("show", uri)["active"]
        assert samples[uri].labels == {"app_uri": uri, "thumbprint": thumb, "store": store}
        assert samples[uri].value == pytest.approx(datetime.fromisoformat(shown["not_after"]).timestamp())
    crl = families["certmgr_crl_next_update_timestamp_seconds"].samples[0]
    summary = initialised.json("ca", "show")
    assert crl.labels["issuer"] == "CN=Plant CA,O=Plant"
    assert crl.value == pytest.approx(datetime.fromisoformat(summary["crl_next_update"]).timestamp())
    assert families["certmgr_renewal_failures"].samples[0].value == 0
    assert families["certmgr_renewal_last_success_timestamp_seconds"].samples[0].value == 0
    out = tmp_path / "textfile" / "certmgr.prom"
    out.parent.mkdir()
    initialised("metrics", "--textfile", str(out))
    assert "certmgr_renewal_failures_total 0.0" in out.read_text()


def test_scan_levels_a_stale_crl_and_a_failed_renewal(initialised: Certmgr, tmp_path, monkeypatch):
    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"), "--days", "365")
    now = datetime.now(timezone.utc)
    travel(initialised, now + timedelta(days=27))  # certmgr's CRL (30 days) has 3 days left
    stale = initialised("check", "--json", code=1).json()
    crl = next(s for s in stale["subjects"] if s["kind"] == "crl")
    assert crl["level"] == "warning" and "goes stale" in crl["reason"]
    travel(initialised, now + timedelta(days=31))
    gone = next(s for s in initialised("check", "--json", code=2).json()["subjects"] if s["kind"] == "crl")
    assert gone["level"] == "expired" and "BadCertificateRevocationUnknown" in gone["reason"]
    initialised("crl", "refresh")
    assert initialised("check").stdout.startswith("CERTMGR OK")
    # a renewal that fails (here: the store folder became a file) makes its certificate critical at once
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "a")
    (tmp_path / "a").write_text("not a folder")
    initialised("renew", "--app-uri", "urn:plant:a", "--force", code=1)
    failed = initialised("check", "--json", code=2).json()
    subject = next(s for s in failed["subjects"] if s["app_uri"] == "urn:plant:a")
    assert subject["level"] == "critical" and "last renewal failed" in subject["reason"]


def test_a_failed_renewal_by_hand_alerts_at_once(initialised: Certmgr, tmp_path, smtp):
    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"), "--days", "365")
    configure(initialised, smtp_channel(smtp.port, min_level="critical"))
    initialised("daemon", "--once", "expiry-scan")
    assert smtp.messages == []  # all ok
    (tmp_path / "a").rename(tmp_path / "a.moved")
    initialised("renew", "--app-uri", "urn:plant:a", "--force", code=1)
    assert len(smtp.messages) == 1  # not at tomorrow's scan: now
    assert smtp.messages[0]["Subject"].startswith("[certmgr] CRITICAL") and "last renewal failed" in smtp.messages[0].get_content()
