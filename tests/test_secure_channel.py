"""Issued certificates on real OPC UA secure channels (asyncua server and client on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import ca
import pki
from certmgr.opcua.channel import POLICY_NAMES, Identity, LoopbackServer, prove_pair, try_channel
from certmgr.opcua.identities import identity_from_store
from certmgr.opcua.validator import StoreValidator
from tests.conftest import Certmgr, make_identity
from tests.helpers import der, utc

now = utc


@pytest.fixture
def pair(initialised: Certmgr, tmp_path):
    initialised("issue", "--app-uri", "urn:plant:server", "--store", str(tmp_path / "server"), "--role", "server",
                "--dns", "localhost", "--ip", "127.0.0.1")
    initialised("issue", "--app-uri", "urn:plant:client", "--store", str(tmp_path / "client"), "--role", "client")
    server_store = pki.ApplicationStore(tmp_path / "server")
    client_store = pki.ApplicationStore(tmp_path / "client")
    server = identity_from_store(server_store, "urn:plant:server", peer_role="client", clock=now, record_rejected=True)
    client = identity_from_store(client_store, "urn:plant:client", peer_role="server", clock=now, record_rejected=True)
    return server, client, server_store, client_store


def test_issued_pair_opens_channels_with_all_three_policies(pair):
    server, client, _, _ = pair
    results = asyncio.run(prove_pair(server, client, POLICY_NAMES))
    assert [r.policy for r in results] == list(POLICY_NAMES)
    assert all(r.ok for r in results), [r.as_dict() for r in results]
    assert {r.server_thumbprint for r in results} == {pki.thumbprint(server.certificate)}


def foreign_identity(foreign_ca, key_pool, uri, tmp_path, name):
    """An application of another CA whose own store trusts that CA (and holds its CRL)."""
    key = key_pool.get()
    cert = ca.build_application_certificate(make_identity(uri, name), key.public_key(), foreign_ca, now=now())
    store = pki.ApplicationStore(tmp_path / name)
    store.install_own(cert, ca.private_key_pem(key))
    store.add_certificate(foreign_ca.certificate)
    crl = ca.build_crl(foreign_ca, number=1, this_update=now(), next_update=now() + timedelta(days=30))
    store.publish_crl(der(crl), foreign_ca.certificate, 1)
    return store


def test_refusals_name_the_side_and_status(pair, foreign_ca, key_pool, tmp_path):
    server, client, server_store, client_store = pair
    intruder_store = foreign_identity(foreign_ca, key_pool, "urn:else:client", tmp_path, "intruder")
    intruder = identity_from_store(intruder_store, "urn:else:client", peer_role="server", clock=now)
    rogue_store = foreign_identity(foreign_ca, key_pool, "urn:else:server", tmp_path, "rogue")
    for name in ("certs", "crl"):  # the rogue server trusts our CA, so only our client can refuse
        for path in (client_store.root / "trusted" / name).iterdir():
            (rogue_store.root / "trusted" / name / path.name).write_bytes(path.read_bytes())
    rogue = identity_from_store(rogue_store, "urn:else:server", peer_role="client", clock=now)
    # a client that claims another ApplicationUri than its certificate carries
    liar = Identity("urn:plant:someone-else", client.certificate, client.private_key, client.validator)

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            ok = await try_channel(loopback.url, client, "Basic256Sha256", server_certificate=server.certificate_der,
                                   server_validator=server.validator)
            foreign_client = await try_channel(loopback.url, intruder, "Basic256Sha256",
                                               server_certificate=server.certificate_der, server_validator=server.validator)
            wrong_uri = await try_channel(loopback.url, liar, "Basic256Sha256", server_certificate=server.certificate_der,
                                          server_validator=server.validator)
            await loopback.use(rogue)
            foreign_server = await try_channel(loopback.url, client, "Basic256Sha256",
                                               server_certificate=rogue.certificate_der, server_validator=rogue.validator)
            return ok, foreign_client, wrong_uri, foreign_server
        finally:
            await loopback.stop()

    ok, foreign_client, wrong_uri, foreign_server = asyncio.run(scenario())
    assert ok.ok
    assert (foreign_client.ok, foreign_client.side, foreign_client.status) == (False, "server", "BadCertificateChainIncomplete")
    assert "intruder" in {p.value.subject.rfc4514_string().split(",")[0][3:] for p in server_store.rejected()}
    assert (wrong_uri.ok, wrong_uri.status) == (False, "BadCertificateUriInvalid")
    assert (foreign_server.ok, foreign_server.side, foreign_server.status) == (False, "client", "BadCertificateChainIncomplete")
    assert "refused the server" in foreign_server.message
    assert any(pki.thumbprint(p.value) == pki.thumbprint(rogue.certificate) for p in client_store.rejected())


def test_revoked_client_refused_by_running_server_without_restart(initialised: Certmgr, tmp_path, pair):
    """The server's validator re-reads its store: a new CRL takes effect on the next connection."""
    server, client, server_store, _ = pair
    initialised("issue", "--app-uri", "urn:plant:other", "--store", str(tmp_path / "other"), "--role", "client")
    other = identity_from_store(pki.ApplicationStore(tmp_path / "other"), "urn:plant:other", peer_role="server", clock=now)
    issuer_cert = server_store.certificates(pki.TRUSTED)[0].value

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            kwargs = dict(server_certificate=server.certificate_der, server_validator=server.validator)
            before = await try_channel(loopback.url, client, "Basic256Sha256", **kwargs)
            # an operator's revocation, published the way certmgr publishes CRLs
            from certmgr.context import AppContext

            ctx = AppContext(initialised.home)
            issuer = ctx.issuer(passphrase=b"test passphrase for the CA")
            revoked = ca.build_crl(issuer, number=2, this_update=now() - timedelta(minutes=1), next_update=now() + timedelta(days=30),
                                   revoked=[ca.RevokedEntry(client.certificate.serial_number, now(), "keyCompromise")])
            server_store.publish_crl(der(revoked), issuer_cert, 2)
            after = await try_channel(loopback.url, client, "Basic256Sha256", **kwargs)
            still = await try_channel(loopback.url, other, "Basic256Sha256", **kwargs)
            return before, after, still
        finally:
            await loopback.stop()

    before, after, still = asyncio.run(scenario())
    assert before.ok and still.ok
    assert (after.ok, after.status, after.side) == (False, "BadCertificateRevoked", "server")


