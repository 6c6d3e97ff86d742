"""The console's application/peer pages and their actions (renew now, probe now), admin revocation, the CRL page,
the inbox columns, fleet sorting, and sessions and the sign-in limiter surviving a restart. Over HTTP (Starlette's
TestClient) against a real initialised home, real stores and a real CA key; each action also in the forms that
must be refused (no session, too small a role, no CSRF token)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

import pki
from certmgr.context import AppContext
from tests.helpers import NodeServer, free_port
from tests import test_push, test_web
from tests.test_web import csrf_of, login

pytestmark = pytest.mark.uses_db
console = test_web.console  # the shared fixture: two stores, users vera (viewer), otto (operator), ada (admin)
node_push_installed, node_server = test_push.node_push_installed, test_push.node_server  # the real node-opcua push server


def _revoked(cm) -> int:  # (the CRL's canary certificate is revoked from the start)
    return cm.sql("SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL")[0][0]


def _active(cm, uri: str) -> str:
    return cm.sql("SELECT c.thumbprint FROM certificates c JOIN applications a ON a.id = c.application_id "
                  "WHERE a.app_uri = :uri AND c.status = 'active'", uri=uri)[0][0]


def test_pages_need_a_session_and_actions_a_role_and_csrf(console):
    client, store, _, cm = console
    pages = ["/app?uri=urn:plant:connector", "/crls", f"/peer?key={store.root}", "/admin/revoke?thumbprint=00000000"]
    for path in pages:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert client.get("/api/crls").status_code == 401
    thumb, revoked = _active(cm, "urn:plant:connector"), _revoked(cm)
    posts = {"/app/renew": {"app_uri": "urn:plant:connector"}, "/app/probe": {"app_uri": "urn:plant:connector"},
             "/admin/revoke": {"thumbprint": thumb, "reason": "superseded"}}
    for path, data in posts.items():
        assert client.post(path, data=data, follow_redirects=False).status_code == 303  # to sign in, nothing done
    login(client, "vera")
    token = csrf_of(client)
    for path, data in posts.items():
        assert client.post(path, data={**data, "csrf": token}).status_code == 403, path
    assert client.get(f"/admin/revoke?thumbprint={thumb}").status_code == 403
    client.cookies.clear()
    login(client, "otto")  # an operator renews and probes, but never revokes
    assert client.post("/admin/revoke", data={**posts["/admin/revoke"], "csrf": csrf_of(client)}).status_code == 403
    assert client.post("/api/admin/revoke", json=posts["/admin/revoke"], headers={"X-CSRF-Token": csrf_of(client)}).status_code == 403
    for path, data in posts.items():  # the right role without the token: refused too, on the API as well
        assert client.post(path, data={**data, "csrf": "forged"}).status_code == 403
        assert client.post("/api" + path, json=data).status_code == 403
    client.cookies.clear()
    assert client.post("/api/app/renew", json=posts["/app/renew"]).status_code == 401
    assert _active(cm, "urn:plant:connector") == thumb and _revoked(cm) == revoked
    assert cm.sql("SELECT count(*) FROM audit_events WHERE action IN ('probe', 'certificate.renew', 'certificate.revoke')")[0][0] == 0


def test_application_page_shows_history_findings_and_the_buttons(console):
    client, store, _, cm = console
    login(client, "vera")
    thumb = _active(cm, "urn:plant:connector")
    page = client.get("/app", params={"uri": "urn:plant:connector"})
    assert page.status_code == 200 and thumb in page.text and 'id="history"' in page.text
    assert str(store.root) in page.text and 'id="findings"' in page.text  # `store status` of its folder
    assert 'id="renew"' not in page.text  # a viewer sees no buttons
    data = client.get("/api/app", params={"uri": "urn:plant:connector"}).json()
    assert data["certificates"][0]["thumbprint"] == thumb and data["findings"]["store"] == str(store.root)
    assert data["last_proof"]["action"] == "certificate.issue"
    assert client.get("/app", params={"uri": "urn:plant:nothing"}).status_code == 404
    client.cookies.clear()
    login(client, "otto")
    page = client.get("/app", params={"uri": "urn:plant:connector"}).text
    assert 'id="renew"' in page and 'name="csrf"' in page.split('id="renew"')[0].split('id="actions-h"')[1]
    assert 'id="probe"' not in page  # no endpoint: nothing to probe


def test_operator_renews_now_audited_with_the_name(console):
    client, store, _, cm = console
    login(client, "otto")
    old = _active(cm, "urn:plant:connector")
    done = client.post("/app/renew", data={"csrf": csrf_of(client), "app_uri": "urn:plant:connector"})
    assert done.status_code == 200 and "renewed" in done.text, done.text[-2000:]
    new = _active(cm, "urn:plant:connector")
    assert new != old and pki.thumbprint(store.own().certificate) == new
    assert cm.sql("SELECT actor FROM audit_events WHERE action = 'certificate.renew'") == [("otto (web)",)]
    # the pipeline's commit wrote each proof channel's policy and status code: the page's "last proof" shows them
    proof = client.get("/api/app", params={"uri": "urn:plant:connector"}).json()
    assert proof["last_proof"]["action"] == "certificate.renew" and proof["last_proof"]["details"]["thumbprint"] == new
    channels = proof["proof_channels"]
    assert channels and all(c["status"] == "Good" for c in channels) and all(c["what"].startswith("loopback ") for c in channels)
    assert {c["policy"] for c in proof["last_proof"]["details"]["channels"]} >= {"Basic256Sha256"}
    page = client.get("/app", params={"uri": "urn:plant:connector"}).text
    table = page.split('id="proof-channels"')[1].split("</table>")[0]
    assert "<code>Good</code>" in table and "loopback Basic256Sha256" in table


def test_renew_and_revoke_say_so_without_the_passphrase(console, monkeypatch):
    from starlette.testclient import TestClient

    from certmgr.web.app import make_app

    _, _, _, cm = console
    monkeypatch.delenv("CERTMGR_CA_PASSPHRASE", raising=False)
    ctx = AppContext(cm.home, db_url=cm.db_url)
    with TestClient(make_app(ctx), base_url="http://127.0.0.1") as client:
        login(client, "ada")
        thumb, revoked = _active(cm, "urn:plant:connector"), _revoked(cm)
        page = client.get("/app", params={"uri": "urn:plant:connector"}).text
        assert 'id="renew-unavailable"' in page and "CERTMGR_CA_PASSPHRASE" in page and 'id="renew"' not in page
        assert 'id="revoke-unavailable"' in client.get(f"/admin/revoke?thumbprint={thumb}").text
        refused = client.post("/app/renew", data={"csrf": csrf_of(client), "app_uri": "urn:plant:connector"})
        assert refused.status_code == 400 and "passphrase" in refused.text
        assert client.post("/admin/revoke", data={"csrf": csrf_of(client), "thumbprint": thumb}).status_code == 400
    ctx.close()
    assert _active(cm, "urn:plant:connector") == thumb and _revoked(cm) == revoked


def test_operator_probes_now_and_the_result_is_recorded(console):
    client, _, _, cm = console
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"  # nothing listens: the probe's real "did not answer" outcome
    cm("app", "update", "--app-uri", "urn:plant:soon", "--endpoint", endpoint)
    login(client, "otto")
    page = client.get("/app", params={"uri": "urn:plant:soon"}).text
    assert 'id="probe"' in page and "Never probed." in page
    done = client.post("/app/probe", data={"csrf": csrf_of(client), "app_uri": "urn:plant:soon"})
    assert done.status_code == 200 and "not ok" in done.text and "did not answer" in done.text
    assert cm.sql("SELECT endpoint FROM probe_results") == [(endpoint,)]
    assert cm.sql("SELECT actor FROM audit_events WHERE action = 'probe'") == [("otto (web)",)]
    after = client.get("/app", params={"uri": "urn:plant:soon"}).text
    assert 'id="last-probe"' in after and "did not answer" in after.split('id="fix"')[1]
    crls = client.get("/api/crls").json()
    assert [e["endpoint"] for e in crls["endpoints"]] == [endpoint]


def test_admin_revokes_after_a_confirmation_showing_the_thumbprint(console):
    client, _, _, cm = console
    login(client, "ada")
    thumb = _active(cm, "urn:plant:soon")
    before = client.get("/api/crls").json()["authorities"][0]["number"]
    confirm = client.get("/admin/revoke", params={"thumbprint": thumb[:12]})
    assert confirm.status_code == 200 and f'<code id="thumbprint">{thumb}</code>' in confirm.text
    assert '<label for="reason">' in confirm.text
    prefix = client.post("/admin/revoke", data={"csrf": csrf_of(client), "thumbprint": thumb[:12], "reason": "superseded"})
    assert prefix.status_code == 400  # only the full thumbprint the confirmation showed
    done = client.post("/admin/revoke", data={"csrf": csrf_of(client), "thumbprint": thumb, "reason": "superseded"})
    assert done.status_code == 200 and f"Revoked {thumb}" in done.text
    assert cm.sql("SELECT revocation_reason FROM certificates WHERE thumbprint = :t", t=thumb) == [("superseded",)]
    assert cm.sql("SELECT actor FROM audit_events WHERE action = 'certificate.revoke'") == [("ada (web)",)]
    crls = client.get("/api/crls").json()
    assert crls["authorities"][0]["number"] == before + 1
    assert any(s["number"] == before + 1 for s in crls["stores"])  # published to the registered stores
    page = client.get("/crls").text
    assert f'<td class="number">{before + 1}</td>' in page


def test_inbox_shows_who_refused_it_and_how_often_and_fleet_sorts(console, tmp_path):
    client, store, peer, cm = console
    pki.ApplicationStore(tmp_path / "soon").add_rejected(peer)  # a second application refused the same peer
    login(client, "vera")
    rows = {r["store"]: r for r in client.get("/api/rejected").json()}
    assert rows[str(store.root)]["refused_by"] == ["urn:plant:connector"]
    assert rows[str(tmp_path / "soon")]["refused_by"] == ["urn:plant:soon"]
    assert {r["times_seen"] for r in rows.values()} == {2}
    page = client.get("/rejected").text
    assert '<a href="/app?uri=urn%3Aplant%3Aconnector">urn:plant:connector</a>' in page and 'class="times-seen"' in page
    order = lambda text: [u for u in re.findall(r"urn:plant:(?:soon|connector)(?=</a>)", text.split("<tbody>")[1])]
    assert order(client.get("/fleet", params={"sort": "not_after", "dir": "asc"}).text) == ["urn:plant:soon", "urn:plant:connector"]
    desc = client.get("/fleet", params={"sort": "not_after", "dir": "desc"}).text
    assert order(desc) == ["urn:plant:connector", "urn:plant:soon"]
    assert 'id="sort-not_after" aria-sort="descending"' in desc and "dir=asc" in desc.split('id="sort-not_after"')[0][-200:]


def test_sessions_and_the_limiter_survive_a_restart(console):
    from starlette.testclient import TestClient

    from certmgr.web.app import make_app

    client, _, _, cm = console
    login(client, "vera")
    cookie = client.cookies["certmgr_session"]
    assert cookie not in str(cm.sql("SELECT token_hash FROM web_sessions"))  # only a hash of the token is stored
    for _ in range(5):
        login(client, "otto", "wrong password!")
    ctx = AppContext(cm.home, db_url=cm.db_url)
    with TestClient(make_app(ctx, load_ca=False), base_url="http://127.0.0.1") as restarted:
        restarted.cookies.set("certmgr_session", cookie)
        assert restarted.get("/fleet", follow_redirects=False).status_code == 200
        assert login(restarted, "otto").status_code == 429  # still limited after the restart
        later = datetime.now(UTC) + timedelta(seconds=61)
        restarted.app.state.console.limiter.clock = lambda: later
        assert login(restarted, "otto").status_code == 303
    ctx.close()


def test_rejected_cache_parses_a_file_once_and_sees_changes(tmp_path, monkeypatch):
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certmgr.services.store_inspect import RejectedCache, rejected_entries

    data = Path(__file__).parent / "data"
    a, b = (x509.load_der_x509_certificate((data / n).read_bytes()) for n in ("twin-a.der", "twin-b.der"))
    store = pki.ApplicationStore(tmp_path / "s")
    path = store.add_rejected(a)
    parsed = []
    real = pki.read_certificate_file
    monkeypatch.setattr(pki, "read_certificate_file", lambda p: parsed.append(p) or real(p))
    cache = RejectedCache()
    first = rejected_entries(store, cache)
    assert rejected_entries(store, cache) == first and len(parsed) == 1
    assert first == rejected_entries(store)  # the same rows as without a cache
    path.write_bytes(b.public_bytes(Encoding.DER))  # a stack rewrote the file
    assert [e["thumbprint"] for e in rejected_entries(store, cache)] == [pki.thumbprint(b)] and len(parsed) == 2
    path.unlink()
    assert rejected_entries(store, cache) == [] and cache._files == {}


def test_level_cutoffs_agree_with_certificate_level():
    from certmgr.alerts.levels import LevelCutoffs, certificate_level

    now, warn, crit = datetime(2026, 12, 2, tzinfo=UTC), timedelta(days=30), timedelta(days=7)
    cut = LevelCutoffs(now, warn, crit)
    for delta in (timedelta(0), -timedelta(seconds=1), crit, crit - timedelta(microseconds=1), warn,
                  warn - timedelta(microseconds=1), timedelta(days=400), timedelta(microseconds=1)):
        assert cut(now + delta) == certificate_level(now + delta, None, now, warn, crit, False)[0], delta


def test_sign_in_returns_to_the_page_asked_for_and_never_off_site(console):
    client, *_ = console
    asked = client.get("/app?uri=urn:plant:connector", follow_redirects=False).headers["location"]
    assert asked == "/login?next=/app%3Furi%3Durn%3Aplant%3Aconnector"  # the query survives the sign-in
    for target, expected in (("/app?uri=urn:plant:connector", "/app?uri=urn:plant:connector"), ("//evil.example/", "/fleet"),
                             ("/\\evil.example/", "/fleet"), ("https://evil.example/", "/fleet")):
        client.cookies.clear()
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        done = client.post("/login", data={"csrf": token, "username": "vera", "password": test_web.PASSWORD, "next": target},
                           follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == expected, target


def test_peer_page_shows_its_store_findings_and_probe_needs_an_operator(console, tmp_path):
    client, *_, cm = console
    vendor = pki.ApplicationStore(tmp_path / "vendor-gw")
    for part in ("own/certs", "trusted/certs", "trusted/crl", "rejected/certs"):
        (vendor.root / part).mkdir(parents=True, exist_ok=True)
    cm("peer", "add", "--store", str(vendor.root), "--layout", "ua-net", "--name", "vendor-gw")
    login(client, "vera")
    page = client.get("/peer", params={"key": "vendor-gw"})
    assert page.status_code == 200 and str(vendor.root) in page.text and 'id="findings"' in page.text
    assert "no own certificate" in page.text.split('id="findings"')[1]  # `store status` of the peer's folder
    assert 'id="probe"' not in page.text  # a viewer, and no endpoint
    data = client.get("/api/peer", params={"key": str(vendor.root)}).json()
    assert data["name"] == "vendor-gw" and data["findings"]["store"] == str(vendor.root)
    assert client.get("/peer", params={"key": "nobody"}).status_code == 404
    endpoint = "opc.tcp://127.0.0.1:4840"
    assert client.post("/peer/probe", data={"csrf": csrf_of(client), "endpoint": endpoint}).status_code == 403
    client.cookies.clear()
    login(client, "otto")
    refused = client.post("/peer/probe", data={"csrf": csrf_of(client), "endpoint": endpoint})
    assert refused.status_code == 400 and "no peer" in refused.text  # only registered peers are probed
    assert cm.sql("SELECT count(*) FROM probe_results")[0][0] == 0


def _self_signed(key, uri: str, name: str):
    """A self-signed application certificate (as a stack makes when nobody gave it one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "else")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))


