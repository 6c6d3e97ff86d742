"""Canary probes: one probe (GetEndpoints + verifier channel + canary channel) against one bare asyncua
SignAndEncrypt connect (GetEndpoints + one channel and session), over many loopback endpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from . import section
from .common import new_home, ratio_line


@section("probe", "50 loopback endpoints: a canary probe vs a bare asyncua SignAndEncrypt connect (target <= 2.5x)")
def probe_section(scratch: Path, quick: bool = False) -> None:
    import pki
    from certmgr.opcua.channel import LoopbackServer, try_channel
    from certmgr.opcua.identities import identity_from_store
    from certmgr.opcua.probe import probe_endpoint, probe_many, read_endpoint
    from certmgr.opcua.proofs import _der
    from certmgr.services.canary import usable_canaries
    from certmgr.services.issuing import IssueRequest, issue_application
    from certmgr.services.probe import current_number, good_identity

    # every canary refusal is expected here; asyncua logs each one with a traceback at ERROR
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    count = 5 if quick else 50
    ctx = new_home(scratch / "home")
    issue_application(ctx, IssueRequest(app_uri="urn:bench:server", store=scratch / "server", role="server",
                            dns_names=("localhost",), ip_addresses=("127.0.0.1",)))
    server_id = identity_from_store(pki.ApplicationStore(scratch / "server"), "urn:bench:server", peer_role="client", clock=ctx.now)
    good, canaries, current = good_identity(ctx), usable_canaries(ctx, ctx.now()), current_number(ctx)

    async def run():
        servers = [await LoopbackServer(["Basic256Sha256"]).start(server_id) for _ in range(count)]
        try:
            bare, probed = [], []
            for server in servers:
                started = time.perf_counter()
                read = await read_endpoint(server.url)
                result = await try_channel(server.url, good, "Basic256Sha256", server_certificate=_der(read.certificate))
                bare.append(time.perf_counter() - started)
                assert result.ok, result
                started = time.perf_counter()
                outcome = await probe_endpoint(server.url, good, canaries, current)
                probed.append(time.perf_counter() - started)
                assert outcome.ok, outcome
            started = time.perf_counter()
            outcomes = await probe_many([s.url for s in servers], good, canaries, current, concurrency=8)
            concurrent = time.perf_counter() - started
            assert all(o.ok for o in outcomes)
            return bare, probed, concurrent
        finally:
            for server in servers:
                await server.stop()

    bare, probed, concurrent = asyncio.run(run())
    mean_bare, mean_probe = sum(bare) / len(bare), sum(probed) / len(probed)
    print(f"bare SignAndEncrypt connect: {mean_bare * 1000:7.1f} ms per endpoint (n={count})")
    print(f"canary probe:                {mean_probe * 1000:7.1f} ms per endpoint (n={count})")
    print(ratio_line("probe / bare connect", mean_probe, mean_bare, "<= 2.5x"))
    print(f"{count} endpoints probed concurrently (8 at a time): {concurrent:.2f} s")
