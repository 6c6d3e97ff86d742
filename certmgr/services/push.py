"""``certmgr push``: renew a server's certificate over OPC UA Part 12 push management, without file access.

SignAndEncrypt session as a SecurityAdmin user with certmgr's verification identity -> CreateSigningRequest
-> certificate signed from certmgr's profile (only the CSR's key is used; its URI must be the registered
one) -> UpdateCertificate with the CA as issuer -> the server's TrustList brought to hold certmgr's CA and
current CRL, read back -> ApplyChanges -> live proof: a new channel must see the new thumbprint.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .crls import current_crl
from .verifier import verifier_identity_uri, verifier_store

log = logging.getLogger(__name__)
PREFERENCE = ("Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "Basic256Sha256")


@dataclass
class Step:
    name: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict:
        return {"step": self.name, "status": self.status, "detail": self.detail}


@dataclass
class PushReport:
    app_uri: str
    ok: bool = False
    steps: list[Step] = field(default_factory=list)
    old_thumbprint: str | None = None
    new_thumbprint: str | None = None
    not_after: str | None = None
    failed_step: str | None = None
    message: str = ""
    served: bool = False  # the server presents the new certificate although the proof failed

    def add(self, name: str, status: str, detail: str = "") -> None:
        self.steps.append(Step(name, status, detail))

    def fail(self, name: str, status: str, detail: str) -> PushReport:
        self.add(name, status, detail)
        self.failed_step, self.message = name, detail
        return self

    def as_dict(self) -> dict:
        return {"app_uri": self.app_uri, "ok": self.ok, "old_thumbprint": self.old_thumbprint,
                "new_thumbprint": self.new_thumbprint, "not_after": self.not_after, "failed_step": self.failed_step,
                "message": self.message, "steps": [s.as_dict() for s in self.steps]}


@dataclass
class _App:
    id: int
    uri: str
    endpoint: str
    identity: ca.ApplicationIdentity
    days: int
    renew_before: int | None
    user: tuple[str, str] | None
    active_thumbprint: str | None


def _load(ctx: AppContext, app_uri: str) -> _App:
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None:
            raise InputError(f"no application {app_uri!r} is registered", "register it with `certmgr app add ... --deploy push`")
        if app.deploy != "push" or not app.endpoint:
            raise InputError(f"{app_uri} is not registered for push (deploy={app.deploy})",
                             f"`certmgr app update --app-uri {app_uri} --deploy push --endpoint opc.tcp://...`")
        active = queries.active_certificate(session, app.id)
        user = None
        if app.admin_user:
            from ..secrets import read_secret_file

            password = read_secret_file(app.admin_password_file, "admin password file").decode() if app.admin_password_file else ""
            user = (app.admin_user, password)
        identity = ca.ApplicationIdentity(app.app_uri, ca.SubjectFields(app.name, app.organization),
                                          tuple(app.dns_names or []), tuple(app.ip_addresses or []))
        return _App(app.id, app.app_uri, app.endpoint, identity, app.validity_days, app.renew_before_seconds, user,
                    active.thumbprint if active else None)


def push(
    ctx: AppContext, app_uri: str, *, regenerate_key: bool = False, accept_server: str | None = None,
    sign_only: bool = False, verify_timeout: float | None = None,
) -> PushReport:
    """`certmgr push`: one application through the renewal pipeline with the push delivery (claims, intent,
    lifecycle, one CRL), now, due or not."""
    from .renewal import RenewOptions, renew

    app = _load(ctx, app_uri)  # refuse what is not push-deployed before anything else
    options = RenewOptions(app_uris=(app.uri,), force=True, verify_timeout=verify_timeout, regenerate_key=regenerate_key,
                           accept_server=accept_server, sign_only=sign_only)
    result = next(r for r in renew(ctx, options) if r.app_uri == app.uri)
    if result.report is not None:
        return result.report
    report = PushReport(app.uri, old_thumbprint=app.active_thumbprint)
    return report.fail("claim", "Skipped", result.reason)


async def conversation(ctx, app: _App, issuer, report: PushReport, record, *, regenerate_key: bool, accept_server: str | None,
                       sign_only: bool, timeout: float) -> None:
    """The Part 12 steps, each reported; ``record(certificate)`` records the new certificate (pending) the
    moment it exists, before it is sent to the server."""
    from ..opcua.faults import describe_failure
    from ..opcua.identities import identity_from_store
    from ..opcua.proofs import await_new_certificate, endpoint_certificate
    from ..opcua.push import PushClient, PushError, fix_for
    from ..opcua.session import attempt_session, close_attempt

    store = verifier_store(ctx)
    identity = identity_from_store(store, verifier_identity_uri(ctx), peer_role="server", clock=ctx.now)
    try:
        server_cert, policies = await endpoint_certificate(app.endpoint)
    except Exception as exc:
        report.fail("endpoints", describe_failure(exc)[0], f"cannot read the endpoints of {app.endpoint}: {describe_failure(exc)[1]}")
        return
    thumb = pki.thumbprint(server_cert)
    report.add("endpoints", "Good", f"server certificate {thumb}, policies {', '.join(policies) or 'none'}")
    verdict = identity.validator.check(server_cert, app.uri)
    if not verdict.ok:
        if accept_server and thumb.startswith(accept_server.replace(":", "").upper()) and len(accept_server) >= 8:
            identity.validator = None  # pinned by the operator for this one session
            report.add("server certificate", "Accepted", f"{thumb} pinned with --accept-server ({verdict.status})")
        else:
            report.fail("server certificate", verdict.status,
                        f"certmgr does not trust the server's current certificate {thumb} ({verdict.message}); check it, then "
                        f"run again with --accept-server {thumb[:16]}")
            return
    policy = next((p for p in PREFERENCE if p in policies), "Basic256Sha256")
    attempt = await attempt_session(app.endpoint, identity, policy, server_cert, user=app.user, server_app_uri=None,
                                    sign_only=sign_only, keep=True)
    if not attempt.ok:
        refused = f" (refused by the {attempt.side})" if attempt.side else ""
        report.fail("session", attempt.status, f"{attempt.stage}{refused}: {attempt.message}; {fix_for(attempt.status)}")
        return
    mode = "Sign" if sign_only else "SignAndEncrypt"
    report.add("session", "Good", f"{policy} {mode} as {app.user[0] if app.user else 'anonymous'}")
    client = PushClient(attempt.client)
    try:
        csr_der = await client.create_signing_request(regenerate_key)
        report.add("CreateSigningRequest", "Good", f"regeneratePrivateKey={regenerate_key}, CSR {len(csr_der)} bytes")
        try:
            csr = x509.load_der_x509_csr(csr_der)
            certificate = ca.sign_csr(csr, app.identity, issuer, now=ctx.now(), days=app.days)
        except (ValueError, ca.CAError) as exc:
            report.fail("sign CSR", "Refused", str(exc))
            return
        record(certificate)
        report.new_thumbprint = pki.thumbprint(certificate)
        report.not_after = certificate.not_valid_after_utc.isoformat()
        der = certificate.public_bytes(serialization.Encoding.DER)
        ca_der = issuer.certificate.public_bytes(serialization.Encoding.DER)
        apply_required = await client.update_certificate(der, [ca_der])
        report.add("UpdateCertificate", "Good", f"applyChangesRequired={apply_required}")
        # CloseAndUpdate has its own applyChangesRequired: either one means ApplyChanges
        apply_required = await _trust_list(client, report, _trust_material(ctx, ca_der)) or apply_required
        if apply_required:
            await client.apply_changes()
            report.add("ApplyChanges", "Good")
    except PushError as exc:
        report.fail(exc.step, exc.status, str(exc))
        return
    finally:
        await close_attempt(attempt)  # the server drops every channel after ApplyChanges anyway
    identity.validator = identity_from_store(store, verifier_identity_uri(ctx), peer_role="server", clock=ctx.now).validator
    live = await await_new_certificate(app.endpoint, identity, report.new_thumbprint, timeout=timeout, user=app.user)
    if not live.ok:
        report.fail("live proof", "Failed", live.message)
        report.served = live.seen == report.new_thumbprint
        return
    report.add("live proof", "Good", live.message)
    report.ok = True


def _trust_material(ctx, ca_der: bytes) -> list[tuple[str, bytes, bool]]:
    """What a pushed server's TrustList must hold, as (name, DER, is a CRL): certmgr's CA and its current CRL, and
    for an issuing CA under a root (services/ca_chain.py) the root and the root's CRL too, all in the trusted
    lists (node-opcua grants no trust from issuer lists: TRUSTS_INTERMEDIATE_ONLY_IN_TRUSTED)."""
    from .ca_chain import load_chain

    material = [("CA certificate", ca_der, False), ("current CRL", current_crl(ctx).der, True)]
    chain = load_chain(ctx.home)
    if chain is not None:
        root_der = chain.root.public_bytes(serialization.Encoding.DER)
        material += [("root certificate", root_der, False), ("root's current CRL", chain.root_crl_der, True)]
    return material


async def _trust_list(client, report: PushReport, material: list[tuple[str, bytes, bool]]) -> bool:
    """Make the server's TrustList hold ``material`` (_trust_material) and read it back: some servers answer
    Good and change nothing (node-opcua 2.157 ignores Write). Returns applyChangesRequired of the write.

    A read-back without them is a warning, not a failure: the server already trusts certmgr's CA (the session
    that got here proves it), and the live proof that follows fails if the CRL it holds does not do."""
    from ..opcua.push import TrustList

    certificates = [der for _, der, is_crl in material if not is_crl]
    crls = [der for _, der, is_crl in material if is_crl]
    lists = await client.read_trust_list()
    apply_required = False
    for der in certificates:
        if der not in lists.trusted:
            await client.add_certificate(der, trusted=True)
    if any(der not in lists.trusted_crls for der in crls):
        # each issuer's older CRLs make way for the current one; CRLs of other issuers stay
        others = [c for c in lists.trusted_crls if not any(_same_issuer(c, der) for der in crls)]
        trusted = lists.trusted + [der for der in certificates if der not in lists.trusted]
        apply_required = await client.write_trust_list(TrustList(trusted, others + crls, lists.issuers, lists.issuer_crls))
    after = await client.read_trust_list()
    missing = [name for name, der, is_crl in material if der not in (after.trusted_crls if is_crl else after.trusted)]
    if missing:
        pending = " (the server asked for ApplyChanges, which follows)" if apply_required else ""
        report.add("TrustList", "Warning", f"read back without certmgr's {' and '.join(missing)}{pending}: the server ignored the "
                   "update; peers of certmgr's CA will fail with BadCertificateRevocationUnknown until it is placed in the "
                   "server's store (`certmgr store import` where the server's PKI folder is reachable)")
    else:
        report.add("TrustList", "Good", f"holds certmgr's {', '.join(name for name, _, _ in material)} (read back)")
    return apply_required


def _same_issuer(crl_a: bytes, crl_b: bytes) -> bool:
    try:
        return x509.load_der_x509_crl(crl_a).issuer == x509.load_der_x509_crl(crl_b).issuer
    except ValueError:
        return False


@asynccontextmanager
async def admin_session(ctx: AppContext, app: _App):
    """A PushClient on a SignAndEncrypt session as the application's admin user, with certmgr's verification
    identity, to a server whose certificate certmgr trusts (the calls after the first push); closed on exit."""
    from ..opcua.identities import identity_from_store
    from ..opcua.proofs import endpoint_certificate
    from ..opcua.push import PushClient, fix_for
    from ..opcua.session import attempt_session, close_attempt

    identity = identity_from_store(verifier_store(ctx), verifier_identity_uri(ctx), peer_role="server", clock=ctx.now)
    server_cert, policies = await endpoint_certificate(app.endpoint)
    if not identity.validator.check(server_cert, app.uri).ok:
        raise OperationFailed(f"certmgr does not trust the server certificate of {app.endpoint}", "push a certificate first")
    policy = next((p for p in PREFERENCE if p in policies), "Basic256Sha256")
    attempt = await attempt_session(app.endpoint, identity, policy, server_cert, user=app.user, keep=True)
    if not attempt.ok:
        raise OperationFailed(f"no session with {app.endpoint}: {attempt.status} ({attempt.message})", fix_for(attempt.status))
    try:
        yield PushClient(attempt.client)
    finally:
        await close_attempt(attempt)


def load_push_app(ctx: AppContext, app_uri: str) -> _App:
    """The registered push application (InputError when it is not one), with its admin user's password."""
    return _load(ctx, app_uri)


def rejected_list(ctx: AppContext, app_uri: str) -> list[bytes]:
    """GetRejectedList of a push-managed server."""
    app = _load(ctx, app_uri)

    async def run() -> list[bytes]:
        async with admin_session(ctx, app) as client:
            return await client.rejected_list()

    return asyncio.run(run())
