"""``certmgr diagnose``: turn an OPC UA connection failure into the fix.

Endpoint audit (modes, policies, user tokens, the server certificate) and a connection test with the
application's identity that reports the stage that failed, the side that refused and what to do.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

import ca
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from ..opcua.validator import TRUST_REFUSALS
from .own_identity import OwnIdentity, check_own_identity
from .store_inspect import describe, open_store

PREFERENCE = ("Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "Basic256Sha256")
DEPRECATED = ("Basic128Rsa15", "Basic256")


@dataclass
class Diagnosis:
    url: str
    identity: dict = field(default_factory=dict)
    endpoints: list[dict] = field(default_factory=list)
    server_certificate: dict | None = None
    findings: list[dict] = field(default_factory=list)
    connection: dict | None = None
    fix: str | None = None
    blocked: bool = False  # our own certificate is revoked or not valid: a session that works is luck

    @property
    def ok(self) -> bool:
        return bool(self.connection and self.connection["ok"]) and not self.blocked

    def as_dict(self) -> dict:
        return {
            "url": self.url, "ok": self.ok, "identity": self.identity, "endpoints": self.endpoints,
            "server_certificate": self.server_certificate, "findings": self.findings, "connection": self.connection,
            "fix": self.fix,
        }


def _finding(diagnosis: Diagnosis, severity: str, message: str) -> None:
    diagnosis.findings.append({"severity": severity, "message": message})


def _identity_store(ctx: AppContext, app_uri: str | None, store_dir: Path | None) -> tuple[pki.ApplicationStore, str]:
    if app_uri and store_dir:
        raise InputError("give --app-uri or --store, not both", "pick the identity to connect with")
    if store_dir is not None:
        store = open_store(ctx, store_dir, None)
        own = store.own()
        if own is None:
            raise InputError(f"{store.root} holds no own certificate", "give a store with an application certificate")
        uris = own.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        return store, (uris[0] if uris else "urn:certmgr:diagnose")
    ctx.require_initialised()
    with ctx.database().read() as session:
        if app_uri:
            app = queries.application_by_uri(session, app_uri)
            if app is None or not app.store_path:
                raise InputError(f"no application {app_uri!r} with a store is registered", "see `certmgr list`")
        else:
            from .verifier import verifier_identity_uri, verifier_store

            return verifier_store(ctx), verifier_identity_uri(ctx)
        return pki.ApplicationStore(app.store_path, app.layout), app.app_uri


def _audit_endpoints(diagnosis: Diagnosis, endpoints, host: str, now) -> tuple[object | None, str | None]:
    """Describe every endpoint, flag weak ones, pick the most secure usable one."""
    from asyncua import ua

    from ..opcua.channel import policy_name

    best, best_policy = None, None
    for endpoint in endpoints:
        policy = policy_name(endpoint.SecurityPolicyUri)
        mode = ua.MessageSecurityMode(endpoint.SecurityMode).name
        tokens = sorted({ua.UserTokenType(t.TokenType).name for t in endpoint.UserIdentityTokens or []})
        diagnosis.endpoints.append({"url": endpoint.EndpointUrl, "mode": mode, "policy": policy, "user_tokens": tokens})
        if endpoint.SecurityMode == ua.MessageSecurityMode.None_:
            _finding(diagnosis, "warning", f"mode None is offered ({endpoint.EndpointUrl}): anyone can connect without encryption")
        if policy in DEPRECATED:
            _finding(diagnosis, "warning", f"deprecated policy {policy} (SHA-1) is offered with mode {mode}")
        if endpoint.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt and policy in PREFERENCE:
            if best_policy is None or PREFERENCE.index(policy) < PREFERENCE.index(best_policy):
                best, best_policy = endpoint, policy
    if best is None:
        _finding(diagnosis, "error", "no SignAndEncrypt endpoint with Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss")
    return best, best_policy


def _audit_certificate(diagnosis: Diagnosis, cert: x509.Certificate, endpoint, host: str, now) -> str | None:
    """Findings on the server certificate; returns the ApplicationUri mismatch, if the server has one."""
    diagnosis.server_certificate = describe(cert)
    # one wording for key size, SHA-1 and dates: the profile check's (ca.check_application_certificate)
    for finding in ca.check_application_certificate(cert, at=now):
        _finding(diagnosis, finding.severity, f"server certificate: {finding.message}")
    if now <= cert.not_valid_after_utc and cert.not_valid_after_utc - now < timedelta(days=30):
        _finding(diagnosis, "warning", f"server certificate expires on {cert.not_valid_after_utc:%Y-%m-%d}")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        san = x509.SubjectAlternativeName([])
    hosts = [h.lower() for h in san.get_values_for_type(x509.DNSName)] + [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    try:
        host_key = str(ipaddress.ip_address(host))
    except ValueError:
        host_key = host.lower()
    if host_key not in hosts:
        _finding(diagnosis, "warning", f"the certificate's SAN ({', '.join(hosts) or 'no hosts'}) lacks {host}, the host in the URL: "
                 "strict clients refuse it with BadCertificateHostNameInvalid")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    announced = endpoint.Server.ApplicationUri if endpoint is not None else None
    if announced and announced not in uris:
        mismatch = f"the server announces ApplicationUri {announced} but its certificate carries {', '.join(uris) or 'none'}"
        _finding(diagnosis, "error", f"{mismatch}: clients refuse it with BadCertificateUriInvalid")
        where = f"set the server's ApplicationUri to {uris[0]}, or reissue its certificate for {announced}" if uris else \
            f"reissue the server's certificate with {announced} in its subjectAltName"
        return (f"{mismatch}: this is a configuration fix on the server ({where}), not a trust problem: trusting "
                "its certificate would not help")
    return None


def _audit_identity(diagnosis: Diagnosis, own: OwnIdentity) -> None:
    for finding in own.findings:
        _finding(diagnosis, finding.severity, f"our certificate: {finding.message}")
    if own.revoked:
        _finding(diagnosis, "error", f"our certificate is revoked: {own.revoked}")


@dataclass
class _Side:
    """What the fix needs to know about our side."""

    store: pki.ApplicationStore
    app_uri: str
    managed: bool  # registered in certmgr (so `certmgr renew` and `trust-exchange` apply)
    own_thumb: str
    own_cert_path: Path
    own: OwnIdentity
    ca_cert_path: Path
    url: str
    crl_path: Path | None = None  # certmgr's current CRL as a file (the verifier store keeps one)


def _renew(side: _Side) -> str:
    if side.managed:
        return f"renew it (`certmgr renew --app-uri {side.app_uri} --force`)"
    return f"issue a new one for {side.store.root}"


def _fix(attempt, side: _Side, validator, uri_mismatch: str | None) -> str:
    from ..opcua.faults import fix_for
    from ..opcua.session import TCP, USER

    if attempt.ok:
        return "nothing to fix"
    if attempt.stage == TCP:
        host = urlsplit(side.url)
        return f"{attempt.status}: is the server running, and is {host.hostname}:{host.port or 4840} reachable from here?"
    if attempt.stage == USER:
        if attempt.status == "BadIdentityTokenInvalid":
            return "the server does not accept this kind of user token (anonymous switched off?): pass --user NAME --password-file FILE"
        return f"{attempt.status}: the user name or password is wrong, or the server does not let this user in; check the server's user configuration"
    if attempt.side == "client":
        return _client_refusal_fix(attempt, side, validator, uri_mismatch, fix_for)
    return _server_refusal_fix(attempt, side, fix_for)


def _client_refusal_fix(attempt, side: _Side, validator, uri_mismatch: str | None, fix_for) -> str:
    store, server_thumb = side.store, attempt.server_thumbprint or ""
    if attempt.status == "BadCertificateUriInvalid" and uri_mismatch:
        return uri_mismatch
    if attempt.status == "BadCertificateRevocationUnknown":
        return "our store holds the server's CA but no current CRL from it: `certmgr crl import CRL --store " + str(store.root) + "`"
    if attempt.status not in TRUST_REFUSALS:
        return f"we refused the server's certificate ({attempt.status}): {fix_for(attempt.status)} (on the server's side)"
    copy = validator.rejected_copy(server_thumb) if validator is not None else None
    if copy is not None:
        fix = (f"we do not trust the server's certificate ({attempt.status}); it is now in {copy.parent}: inspect it, then "
               f"`certmgr store trust {store.root} {server_thumb[:16]}`")
    else:
        why = validator.rejected_copies.get(server_thumb, "no copy was made") if validator is not None else "no copy was made"
        fix = f"we do not trust the server's certificate ({attempt.status}); certmgr could not copy it to {store.rejected_dir} ({why})"
    if side.managed:
        fix += f" (or `certmgr trust-exchange --app-uri {side.app_uri} --endpoint {side.url}`)"
    if uri_mismatch:
        fix += f"; also, {uri_mismatch}"
    return fix


def _server_refusal_fix(attempt, side: _Side, fix_for) -> str:
    if attempt.status in ("BadCertificateRevocationUnknown", "BadCertificateIssuerRevocationUnknown"):
        return ("the server holds certmgr's CA but no current CRL of it: copy the CA's current CRL to the server's trusted/crl "
                f"(`certmgr trust-exchange --app-uri {side.app_uri} --endpoint {side.url} --export DIR` writes it)")
    if attempt.status in ("BadCertificateTimeInvalid", "BadCertificateRevoked", "BadCertificateUriInvalid", "BadCertificateUseNotAllowed"):
        return f"the server refused our certificate: {fix_for(attempt.status)}"
    if not side.own.ca_signed:
        return (f"the server refused our self-signed certificate {side.own_thumb} ({attempt.status}): trust it on the server (copy "
                f"{side.own_cert_path} into the server's trusted certificates, or move it there from the server's rejected folder)")
    # A CA-signed certificate: the server needs the issuer and its CRL to build and check the chain. Moving the
    # leaf from its rejected folder to trusted does not do that (node-opcua moves it straight back), and
    # node-opcua 2.157 refuses a certificate held in its rejected folder even once the CA is trusted.
    unreject = (f"then delete our certificate {side.own_thumb[:16]} from the server's rejected folder if it is there "
                "(node-opcua keeps refusing a certificate it holds there; moving it to trusted without the CA does not help)")
    if not side.own.by_certmgr_ca:
        return (f"the server refused our CA-signed certificate {side.own_thumb} ({attempt.status}): it needs our issuing CA "
                f"({side.own.issuer}) and that CA's current CRL in its trusted store; {unreject}")
    export = (f"`certmgr trust-exchange --app-uri {side.app_uri} --endpoint {side.url} --export DIR` (DIR/README.txt says which "
              "file goes where), or " if side.managed else "")
    return (f"the server refused our CA-signed certificate {side.own_thumb} ({attempt.status}): give the server certmgr's CA "
            f"and its current CRL: {export}where certmgr can write the server's store, `certmgr store import SERVER_STORE "
            f"{side.ca_cert_path} --trusted --crl {side.crl_path or 'CA.crl'}`; {unreject}")


def diagnose(
    ctx: AppContext, url: str, *, app_uri: str | None = None, store_dir: Path | None = None, user: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> Diagnosis:
    from ..opcua.identities import identity_from_store
    from ..opcua.session import TCP, Attempt, attempt_session

    parts = urlsplit(url)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise InputError(f"{url!r} is not an opc.tcp URL", "write it like opc.tcp://plc01.plant1.local:4840")
    store, uri = _identity_store(ctx, app_uri, store_dir)
    own = store.own()
    if own is None:
        raise InputError(f"{store.root} holds no own certificate", "issue one with `certmgr issue`")
    diagnosis = Diagnosis(url, {"app_uri": uri, "store": str(store.root), "thumbprint": own.thumbprint})
    now = ctx.now()
    own_check = check_own_identity(ctx, own.certificate, now)
    _audit_identity(diagnosis, own_check)
    diagnosis.identity["revoked"] = own_check.revoked
    side = _Side(store, uri, bool(app_uri), own.thumbprint, own.cert_path, own_check, ctx.home.ca_cert_path, url,
                 _current_crl_file(ctx))
    try:
        identity = identity_from_store(store, uri, peer_role="server", clock=ctx.now, record_rejected=True)
    except OperationFailed:
        if not own_check.revoked:
            raise
        # a keyCompromise revocation destroyed the key: there is nothing to connect with, and nothing to try
        diagnosis.blocked, diagnosis.fix = True, f"our certificate is revoked (its key is gone): {_renew(side)}"
        return diagnosis

    async def run() -> None:
        from asyncua import Client
        from asyncua.crypto import uacrypto

        from ..opcua.faults import describe_failure

        try:
            endpoints = await asyncio.wait_for(Client(url, timeout=timeout).connect_and_get_server_endpoints(), timeout)
        except Exception as exc:
            status, message = describe_failure(exc)
            attempt = Attempt(False, "-", TCP, status, None, f"GetEndpoints failed: {message}")
            diagnosis.connection = attempt.as_dict()
            diagnosis.fix = _fix(attempt, side, identity.validator, None)
            return
        best, policy = _audit_endpoints(diagnosis, endpoints, parts.hostname, now)
        certificate = uacrypto.x509_from_der(best.ServerCertificate) if best is not None and best.ServerCertificate else None
        if certificate is None:
            diagnosis.fix = "the server offers no secure endpoint certmgr can use: enable SignAndEncrypt with Basic256Sha256 or newer"
            return
        uri_mismatch = _audit_certificate(diagnosis, certificate, best, parts.hostname, now)
        attempt = await attempt_session(
            best.EndpointUrl if _same_host(best.EndpointUrl, url) else url, identity, policy, certificate,
            user=user, server_app_uri=best.Server.ApplicationUri or None, timeout=timeout,
        )
        diagnosis.connection = attempt.as_dict()
        diagnosis.fix = _fix(attempt, side, identity.validator, uri_mismatch)

    asyncio.run(run())
    # our own side decides first: no correct server accepts a revoked or expired certificate, whatever it answered
    if own_check.revoked:
        diagnosis.blocked, diagnosis.fix = True, f"our certificate is revoked: {_renew(side)}"
    elif own_check.not_valid:
        diagnosis.blocked, diagnosis.fix = True, f"our certificate is {own_check.not_valid}: {_renew(side)}"
    return diagnosis


def _same_host(endpoint_url: str, url: str) -> bool:
    """Connect where the operator pointed: servers often announce a host name that does not resolve here."""
    a, b = urlsplit(endpoint_url), urlsplit(url)
    return (a.hostname, a.port) == (b.hostname, b.port)


def _current_crl_file(ctx: AppContext) -> Path | None:
    """certmgr's current CRL as the verifier store holds it (highest number, the same rule as triage's)."""
    try:
        ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    return pki.ApplicationStore(ctx.home.verifier_store).newest_ca_crl_file(ca_cert)
