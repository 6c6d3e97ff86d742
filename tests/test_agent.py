"""`certmgr agent` in its own home (no CA, no database) against `certmgr gds serve` in another (a child process):
enrolment with a one-time token and the operator's approval, the key only in the agent's store, a renewal as
ApplicationSelfAdmin, the TrustList (CA and CRL) in the store, a revocation reaching the store at the next run;
refused: a GDS not pinned, a wrong token."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from cryptography.hazmat.primitives import serialization

import pki
from tests.conftest import Certmgr
from tests.helpers import configure, free_port
from tests.test_field_trial_stores import node_server_installed  # noqa: F401 - fixture: npm ci of node-opcua
from tests.test_gds import gds_home, gds_server  # noqa: F401 - the GDS fixtures, reused

APP_URI = "urn:plant1:agent-gateway"


def _agent(tmp_path) -> Certmgr:
    agent = Certmgr(tmp_path / "agent-home")
    agent.env.pop("CERTMGR_CA_PASSPHRASE")  # the agent's host has no CA secret either
    return agent


def _token(cm, tmp_path, name="gw.token"):
    path = tmp_path / name
    cm("gds", "enrol-token", "--app-uri", APP_URI, "--valid", "1h", "--token-file", str(path))
    return path


def _agent_cli(agent: Certmgr, *args, code=0):
    """The agent in a child process, as cron runs it (asyncio.run in the test process is kept for the GDS side)."""
    env = {k: v for k, v in agent.subprocess_env().items() if k != "CERTMGR_CA_PASSPHRASE"}
    done = subprocess.run([sys.executable, "-m", "certmgr", *args], env=env, capture_output=True, text=True, timeout=120)
    assert code is None or done.returncode == code, f"agent {args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_agent_enrols_renews_pulls_the_trust_list_and_receives_a_revocation(gds_home, tmp_path):  # noqa: F811 - the imported fixture
    cm = gds_home
    configure(cm, "[gds]\nauto_approve_renewals = true")
    cm("app", "add", "--app-uri", APP_URI, "--deploy", "pull", "--dns", "gw.plant1.local", "--role", "both")
    token = _token(cm, tmp_path)
    agent = _agent(tmp_path)
    store = tmp_path / "gateway-pki"
    hook_log = tmp_path / "hook.log"
    hook = f'echo "$CERTMGR_ACTION $CERTMGR_THUMBPRINT" >> {hook_log}'
    ca_der = (cm.home / "ca" / "ca.der").read_bytes()

    with gds_server(cm, free_port()) as url:
        enrol = ["agent", "enrol", "--gds", url, "--app-uri", APP_URI, "--store", str(store), "--token-file", str(token),
                 "--deploy-hook", hook]
        # first contact: the agent cannot verify the GDS; it prints the thumbprint and writes nothing
        refused = _agent_cli(agent, *enrol, code=1)
        assert "cannot verify the GDS certificate" in refused.stderr and "--accept-gds" in refused.stderr
        gds_thumb = refused.stderr.split("--accept-gds ")[1].split()[0]
        assert not (store / "own").exists()
        first = _agent_cli(agent, *enrol, "--accept-gds", gds_thumb, "--json")
        assert '"pending"' in first.stdout and "waits for approval" in first.stdout
        (request_id, app_uri), = [(p["id"], p["app_uri"]) for p in cm.json("gds", "pending")]
        assert app_uri == APP_URI
        cm("gds", "approve", str(request_id))
        _agent_cli(agent, "agent", "run", "--once")  # finishes the enrolment: the certificate into the store
        ua_store = pki.ApplicationStore(store, "ua-net")
        own = ua_store.own()
        assert own is not None and pki.cert_signed_by(own.certificate, pki.parse_certificate(ca_der))
        key_pem = ua_store.read_own_key(own)
        # the TrustList: the CA certificate and its CRL in the store's trusted part
        assert [c.value.public_bytes(serialization.Encoding.DER) for c in ua_store.certificates(pki.TRUSTED)] == [ca_der]
        assert len(ua_store.crls(pki.TRUSTED)) == 1
        status = agent.json("agent", "status")
        assert status["apps"][0]["thumbprint"] == own.thumbprint and status["gds_pin"].startswith(gds_thumb)
        fleet = {r["app_uri"]: r for r in cm("fleet", "status", "--json", code=None).json()}
        assert fleet[APP_URI]["kind"] == "pull" and fleet[APP_URI]["thumbprint"] == own.thumbprint
        assert fleet[APP_URI]["last_pull"] and fleet[APP_URI]["last_trust_list_pull"]

        # renewal as ApplicationSelfAdmin (auto_approve_renewals): a new key made here, the old pair in history
        renewed = _agent_cli(agent, "agent", "run", "--once", "--force", "--json")
        assert '"renewed"' in renewed.stdout, renewed.stdout
        second = ua_store.own()
        assert second.thumbprint != own.thumbprint and ua_store.read_own_key(second) != key_pem
        (self_renewal,), = cm.sql("SELECT self_renewal FROM gds_requests ORDER BY id DESC LIMIT 1")
        assert self_renewal

        # a revocation on the GDS side reaches the agent's store at its next run (a new CRL replaces the old one)
        old_crl = ua_store.crls(pki.TRUSTED)[0]
        cm("revoke", own.thumbprint, "--reason", "keyCompromise", "--yes", "--no-probe")
        _agent_cli(agent, "agent", "run", "--once")
        crls = ua_store.crls(pki.TRUSTED)
        assert len(crls) == 1 and crls[0].path != old_crl.path
        assert crls[0].value.get_revoked_certificate_by_serial_number(own.certificate.serial_number) is not None

    # the private keys exist only in the agent's store: never in the GDS home or its database
    for pem in (key_pem, ua_store.read_own_key(second)):
        der = serialization.load_pem_private_key(pem, None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for root, _dirs, files in os.walk(cm.home):
            for name in files:
                data = (tmp_path / root / name).read_bytes()
                assert pem not in data and der not in data, f"{root}/{name} holds the agent's key"
    assert not (agent.home / "ca").exists() and not (agent.home / "certmgr.db").exists()
    actions = [row[0] for row in hook_log.read_text().splitlines()]
    assert [line.split()[0] for line in hook_log.read_text().splitlines()] == ["enrolled", "renewed"], actions


def test_agent_refuses_a_wrong_token_and_a_ca_home(gds_home, tmp_path):  # noqa: F811 - the imported fixture
    cm = gds_home
    cm("app", "add", "--app-uri", APP_URI, "--deploy", "pull", "--role", "both")
    _token(cm, tmp_path)
    wrong = tmp_path / "wrong.token"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"not-the-token")
    os.close(fd)
    agent = _agent(tmp_path)
    store = tmp_path / "pki"
    with gds_server(cm, free_port()) as url:
        args = ["agent", "enrol", "--gds", url, "--app-uri", APP_URI, "--store", str(store), "--token-file", str(wrong)]
        thumb = _agent_cli(agent, *args, code=1).stderr.split("--accept-gds ")[1].split()[0]
        denied = _agent_cli(agent, *args, "--accept-gds", thumb, code=1)
        assert "BadUserAccessDenied" in denied.stderr and "enrol-token" in denied.stderr
    assert cm.sql("SELECT count(*) FROM gds_requests")[0][0] == 0
    # a CA home is not an agent home: refused before anything is written
    assert "is a certmgr CA home" in cm("agent", "status", code=2).stderr
    assert "is not opc.tcp://HOST:PORT" in agent("agent", "enrol", "--gds", "ca-host:4845", "--app-uri", APP_URI, "--store",
                                               str(store), "--token-file", str(wrong), code=2).stderr


def test_node_opcua_on_the_agents_store_refuses_a_client_revoked_on_the_gds(gds_home, tmp_path, node_server_installed):  # noqa: F811
    """The agent keeps a node-opcua store (the server's own certificate and chain, the CA and CRL); after a
    `certmgr revoke` on the CA host and the agent's next `run --once`, node-opcua refuses the revoked client."""
    from datetime import datetime, timezone

    from certmgr.opcua.identities import identity_from_store
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session
    from tests.test_field_trial_stores import NODE_SERVER_URI, run_node_server, stop

    cm = gds_home
    configure(cm, "[gds]\nauto_approve_new = true")
    cm("app", "add", "--app-uri", NODE_SERVER_URI, "--deploy", "pull", "--role", "both", "--dns", "localhost", "--ip", "127.0.0.1")
    token = tmp_path / "node.token"
    cm("gds", "enrol-token", "--app-uri", NODE_SERVER_URI, "--valid", "1h", "--token-file", str(token))
    identities = {}
    for name in ("good", "bad"):  # clients of the node-opcua server, issued on the CA host
        cm("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name), "--role", "client")
        identities[name] = identity_from_store(pki.ApplicationStore(tmp_path / name), f"urn:plant:{name}", peer_role="server",
                                               clock=lambda: datetime.now(timezone.utc))
    agent = _agent(tmp_path)
    store = tmp_path / "node-server"
    with gds_server(cm, free_port()) as url:
        thumb = _agent_cli(agent, "agent", "enrol", "--gds", url, "--app-uri", NODE_SERVER_URI, "--store", str(store),
                           "--layout", "node-opcua", "--token-file", str(token), code=1).stderr.split("--accept-gds ")[1].split()[0]
        enrolled = _agent_cli(agent, "agent", "enrol", "--gds", url, "--app-uri", NODE_SERVER_URI, "--store", str(store),
                              "--layout", "node-opcua", "--token-file", str(token), "--accept-gds", thumb, "--json")
        assert '"enrolled"' in enrolled.stdout and "loopback proof: 1 channels ok" in enrolled.stdout, enrolled.stdout
        node_store = pki.ApplicationStore(store, "node-opcua")
        bad_serial = identities["bad"].certificate.serial_number
        assert node_store.crls(pki.TRUSTED)[0].value.get_revoked_certificate_by_serial_number(bad_serial) is None
        cm("revoke", "--app-uri", "urn:plant:bad", "--reason", "keyCompromise", "--yes", "--no-probe")
        _agent_cli(agent, "agent", "run", "--once")
    crl, = node_store.crls(pki.TRUSTED)
    assert crl.value.get_revoked_certificate_by_serial_number(bad_serial) is not None
    process, port = run_node_server(store, tmp_path / "node.log")
    try:
        node_url = f"opc.tcp://127.0.0.1:{port}"

        async def connect(identity):
            for _ in range(5):  # node-opcua reads its folders in the background after start
                served, _ = await endpoint_certificate(node_url)
                attempt = await attempt_session(node_url, identity, "Basic256Sha256", served)
                if attempt.ok or identity is identities["bad"]:
                    return served, attempt
                await asyncio.sleep(2)
            return served, attempt

        served, good = asyncio.run(connect(identities["good"]))
        _, bad = asyncio.run(connect(identities["bad"]))
    finally:
        stop(process)
    assert pki.thumbprint(served) == node_store.own().thumbprint  # node-opcua serves the certificate the agent installed
    assert good.ok, good.as_dict()
    assert not bad.ok and bad.side == "server", bad.as_dict()


def test_a_failed_hook_runs_again_and_a_revoked_application_enrols_again_with_a_new_token(gds_home, tmp_path):  # noqa: F811
    """The deploy hook fails: the certificate stays installed (the GDS has it as current) and the next run runs the
    hook again. Revoked on the CA host, the application's next run is refused (BadCertificateRevoked, exit 1) and
    `agent enrol --force` with a new token gets it a new certificate (auto_approve_new: no operator)."""
    cm = gds_home
    configure(cm, "[gds]\nauto_approve_new = true")
    cm("app", "add", "--app-uri", APP_URI, "--deploy", "pull", "--role", "both")
    agent = _agent(tmp_path)
    store, flag, hook_log = tmp_path / "pki", tmp_path / "hook-may-run", tmp_path / "hook.log"
    hook = f'test -f {flag} && echo "$CERTMGR_ACTION $CERTMGR_THUMBPRINT" >> {hook_log}'
    with gds_server(cm, free_port()) as url:
        args = ["agent", "enrol", "--gds", url, "--app-uri", APP_URI, "--store", str(store), "--deploy-hook", hook]
        thumb = _agent_cli(agent, *args, "--token-file", str(_token(cm, tmp_path)), code=1).stderr.split("--accept-gds ")[1].split()[0]
        failed = _agent_cli(agent, *args, "--token-file", str(tmp_path / "gw.token"), "--accept-gds", thumb, code=1)
        assert "deploy hook exited 1" in failed.stderr, failed.stderr
        first = pki.ApplicationStore(store).own()
        assert first is not None and agent.json("agent", "status")["apps"][0]["thumbprint"] == first.thumbprint
        flag.write_text("")
        _agent_cli(agent, "agent", "run", "--once")
        assert hook_log.read_text().split() == ["renewed", first.thumbprint]
        assert "--force" in _agent_cli(agent, *args, "--token-file", str(tmp_path / "gw.token"), code=2).stderr

        cm("revoke", first.thumbprint, "--reason", "keyCompromise", "--yes", "--no-probe")
        refused = _agent_cli(agent, "agent", "run", "--once", code=1)
        assert "BadCertificateRevoked" in refused.stderr and "enrol again" in refused.stderr, refused.stderr
        _agent_cli(agent, *args, "--force", "--token-file", str(_token(cm, tmp_path, "again.token")))
    second = pki.ApplicationStore(store).own()
    assert second.thumbprint != first.thumbprint
    assert pki.ApplicationStore(store).crls(pki.TRUSTED)[0].value.get_revoked_certificate_by_serial_number(
        first.certificate.serial_number) is not None


def test_enrol_with_wait_finishes_once_the_operator_approves(gds_home, tmp_path):  # noqa: F811
    """`agent enrol --wait` polls FinishRequest (BadNothingToDo) until `certmgr gds approve` on the CA host."""
    import time

    cm = gds_home
    cm("app", "add", "--app-uri", APP_URI, "--deploy", "pull", "--role", "both")
    token = _token(cm, tmp_path)
    agent = _agent(tmp_path)
    store = tmp_path / "pki"
    with gds_server(cm, free_port()) as url:
        args = ["agent", "enrol", "--gds", url, "--app-uri", APP_URI, "--store", str(store), "--token-file", str(token)]
        thumb = _agent_cli(agent, *args, code=1).stderr.split("--accept-gds ")[1].split()[0]
        env = {k: v for k, v in agent.subprocess_env().items() if k != "CERTMGR_CA_PASSPHRASE"}
        waiting = subprocess.Popen([sys.executable, "-m", "certmgr", *args, "--accept-gds", thumb, "--wait", "90", "--json"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (pending := cm.json("gds", "pending")) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert pending and waiting.poll() is None  # the request exists and the agent still waits
            cm("gds", "approve", str(pending[0]["id"]))
            out, err = waiting.communicate(timeout=90)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.communicate()
    assert waiting.returncode == 0 and '"enrolled"' in out, out + err
    assert pki.ApplicationStore(store).own() is not None