def _stranger(cm, root, cert, key):
    """A client store with ``cert`` as its own that trusts certmgr's CA (so it trusts the pushed server)."""
    import ca

    store = pki.ApplicationStore(root)
    store.install_own(cert, ca.private_key_pem(key))
    for part in ("certs", "crl"):
        for path in (cm.home / "verifier" / "trusted" / part).iterdir():
            (store.root / "trusted" / part / path.name).write_bytes(path.read_bytes())
    return store


def _channel(store, uri: str, url: str):
    """A secure channel and session from ``store``'s own certificate, without diagnose's own checks (it refuses to
    present a certificate certmgr revoked)."""
    import asyncio

    from certmgr.opcua.identities import identity_from_store
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session

    async def run():
        server_cert, _ = await endpoint_certificate(url)
        identity = identity_from_store(store, uri, peer_role="server", clock=lambda: datetime.now(UTC))
        return await attempt_session(url, identity, "Basic256Sha256", server_cert)

    return asyncio.run(run())


def test_push_server_rejected_certificate_trusted_from_the_console(console, node_server, tmp_path, key_pool, foreign_ca):
    """Approve on a push server's GetRejectedList = TrustList.AddCertificate on a real node-opcua server: the
    approved client's next channel succeeds; a viewer, a missing CSRF token, a certificate whose issuer the server
    does not hold and one certmgr's CA revoked are refused, and then nothing changes on the server."""
    from tests.helpers import NODE_PUSH_URI as SERVER_URI

    client, _, _, cm = console
    server, pki_dir = node_server
    admin = test_push.secret(tmp_path / "admin.pass", "admin-pw")
    cm("app", "add", "--app-uri", SERVER_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
       "--admin-password-file", str(admin), "--dns", "localhost", "--ip", "127.0.0.1")
    cm("push", "--app-uri", SERVER_URI, "--accept-server", test_push.served_thumbprint(server.url)[:16])
    # A client certmgr issued, then revoked. node-opcua lists only certificates it could not chain (a revoked one
    # is refused without landing in rejected/), so this one is in rejected/ as node-opcua writes it when it did not
    # yet trust certmgr's CA (the usual history: the client tried before the server's administrator set trust up).
    # The restart also makes node-opcua read the CRL certmgr published into its folder.
    cm("issue", "--app-uri", "urn:plant:gone", "--store", str(tmp_path / "gone"), "--role", "client")
    gone_thumb = _active(cm, "urn:plant:gone")
    cm("revoke", gone_thumb, "--reason", "superseded", "--yes", "--no-probe")
    server.stop()
    gone_cert = pki.ApplicationStore(tmp_path / "gone").own().certificate
    (pki_dir / "rejected" / f"gone[{gone_thumb.lower()}].pem").write_bytes(gone_cert.public_bytes(serialization.Encoding.PEM))
    restarted = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"}, port=server.port)
    try:
        _push_trust_checks(client, cm, restarted, tmp_path, key_pool, foreign_ca, gone_thumb)
    finally:
        restarted.stop()