def test_verify_command_reports_each_channel(initialised: Certmgr, pair, tmp_path):
    report = initialised.json("verify", "--app-uri", "urn:plant:server", "--peer-app-uri", "urn:plant:client")
    assert report["ok"] and len(report["channels"]) == 3
    # a store that lost its CA certificate cannot validate peers any more: verify must fail with exit 1
    _, _, server_store, _ = pair
    for path in server_store.certs_dir(pki.TRUSTED).iterdir():
        path.unlink()
    failed = initialised("verify", "--app-uri", "urn:plant:server", "--policy", "Basic256Sha256", "--json", code=1)
    channel = failed.json()["channels"][0]
    assert channel["status"] == "BadCertificateChainIncomplete" and channel["side"] == "server"
    assert "secure channels failed" in failed.stderr


def test_validator_is_used_as_asyncua_hook(pair):
    server, _, server_store, _ = pair
    validator = StoreValidator(server_store, "client", now)

    async def call():
        from asyncua import ua
        from asyncua.common.utils import ServiceError

        description = ua.ApplicationDescription(ApplicationUri="urn:plant:server")
        await validator(server.certificate, description)  # its own certificate is CA-issued: accepted
        description.ApplicationUri = "urn:other:uri"
        with pytest.raises(ServiceError) as refused:
            await validator(server.certificate, description)
        return refused.value.code

    from asyncua import ua

    assert asyncio.run(call()) == ua.StatusCodes.BadCertificateUriInvalid
