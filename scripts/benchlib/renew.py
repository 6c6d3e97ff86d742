"""Renewal of a batch: parallel key generation and loopback verification against bare asyncua connects."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from . import section
from .common import new_home, timed


def bare_connects(server_identity, client_identity, policies, rounds: int, parsed_keys: bool = False) -> list[float]:
    """Per round: one plain asyncua connect+disconnect per policy, no certificate validation at all.

    ``parsed_keys``: hand asyncua parsed key objects (as certmgr does) instead of bytes to set_security,
    which re-parses and re-checks the RSA key on every call.
    """
    from asyncua import Client, Server, ua

    from certmgr.opcua.channel import policy_class, server_policy_type

    async def run() -> list[float]:
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/")
        server.set_security_policy([server_policy_type(p) for p in policies])
        await server.set_application_uri(server_identity.app_uri)
        await server.load_certificate(server_identity.certificate_der)
        await server.load_private_key(server_identity.private_key_der)
        await server.start()
        url = f"opc.tcp://127.0.0.1:{server.bserver.port}/"
        samples = []
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                for policy in policies:
                    client = Client(url, timeout=10)
                    client.application_uri = client_identity.app_uri
                    if parsed_keys:
                        client.security_policy = policy_class(policy)(
                            server_identity.certificate, client_identity.certificate, client_identity.private_key,
                            ua.MessageSecurityMode.SignAndEncrypt, host_cert_chain=[],
                        )
                        client.uaclient.set_security(client.security_policy)
                    else:
                        await client.set_security(
                            policy_class(policy), client_identity.certificate_der, client_identity.private_key_der,
                            server_certificate=server_identity.certificate_der, mode=ua.MessageSecurityMode.SignAndEncrypt,
                        )
                    await client.connect()
                    await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
                    await client.disconnect()
                samples.append(time.perf_counter() - started)
        finally:
            await server.stop()
        return samples

    return asyncio.run(run())


@section("renew", "renew 200 due certificates with loopback verification; keygen speed-up; proof cost")
def bench_renew(work: Path, quick: bool = False) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    import ca
    import db
    import pki
    from certmgr.opcua.channel import POLICY_NAMES
    from certmgr.opcua.identities import identity_from_store
    from certmgr.services.issuing import IssueRequest, issue_application
    from certmgr.services.keygen import default_workers, generate_keys
    from certmgr.services.renewal import RENEWED, RenewOptions, renew
    from certmgr.services.windows import sync_renew_after

    count = 20 if quick else 200
    ctx = new_home(work / "home")
    seed_key = ca.generate_rsa_key(2048)
    for i in range(count):
        issue_application(ctx, IssueRequest(app_uri=f"urn:bench:app{i:03d}", store=work / "stores" / f"app{i:03d}", role="server",
                                            dns_names=("localhost",), ip_addresses=("127.0.0.1",)), key=seed_key)

    workers = default_workers()
    sizes = [2048] * count
    one = timed(lambda: generate_keys(sizes, workers=1))
    many = timed(lambda: generate_keys(sizes, workers=workers))
    print(f"keygen of {count} RSA-2048 keys: 1 worker {one:.1f} s, {workers} workers {many:.1f} s, "
          f"speed-up {one / many:.2f}x (target >= 1.7x on 2 cores)")

    sync_renew_after(ctx)  # settle the stored windows first, then let time pass for every certificate
    with ctx.database().write() as session:
        session.execute(
            update(db.Certificate).where(db.Certificate.status == db.CertStatus.ACTIVE)
            .values(renew_after=datetime.now(timezone.utc) - timedelta(hours=1))
        )
    # the verification cost is the difference between a proven batch and the same batch with --no-verify
    started = time.perf_counter()
    unproven = renew(ctx, RenewOptions(all_due=True, verify=False))
    unproven_wall = time.perf_counter() - started
    with ctx.database().write() as session:
        session.execute(
            update(db.Certificate).where(db.Certificate.status == db.CertStatus.ACTIVE)
            .values(renew_after=datetime.now(timezone.utc) - timedelta(hours=1))
        )
    started = time.perf_counter()
    results = renew(ctx, RenewOptions(all_due=True))
    wall = time.perf_counter() - started
    renewed = sum(1 for r in results if r.outcome == RENEWED)
    print(f"renewed {renewed}/{len(results)} (incl. certmgr's verifier) in {wall:.1f} s; the same batch without proofs: "
          f"{unproven_wall:.1f} s ({sum(1 for r in unproven if r.outcome == RENEWED)} renewed)")

    server = identity_from_store(pki.ApplicationStore(work / "stores" / "app000"), "urn:bench:app000", peer_role="client",
                                 clock=lambda: datetime.now(timezone.utc))
    verifier = identity_from_store(pki.ApplicationStore(ctx.home.verifier_store), "urn:bench:verifier", peer_role="server",
                                   clock=lambda: datetime.now(timezone.utc))
    rounds = 10 if quick else 30
    bare = statistics.fmean(bare_connects(server, verifier, POLICY_NAMES, rounds))
    parsed = statistics.fmean(bare_connects(server, verifier, POLICY_NAMES, rounds, parsed_keys=True))
    per_cert = max(0.0, wall - unproven_wall) / max(1, renewed)
    print(f"bare asyncua, same {len(POLICY_NAMES)} SignAndEncrypt connects, no validation: {bare * 1000:.0f} ms per certificate "
          f"({parsed * 1000:.0f} ms with parsed keys handed to asyncua)")
    print(f"certmgr loopback proof (validation both sides, server start-up included): {per_cert * 1000:.0f} ms per certificate, "
          f"{per_cert / bare:.2f}x bare (target <= 1.3x), {per_cert / parsed:.2f}x bare with parsed keys")