def _push_trust_checks(client, cm, server, tmp_path, key_pool, foreign_ca, gone_thumb):
    import ca
    from tests.helpers import NODE_PUSH_URI as SERVER_URI

    gone = _channel(pki.ApplicationStore(tmp_path / "gone"), "urn:plant:gone", server.url)
    assert not gone.ok and gone.side == "server", gone  # node-opcua closes the channel without saying why
    key = key_pool.get()
    own_cert = _self_signed(key, "urn:else:selfsigned", "selfsigned")
    own = _stranger(cm, tmp_path / "selfsigned", own_cert, key)
    key = key_pool.get()
    foreign_cert = ca.build_application_certificate(ca.ApplicationIdentity("urn:else:foreign", ca.SubjectFields("foreign", "else")),
                                                    key.public_key(), foreign_ca, now=datetime.now(UTC))
    foreign = _stranger(cm, tmp_path / "foreign", foreign_cert, key)
    for store in (own, foreign):
        attempt = cm("diagnose", server.url, "--store", str(store.root), "--json", code=1).json()
        assert attempt["connection"]["refused_by"] == "server"
    own_thumb, foreign_thumb = pki.thumbprint(own_cert), pki.thumbprint(foreign_cert)

    login(client, "vera")
    listed = [r["thumbprint"] for r in client.get("/api/rejected/push", params={"app_uri": SERVER_URI}).json()]
    assert {own_thumb, foreign_thumb, gone_thumb} <= set(listed)
    assert client.get("/rejected/push/confirm", params={"app_uri": SERVER_URI, "thumbprint": own_thumb}).status_code == 403
    form = {"app_uri": SERVER_URI, "thumbprint": own_thumb}
    assert client.post("/rejected/push/approve", data={**form, "csrf": csrf_of(client)}).status_code == 403
    client.cookies.clear()
    login(client, "otto")
    assert client.post("/rejected/push/approve", data=form).status_code == 403  # no CSRF token
    assert client.post("/api/rejected/push/approve", json=form).status_code == 403
    assert cm("diagnose", server.url, "--store", str(own.root), "--json", code=1).json()["connection"]["refused_by"] == "server"

    refused = client.get("/rejected/push/confirm", params={"app_uri": SERVER_URI, "thumbprint": foreign_thumb})
    assert refused.status_code == 400 and "does not hold" in refused.text and 'id="approve"' not in refused.text
    response = client.post("/api/rejected/push/approve", json={"app_uri": SERVER_URI, "thumbprint": foreign_thumb},
                           headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 400 and "Foreign CA" in response.json()["error"]
    refused = client.get("/rejected/push/confirm", params={"app_uri": SERVER_URI, "thumbprint": gone_thumb})
    assert refused.status_code == 400 and "would undo the revocation" in refused.text
    response = client.post("/api/rejected/push/approve", json={"app_uri": SERVER_URI, "thumbprint": gone_thumb},
                           headers={"X-CSRF-Token": csrf_of(client)})
    assert response.status_code == 400 and "would undo the revocation" in response.json()["error"]
    refused = cm("push-trust", "--app-uri", SERVER_URI, gone_thumb[:16], "--yes", code=2)  # the CLI: the same service
    assert "would undo the revocation" in refused.stderr
    assert "does not hold" in cm("push-trust", "--app-uri", SERVER_URI, foreign_thumb, "--yes", code=2).stderr
    assert client.get("/rejected/push/confirm", params={"app_uri": "urn:not:push", "thumbprint": own_thumb}).status_code == 404

    page = client.get("/rejected/push/confirm", params={"app_uri": SERVER_URI, "thumbprint": own_thumb[:16]})
    assert page.status_code == 200 and f'<code id="thumbprint">{own_thumb}</code>' in page.text and "urn:else:selfsigned" in page.text
    assert client.post("/rejected/push/approve", data={**form, "thumbprint": own_thumb[:16], "csrf": csrf_of(client)}).status_code == 400
    done = client.post("/rejected/push/approve", data={**form, "csrf": csrf_of(client)}, follow_redirects=False)
    assert done.status_code == 303 and f"done={own_thumb}" in done.headers["location"]
    assert cm("diagnose", server.url, "--store", str(own.root), "--json").json()["connection"]["ok"] is True
    audited = cm.sql("SELECT actor, target, details FROM audit_events WHERE action = 'push.trust'")
    assert [(actor, target) for actor, target, _ in audited] == [("otto (web)", SERVER_URI)] and own_thumb in str(audited[0][2])
    assert cm("diagnose", server.url, "--store", str(foreign.root), "--json", code=1).json()["connection"]["refused_by"] == "server"
