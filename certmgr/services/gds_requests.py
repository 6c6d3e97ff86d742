"""Certificate requests to certmgr's GDS: StartSigningRequest, the operator's decision, FinishRequest.

A request is a row (gds_requests) holding the CSR; it waits for `certmgr gds approve ID` unless the [gds]
auto-approve policy covers it. FinishRequest signs the certificate from certmgr's profile and the registration
(``ca.sign_csr``: only the public key comes from the CSR) and records it through lifecycle.py like any other, so
list, expiry alerts, revoke and the CRL see it. The private key never reaches this host.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError
from ..owners import current_owner
from . import lifecycle, windows
from .gds import CERTIFICATE_ROLES, SELF_ADMIN, Caller, GdsRefused, identity_of, live_application, require
from .gds_tokens import ENROL_TOKEN, spend
from .gds_users import CA_ADMIN

PENDING, APPROVED, DENIED, ISSUED = "pending", "approved", "denied", "issued"
PULL = "pull"  # the lifecycle intent and audit action suffix of a pulled certificate


def _parse_csr(der: bytes, app_uri: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise GdsRefused("BadInvalidArgument", "the CertificateRequest is not a DER PKCS#10 request") from None
    if not csr.is_signature_valid:
        raise GdsRefused("BadInvalidArgument", "the CSR's signature does not verify with the key it carries")
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise GdsRefused("BadInvalidArgument", "the CSR's key is not RSA (the policies served are RSA policies)")
    try:
        ca.check_key_size(key.key_size)
    except ca.ProfileError as exc:
        raise GdsRefused("BadInvalidArgument", str(exc)) from None
    requested = ca.csr_application_uris(csr)
    if requested != [app_uri]:
        raise GdsRefused("BadCertificateUriInvalid",
                         f"the CSR asks for URI {', '.join(requested) or '(none)'} but the application is registered as {app_uri}")
    return csr


def start_signing_request(ctx: AppContext, caller: Caller, app_id: int, csr_der: bytes, *,
                          new_key_format: str | None = None) -> int:
    """A new request (its id); approved at once when the [gds] policy says so. ``new_key_format``: the GDS made
    the key of ``csr_der`` (services/gds_key_pairs.py) and hands it over in that format."""
    role = require(caller, (*CERTIFICATE_ROLES, SELF_ADMIN, ENROL_TOKEN), app_id)
    settings = ctx.settings.gds
    now = ctx.now()
    with ctx.database().write() as session:
        app = live_application(session, app_id)
        _parse_csr(csr_der, app.app_uri)
        has_certificate = queries.active_certificate(session, app.id) is not None
        self_renewal = role == SELF_ADMIN and has_certificate
        auto = settings.auto_approve_renewals if self_renewal else (settings.auto_approve_new and not has_certificate)
        request = db.GdsRequest(application_id=app.id, csr_der=csr_der, state=APPROVED if auto else PENDING,
                                requested_by=caller.label[:200], self_renewal=self_renewal, created_at=now,
                                new_key_format=new_key_format)
        if auto:
            request.decided_by, request.decided_at = "policy ([gds] auto_approve_" + ("renewals)" if self_renewal else "new)"), now
        session.add(request)
        session.flush()
        queries.add_audit(session, at=now, actor=caller.label[:200], action="gds.request", target=app.app_uri,
                          request_id=request.id, role=role, self_renewal=self_renewal, state=request.state)
        if auto:
            queries.add_audit(session, at=now, actor="certmgr gds", action="gds.approve", target=app.app_uri,
                              request_id=request.id, by=request.decided_by)
        return request.id


@dataclass
class Finished:
    certificate_der: bytes
    issuer_ders: list[bytes]
    private_key: bytes | None = None  # StartNewKeyPairRequest only: the key the GDS made, encrypted, handed over once


def finish_request(ctx: AppContext, caller: Caller, app_id: int, request_id: int) -> Finished:
    """The certificate of an approved request (signed now, once; asked again, the same one). An enrolment
    token is spent when its certificate is handed out; a key the GDS made goes with it once, then is destroyed."""
    require(caller, (*CERTIFICATE_ROLES, SELF_ADMIN, ENROL_TOKEN), app_id)
    from .ca_chain import load_chain
    from .gds_key_pairs import handed_over, waiting_key

    issuer = ctx.issuer()
    root = load_chain(ctx.home)
    chain = [issuer.certificate.public_bytes(serialization.Encoding.DER)]
    if root is not None:
        chain.append(root.root.public_bytes(serialization.Encoding.DER))
    now = ctx.now()
    with ctx.database().read() as session:
        request = session.get(db.GdsRequest, request_id)
        key_format = request.new_key_format if request is not None else None
    key = waiting_key(ctx, request_id, key_format)  # read before the write transaction: no file I/O inside it
    lost = None
    with ctx.database().write() as session:
        app = live_application(session, app_id)
        request = session.get(db.GdsRequest, request_id)
        if request is None or request.application_id != app.id:
            raise GdsRefused("BadInvalidArgument", f"request {request_id} is not a request of application {app_id}")
        if request.state == PENDING:
            raise GdsRefused("BadNothingToDo", f"request {request_id} waits for approval (certmgr gds approve {request_id})")
        if request.state == DENIED:
            raise GdsRefused("BadRequestNotAllowed", f"request {request_id} was denied: {request.reason or 'by an operator'}")
        if request.state == ISSUED:
            finished = Finished(session.get(db.Certificate, request.certificate_id).der, chain, key)
        elif request.new_key_format is not None and key is None:
            # the GDS stopped between the request and its key file: nobody could use a certificate for that key
            request.state, request.decided_by, request.decided_at = DENIED, "certmgr gds", now
            request.reason = lost = "the key the GDS made for it was lost before it was saved; start a new request"
            queries.add_audit(session, at=now, actor="certmgr gds", action="gds.deny", target=app.app_uri,
                              request_id=request.id, reason=lost)
        else:
            finished = Finished(_issue(ctx, session, caller, app, request, issuer, now).der, chain, key)
    if lost is not None:
        raise GdsRefused("BadRequestNotAllowed", f"request {request_id}: {lost}")
    if key is not None:
        handed_over(ctx, request_id, key_format)
    return finished


def _issue(ctx: AppContext, session, caller: Caller, app: db.Application, request: db.GdsRequest, issuer, now) -> db.Certificate:
    csr = x509.load_der_x509_csr(request.csr_der)
    try:
        cert = ca.sign_csr(csr, identity_of(app), issuer, now=now, days=app.validity_days)
    except ca.ProfileError as exc:
        raise GdsRefused("BadRequestNotAllowed", str(exc)) from None
    due = windows.renew_after(cert.not_valid_before_utc, cert.not_valid_after_utc, app.renew_before_seconds,
                              windows.default_window(ctx))
    previous = queries.active_certificate(session, app.id)
    row = lifecycle.record_pending(session, cert, app, app.authority_id, now=now, renew_after=due, intent=PULL,
                                   owner=current_owner(), previous=previous.thumbprint if previous else None)
    # Part 12 pull: the GDS cannot see the application install it; delivered is what it can know.
    lifecycle.activate(session, row, now=now, actor=caller.label[:200], action="certificate.pull",
                       request_id=request.id, deploy=PULL, new_key=request.new_key_format is not None)
    request.state, request.certificate_id = ISSUED, row.id
    if caller.token_id is not None:
        spend(session, caller.token_id, now)
    return row


def current_certificates(ctx: AppContext, caller: Caller, app_id: int) -> list[bytes]:
    """GetCertificates: the application's active certificate (none before its first FinishRequest)."""
    require(caller, (*CERTIFICATE_ROLES, SELF_ADMIN), app_id)
    with ctx.database().read() as session:
        active = queries.active_certificate(session, live_application(session, app_id).id)
        return [active.der] if active is not None else []


