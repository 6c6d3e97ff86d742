"""The next CA generation into push servers' TrustLists at `ca rollover start`, over push.py's own session.

A push-deployed server has no folder certmgr writes: its trust list is changed over OPC UA Part 12 (AddCertificate
and a TrustList Write of the new CA's CRL), as `certmgr push` does for the signing CA, and read back. The old
CA and its CRL stay (push.py's TrustList step replaces only CRLs of the same issuer name, and each generation has
its own). Whether the server then accepts new-CA certificates is what the probe in `status` shows.
"""

from __future__ import annotations

import asyncio
import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import db
import pki

from ..context import AppContext
from .push import PREFERENCE, PushReport, _load, _trust_list
from .verifier import verifier_identity_uri, verifier_store

log = logging.getLogger(__name__)


async def _add_to_trust_list(ctx: AppContext, app, ca_der: bytes, crl_der: bytes, report: PushReport) -> None:
    from ..opcua.faults import describe_failure
    from ..opcua.identities import identity_from_store
    from ..opcua.proofs import endpoint_certificate
    from ..opcua.push import PushClient, PushError, fix_for
    from ..opcua.session import attempt_session, close_attempt

    identity = identity_from_store(verifier_store(ctx), verifier_identity_uri(ctx), peer_role="server", clock=ctx.now)
    try:
        server_cert, policies = await endpoint_certificate(app.endpoint)
    except Exception as exc:
        report.fail("endpoints", describe_failure(exc)[0], f"cannot read the endpoints of {app.endpoint}: {describe_failure(exc)[1]}")
        return
    verdict = identity.validator.check(server_cert, app.uri)
    if not verdict.ok:  # never pinned here: a server certmgr does not trust gets nothing written
        report.fail("server certificate", verdict.status, f"certmgr does not trust {pki.thumbprint(server_cert)}: "
                    f"push it first (`certmgr push --app-uri {app.uri}`)")
        return
    policy = next((p for p in PREFERENCE if p in policies), "Basic256Sha256")
    attempt = await attempt_session(app.endpoint, identity, policy, server_cert, user=app.user, server_app_uri=None, keep=True)
    if not attempt.ok:
        report.fail("session", attempt.status, f"{attempt.stage}: {attempt.message}; {fix_for(attempt.status)}")
        return
    try:
        client = PushClient(attempt.client)
        if await _write_trust_list(client, report, ca_der, crl_der):
            await client.apply_changes()
            report.add("ApplyChanges", "Good")
        report.ok = not report.failed_step
    except PushError as exc:
        report.fail(exc.step, exc.status, str(exc))
    finally:
        await close_attempt(attempt)


async def _write_trust_list(client, report: PushReport, ca_der: bytes, crl_der: bytes) -> bool:
    """push.py's TrustList step, for the new CA and its CRL (placed beside what the server already trusts)."""
    return await _trust_list(client, report, [("new CA certificate", ca_der, False), ("new CA's CRL", crl_der, True)])


def distribute_to_push_servers(ctx: AppContext, ca_cert: x509.Certificate, crl_der: bytes) -> list[dict]:
    """One report per push-deployed application: its TrustList now holds ``ca_cert`` and its CRL (read back)."""
    with ctx.database().read() as session:
        uris = list(session.scalars(select(db.Application.app_uri).where(
            db.Application.deploy == "push", db.Application.endpoint.is_not(None)).order_by(db.Application.app_uri)))
    ca_der = ca_cert.public_bytes(serialization.Encoding.DER)
    reports = []
    for uri in uris:
        report = PushReport(uri)
        try:
            asyncio.run(_add_to_trust_list(ctx, _load(ctx, uri), ca_der, crl_der, report))
        except Exception as exc:  # one server's failure is its line in the report; start goes on
            log.exception("TrustList of %s", uri)
            report.fail("TrustList", type(exc).__name__, str(exc))
        steps = {s.name: s.status for s in report.steps}
        reports.append({"app_uri": uri, "ok": report.ok and steps.get("TrustList") == "Good",
                        "steps": [s.as_dict() for s in report.steps]})
    return reports
