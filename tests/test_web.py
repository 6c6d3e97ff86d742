"""The operator console over HTTP (Starlette's TestClient) against a real initialised home and real stores."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from cryptography import x509

import pki
from certmgr.context import AppContext
from tests.conftest import PASSPHRASE as PASSPHRASE_OF_TESTS
from tests.conftest import Certmgr

pytestmark = pytest.mark.uses_db
PASSWORD = "correct horse battery"


def _store_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def console(initialised: Certmgr, tmp_path):
    """A registered client store holding one rejected certificate, a server expiring in 5 days, three users."""
    from starlette.testclient import TestClient

    from certmgr.web.app import make_app

    initialised("issue", "--app-uri", "urn:plant:connector", "--store", str(tmp_path / "connector"), "--role", "client")
    initialised("issue", "--app-uri", "urn:plant:soon", "--store", str(tmp_path / "soon"), "--role", "server", "--days", "5")
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        initialised("web", "user", "add", name, "--role", role, "--password-file", str(password))
    store = pki.ApplicationStore(tmp_path / "connector")
    peer = x509.load_der_x509_certificate((Path(__file__).parent / "data" / "twin-a.der").read_bytes())
    store.add_rejected(peer)
    ctx = AppContext(initialised.home, db_url=initialised.db_url)
    with pytest.MonkeyPatch.context() as env:  # the console gets the passphrase as the daemon does: from its environment
        env.setenv("CERTMGR_CA_PASSPHRASE", PASSPHRASE_OF_TESTS)
        app = make_app(ctx, idle_seconds=600)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, store, peer, initialised
    ctx.close()


def login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"csrf": token, "username": name, "password": password, "next": "/fleet"},
                       follow_redirects=False)


def csrf_of(client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/fleet").text).group(1)


def test_no_session_redirects_to_login_and_api_says_401(console):
    client, *_ = console
    response = client.get("/fleet", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert client.get("/api/fleet").status_code == 401
    assert client.post("/rejected/approve", data={}, follow_redirects=False).status_code == 303


def test_wrong_password_refused_audited_and_rate_limited(console):
    client, _, _, cm = console
    assert login(client, "otto", "wrong password!").status_code == 401
    assert login(client, "nobody", "wrong password!").status_code == 401
    assert "certmgr_session" not in client.cookies
    rows = cm.sql("SELECT target, actor FROM audit_events WHERE action = 'web.login_failed' ORDER BY id")
    assert [r[0] for r in rows] == ["otto", "nobody"] and all("testclient" in r[1] for r in rows)
    for _ in range(4):
        login(client, "otto", "wrong password!")
    limited = login(client, "otto")  # the right password, past the limit: still refused
    assert limited.status_code == 429 and "certmgr_session" not in client.cookies
    assert cm.sql("SELECT count(*) FROM audit_events WHERE action = 'web.login_limited'")[0][0] == 1


def test_session_cookie_flags_and_login_csrf(console):
    client, *_ = console
    forged = client.post("/login", data={"csrf": "forged", "username": "otto", "password": PASSWORD}, follow_redirects=False)
    assert forged.status_code == 403
    response = login(client, "otto")
    assert response.status_code == 303 and response.headers["location"] == "/fleet"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("certmgr_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Secure" not in cookie


def test_viewer_gets_403_on_approve_and_nothing_moves(console):
    client, store, peer, _ = console
    login(client, "vera")
    before = _store_hash(store.root)
    data = {"csrf": csrf_of(client), "store": str(store.root), "thumbprint": pki.thumbprint(peer)}
    assert client.post("/rejected/approve", data=data).status_code == 403
    assert client.get(f"/rejected/confirm?store={store.root}&thumbprint={pki.thumbprint(peer)}").status_code == 403
    assert client.post("/trusted/reject", data=data).status_code == 403
    assert _store_hash(store.root) == before


def test_post_without_valid_csrf_is_403_and_changes_nothing(console):
    client, store, peer, cm = console
    login(client, "otto")
    before = _store_hash(store.root)
    for token in (None, "", "not-the-token"):
        data = {"store": str(store.root), "thumbprint": pki.thumbprint(peer)} | ({"csrf": token} if token is not None else {})
        assert client.post("/rejected/approve", data=data).status_code == 403
    assert client.post("/api/rejected/approve", json={"store": str(store.root), "thumbprint": pki.thumbprint(peer)}).status_code == 403
    assert _store_hash(store.root) == before
    assert cm.sql("SELECT count(*) FROM audit_events WHERE action = 'store.trust'")[0][0] == 0


def test_operator_approves_after_confirmation_audited_with_name(console):
    client, store, peer, cm = console
    login(client, "otto")
    thumb = pki.thumbprint(peer)
    inbox = client.get("/rejected")
    assert thumb in inbox.text and peer.subject.rfc4514_string() in inbox.text
    confirm = client.get("/rejected/confirm", params={"store": str(store.root), "thumbprint": thumb[:10].lower()})
    assert confirm.status_code == 200 and f'<code id="thumbprint">{thumb}</code>' in confirm.text
    done = client.post("/rejected/approve", data={"csrf": csrf_of(client), "store": str(store.root), "thumbprint": thumb},
                       follow_redirects=False)
    assert done.status_code == 303
    assert store.rejected() == [] and store.holds_certificate(peer, pki.TRUSTED)
    assert cm.sql("SELECT actor FROM audit_events WHERE action = 'store.trust'") == [("otto (web)",)]
    audit = client.get("/audit", params={"user": "otto", "action": "store."})
    assert "store.trust" in audit.text and thumb in audit.text
    undo = client.get(done.headers["location"])
    assert 'id="undo"' in undo.text  # = `store reject`: back to rejected/, audited
    token = re.search(r'name="csrf" value="([^"]+)"', undo.text).group(1)
    back = client.post("/trusted/reject", data={"csrf": token, "store": str(store.root), "thumbprint": thumb}, follow_redirects=False)
    assert back.status_code == 303 and not store.holds_certificate(peer, pki.TRUSTED)
    assert [pki.thumbprint(x.value) for x in store.rejected()] == [thumb]
    assert cm.sql("SELECT actor FROM audit_events WHERE action = 'store.reject'") == [("otto (web)",)]


def test_approve_refuses_an_unregistered_store(console, tmp_path):
    client, _, peer, _ = console
    login(client, "ada")
    other = pki.ApplicationStore(tmp_path / "elsewhere")
    other.add_rejected(peer)
    data = {"csrf": csrf_of(client), "store": str(other.root), "thumbprint": pki.thumbprint(peer)}
    assert client.post("/rejected/approve", data=data).status_code == 404
    assert [pki.thumbprint(x.value) for x in other.rejected()] == [pki.thumbprint(peer)]


def test_certificate_expiring_in_5_days_is_critical_on_page_and_timeline(console):
    client, *_ = console
    login(client, "vera")
    page = client.get("/fleet").text
    row = next(r for r in re.findall(r"<tr class=\"level-[a-z]+\">.*?</tr>", page, re.DOTALL) if "urn:plant:soon" in r)
    assert row.startswith('<tr class="level-critical">')
    assert re.search(r'class="tick level-critical"[^>]*><title>urn:plant:soon: critical', page)
    assert 'class="today"' in page
    data = client.get("/api/fleet", params={"level": "critical"}).json()
    assert [r["app_uri"] for r in data["rows"]] == ["urn:plant:soon"] and data["counts"]["critical"] == 1
    assert "urn:plant:soon" not in client.get("/fleet", params={"level": "ok"}).text.split("<tbody>")[1]


def test_idle_session_expires(console):
    from datetime import UTC, datetime, timedelta

    client, _, _, cm = console
    login(client, "vera")
    assert client.get("/fleet", follow_redirects=False).status_code == 200
    sessions = client.app.state.console.sessions
    sessions.clock = lambda: datetime.now(UTC) + timedelta(seconds=601)  # past the 600 s idle timeout
    assert client.get("/fleet", follow_redirects=False).status_code == 303
    assert cm.sql("SELECT count(*) FROM web_sessions")[0][0] == 0  # the expired session is gone from the database


def test_user_add_refuses_readable_password_file_and_bad_role(initialised: Certmgr, tmp_path):
    password = tmp_path / "pw"
    password.write_text(PASSWORD)
    password.chmod(0o644)
    refused = initialised("web", "user", "add", "bob", "--role", "viewer", "--password-file", str(password), code=2)
    assert "chmod 600" in refused.stderr
    assert initialised("web", "user", "add", "bob", "--role", "root", code=2).stderr.count("\n") == 1
    assert initialised.sql("SELECT count(*) FROM web_users")[0][0] == 0
    initialised("web", "user", "add", "bob", "--role", "viewer", input=f"{PASSWORD}\n{PASSWORD}\n")
    stored = initialised.sql("SELECT password_hash FROM web_users WHERE name = 'bob'")[0][0]
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored


def test_non_loopback_without_tls_refused(initialised: Certmgr):
    result = initialised("web", "serve", "--listen", "0.0.0.0:8440", code=2)
    assert "not a loopback address" in result.stderr and result.stderr.count("\n") == 1
    assert "both" in initialised("web", "serve", "--listen", "10.0.0.5:8440", "--tls-cert", "x.pem", code=2).stderr


def test_timeline_stays_small_for_10000_certificates_and_marks_today():
    from datetime import UTC, datetime, timedelta

    from certmgr.web.timeline import timeline_svg

    now = datetime(2026, 12, 2, tzinfo=UTC)
    levels = ("expired", "critical", "warning", "ok")
    rows = [{"app_uri": f"urn:a:{i}", "not_after": (now + timedelta(days=(i % 420) - 10)).isoformat(), "level": levels[i % 4]}
            for i in range(10_000)]
    svg = timeline_svg(rows, now)
    assert len(svg.encode()) < 200_000 and 'class="today"' in svg and "today 2026-12-02" in svg
    assert svg.count("<rect") <= 961 * 4 and re.search(r">2\d certificates: ", svg)  # one bar per day column and level


def test_inbox_includes_registered_peer_stores_and_tls_sets_secure(console, tmp_path):
    from starlette.testclient import TestClient

    from certmgr.web.app import make_app

    client, _, peer, cm = console
    vendor = pki.ApplicationStore(tmp_path / "vendor-gw")
    for part in ("own/certs", "trusted/certs", "trusted/crl", "rejected/certs"):
        (vendor.root / part).mkdir(parents=True, exist_ok=True)
    other = x509.load_der_x509_certificate((Path(__file__).parent / "data" / "twin-b.der").read_bytes())
    vendor.add_rejected(other)
    login(client, "otto")
    assert pki.thumbprint(other) not in client.get("/api/rejected").text  # not registered yet: not shown
    cm("peer", "add", "--store", str(vendor.root), "--layout", "ua-net")
    shown = {r["thumbprint"]: r["store"] for r in client.get("/api/rejected").json()}
    assert shown[pki.thumbprint(other)] == str(vendor.root) and pki.thumbprint(peer) in shown
    ctx = AppContext(cm.home, db_url=cm.db_url)
    with TestClient(make_app(ctx, tls=True), base_url="https://127.0.0.1") as secure:
        response = login(secure, "otto")
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("certmgr_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie
    ctx.close()