def revoke_certificate(ctx: AppContext, caller: Caller, app_id: int, der: bytes) -> int | None:
    """RevokeCertificate (CertificateAuthorityAdmin): one of the application's certificates, with a new CRL."""
    from .revocation import revoke

    require(caller, (CA_ADMIN,))
    try:
        thumb = pki.thumbprint(x509.load_der_x509_certificate(der))
    except ValueError:
        raise GdsRefused("BadCertificateInvalid", "the Certificate is not DER X.509") from None
    with ctx.database().read() as session:
        app = live_application(session, app_id)
        row = session.scalars(select(db.Certificate).where(db.Certificate.thumbprint == thumb,
                                                           db.Certificate.application_id == app.id)).first()
        if row is None:
            raise GdsRefused("BadInvalidArgument", f"certificate {thumb} is not one of {app.app_uri}'s")
        row_id, uri = row.id, app.app_uri
    outcome = revoke(ctx, row_id, "unspecified")
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=caller.label[:200], action="gds.revoke", target=uri,
                          thumbprint=thumb, crl_number=outcome.crl_number)
    return outcome.crl_number


def update_required(ctx: AppContext, caller: Caller, app_id: int) -> bool:
    """GetCertificateStatus: no live certificate, or its renewal window has opened."""
    require(caller, (*CERTIFICATE_ROLES, SELF_ADMIN, ENROL_TOKEN), app_id)
    with ctx.database().read() as session:
        app = live_application(session, app_id)
        active = queries.active_certificate(session, app.id)
        return active is None or (active.renew_after is not None and active.renew_after <= ctx.now())


