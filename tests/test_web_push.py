"""The inbox reads a push server's GetRejectedList: a real node-opcua server with Part 12 push (tests/apps/node_push)
refuses a stranger, and the console lists that certificate (= `certmgr store rejected --app-uri URI`)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

import ca
import pki
from certmgr.context import AppContext
from tests import test_push
from tests.conftest import Certmgr
from tests.helpers import NODE_PUSH_URI as SERVER_URI

pytestmark = pytest.mark.uses_db
node_push_installed, node_server = test_push.node_push_installed, test_push.node_server  # the shared fixtures
PASSWORD = "correct horse battery"


def test_inbox_shows_what_a_push_server_refused(initialised: Certmgr, tmp_path, node_server, key_pool, foreign_ca):
    from starlette.testclient import TestClient

    from certmgr.web.app import make_app

    server, _ = node_server
    admin = test_push.secret(tmp_path / "admin.pass", "admin-pw")
    initialised("app", "add", "--app-uri", SERVER_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
                "--admin-password-file", str(admin), "--dns", "localhost", "--ip", "127.0.0.1")
    initialised("push", "--app-uri", SERVER_URI, "--accept-server", test_push.served_thumbprint(server.url)[:16])
    stranger = pki.ApplicationStore(tmp_path / "stranger")  # another CA's application; it trusts certmgr's CA
    key = key_pool.get()
    cert = ca.build_application_certificate(ca.ApplicationIdentity("urn:else:stranger", ca.SubjectFields("stranger", "else")),
                                            key.public_key(), foreign_ca, now=datetime.now(timezone.utc))
    stranger.install_own(cert, ca.private_key_pem(key))
    for part in ("certs", "crl"):
        for path in (initialised.home / "verifier" / "trusted" / part).iterdir():
            (stranger.root / "trusted" / part / path.name).write_bytes(path.read_bytes())
    attempt = initialised("diagnose", server.url, "--store", str(stranger.root), "--json", code=1).json()
    assert attempt["connection"]["refused_by"] == "server"
    password = test_push.secret(tmp_path / "pw", PASSWORD)
    initialised("web", "user", "add", "vera", "--role", "viewer", "--password-file", str(password))
    ctx = AppContext(initialised.home, db_url=initialised.db_url)
    with TestClient(make_app(ctx, load_ca=False), base_url="http://127.0.0.1") as client:
        assert client.get(f"/rejected/push?app_uri={SERVER_URI}", follow_redirects=False).status_code == 303
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": token, "username": "vera", "password": PASSWORD})
        inbox = client.get("/rejected").text
        assert "GetRejectedList of " + SERVER_URI in inbox
        listed = client.get("/api/rejected/push", params={"app_uri": SERVER_URI}).json()
        assert pki.thumbprint(cert) in [r["thumbprint"] for r in listed]
        page = client.get("/rejected/push", params={"app_uri": SERVER_URI})
        assert page.status_code == 200 and pki.thumbprint(cert) in page.text
        assert client.get("/rejected/push", params={"app_uri": "urn:not:registered"}).status_code == 404
    ctx.close()