def revocation_status(ctx: AppContext, der: bytes) -> tuple[str, object]:
    """CheckRevocationStatus: (status code name, valid until) of a certificate by certmgr's CA and current CRL."""
    from .crls import current_crl

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise GdsRefused("BadCertificateInvalid", "the Certificate is not DER X.509") from None
    issuer_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    if cert.issuer != issuer_cert.subject or not pki.cert_signed_by(cert, issuer_cert):
        return "BadCertificateUntrusted", None
    crl = current_crl(ctx)
    parsed = x509.load_der_x509_crl(crl.der)
    if parsed.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        return "BadCertificateRevoked", None
    now = ctx.now()
    if cert.not_valid_after_utc < now or cert.not_valid_before_utc > now:
        return "BadCertificateTimeInvalid", None
    return "Good", min(crl.next_update, cert.not_valid_after_utc)


def trust_lists(ctx: AppContext) -> dict[str, list[bytes]]:
    """The DefaultApplicationGroup's trust list: certmgr's CA and its current CRL (with a root above the CA:
    the root and its CRL trusted, the issuing CA and its CRL as issuer), as TrustListDataType fields."""
    from .ca_chain import load_chain
    from .crls import current_crl

    der = serialization.Encoding.DER
    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    crl = current_crl(ctx).der
    chain = load_chain(ctx.home)
    if chain is None:
        return {"TrustedCertificates": [ca_cert.public_bytes(der)], "TrustedCrls": [crl], "IssuerCertificates": [],
                "IssuerCrls": []}
    return {"TrustedCertificates": [chain.root.public_bytes(der)], "TrustedCrls": [chain.root_crl_der],
            "IssuerCertificates": [ca_cert.public_bytes(der)], "IssuerCrls": [crl]}


# --- the operator's side: `certmgr gds pending|approve|deny` ---

def pending(ctx: AppContext) -> list[dict]:
    ctx.require_initialised()
    with ctx.database().read() as session:
        rows = session.scalars(select(db.GdsRequest).where(db.GdsRequest.state == PENDING).order_by(db.GdsRequest.id))
        return [_describe(r) for r in rows]


def _describe(request: db.GdsRequest) -> dict:
    csr = x509.load_der_x509_csr(request.csr_der)
    return {"id": request.id, "app_uri": request.application.app_uri if request.application else None,
            "state": request.state, "requested_by": request.requested_by, "self_renewal": request.self_renewal,
            "csr_subject": csr.subject.rfc4514_string(), "csr_uris": ca.csr_application_uris(csr),
            "key_size": csr.public_key().key_size, "created_at": request.created_at.isoformat(timespec="seconds")}


def decide(ctx: AppContext, request_id: int, *, approve: bool, reason: str | None = None) -> dict:
    ctx.require_initialised()
    with ctx.database().write() as session:
        request = session.get(db.GdsRequest, request_id)
        if request is None:
            raise InputError(f"no GDS request {request_id}", "see `certmgr gds pending`")
        if request.state != PENDING:
            raise InputError(f"GDS request {request_id} is {request.state}, not pending", "see `certmgr gds pending`")
        app = session.get(db.Application, request.application_id)
        request.state = APPROVED if approve else DENIED
        request.decided_by, request.decided_at, request.reason = ctx.actor, ctx.now(), reason
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="gds.approve" if approve else "gds.deny",
                          target=app.app_uri, request_id=request_id, reason=reason)
        described, key_format = _describe(request), request.new_key_format
    if not approve and key_format is not None:  # a denied request's key is of no use to anyone
        from .gds_key_pairs import handed_over

        handed_over(ctx, request_id, key_format)
    return described
