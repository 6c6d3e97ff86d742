"""Trust a certificate a push-managed server refused (its GetRejectedList) by adding it to the server's TrustList
over Part 12 (TrustList.AddCertificate), as the application's admin user: ``certmgr push-trust`` and the console's
"Review and trust" on a push server's rejected list.

The checks are `store trust`'s, against what the server holds instead of a folder: a certificate certmgr's CA
revoked is refused (triage.refuse_revoked, the same function), and so is one the server's own CRLs list. A
certificate whose issuer the server's TrustList does not hold is refused, where `store trust` only warns: on a
store the fix is one `certmgr store import` away, on a push server trusting the leaf alone changes nothing (the
server still answers BadCertificateChainIncomplete), so the approval would be a lie. An issuer held without a
current CRL is a warning, as in `store trust`.
"""

from __future__ import annotations

import asyncio

from cryptography import x509

import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .store_inspect import describe
from .triage import MIN_PREFIX, refuse_revoked

ACTION = "push.trust"


def _parse_all(ders: list[bytes], parse) -> list:
    parsed = []
    for der in ders:
        try:
            parsed.append(parse(der))
        except ValueError:  # an unreadable entry in the server's list is the server's problem, not this one's
            continue
    return parsed


def _find(rejected: list[bytes], prefix: str, app_uri: str) -> x509.Certificate:
    cleaned = prefix.replace(":", "").replace(" ", "").upper()
    if len(cleaned) < MIN_PREFIX or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise InputError(f"{prefix!r} is not a thumbprint prefix", f"give at least {MIN_PREFIX} hex digits of the SHA-1 thumbprint")
    matches = {pki.thumbprint(c): c for c in _parse_all(rejected, x509.load_der_x509_certificate)
               if pki.thumbprint(c).startswith(cleaned)}
    if not matches:
        raise InputError(f"the GetRejectedList of {app_uri} holds no certificate with a thumbprint starting with {cleaned}",
                         f"see `certmgr store rejected --app-uri {app_uri}`")
    if len(matches) > 1:
        raise InputError(f"thumbprint prefix {cleaned} is ambiguous ({', '.join(sorted(matches))})", "give more digits")
    return next(iter(matches.values()))


def _check(ctx: AppContext, app_uri: str, cert: x509.Certificate, lists) -> list[str]:
    """Refuse what `store trust` refuses, and a certificate the server cannot chain; the warnings otherwise."""
    refuse_revoked(ctx, cert)
    if cert.issuer == cert.subject:
        return []
    name = cert.issuer.rfc4514_string()
    cas = _parse_all(lists.trusted + lists.issuers, x509.load_der_x509_certificate)
    issuer = next((c for c in cas if c.subject == cert.issuer and pki.cert_signed_by(cert, c)), None)
    if issuer is None:
        raise InputError(
            f"{cert.subject.rfc4514_string()} is signed by {name}, which the TrustList of {app_uri} does not hold: the server "
            "would go on refusing it (BadCertificateChainIncomplete) with the certificate trusted",
            "have the server's administrator add that CA and its current CRL to the server first, or give the client a "
            "certificate from certmgr's CA (`certmgr issue`)")
    crls = [c for c in _parse_all(lists.trusted_crls + lists.issuer_crls, pki.parse_crl) if pki.crl_signed_by(c, issuer)]
    if any(c.get_revoked_certificate_by_serial_number(cert.serial_number) is not None for c in crls):
        raise InputError(f"{cert.subject.rfc4514_string()} ({pki.thumbprint(cert)}) is revoked by {name} (a CRL the server holds "
                         "lists it); trusting it would undo the revocation", "keep it out of the TrustList")
    now = ctx.now()
    if not any(c.next_update_utc is not None and c.last_update_utc <= now < c.next_update_utc for c in crls):
        return [f"the server holds the issuer {name} but no current CRL of it: it refuses that issuer's certificates "
                "(BadCertificateRevocationUnknown) until one is in its TrustList"]
    return []


async def _review(ctx: AppContext, client, app_uri: str, prefix: str) -> tuple[x509.Certificate, list[str]]:
    cert = _find(await client.rejected_list(), prefix, app_uri)
    return cert, _check(ctx, app_uri, cert, await client.read_trust_list())


def _run(ctx: AppContext, app_uri: str, work):
    from ..opcua.push import PushError
    from .push import admin_session, load_push_app

    app = load_push_app(ctx, app_uri)  # InputError before any connection when it is not a push server

    async def run():
        async with admin_session(ctx, app) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except PushError as exc:
        raise OperationFailed(f"{app_uri}: {exc}") from None
    except (OSError, asyncio.TimeoutError) as exc:  # the server is down or unreachable: the operation failed, not certmgr
        raise OperationFailed(f"cannot reach {app.endpoint}: {exc or type(exc).__name__}", "check that the server runs") from None


def review(ctx: AppContext, app_uri: str, prefix: str) -> dict:
    """What the confirmation shows: the certificate's details and full thumbprint and the warnings; raises the
    refusal (InputError) when it may not be trusted."""
    async def work(client):
        cert, warnings = await _review(ctx, client, app_uri, prefix)
        return {**describe(cert), "server": app_uri, "warnings": warnings}

    return _run(ctx, app_uri, work)


def trust(ctx: AppContext, app_uri: str, thumbprint: str) -> dict:
    """Add the rejected certificate to the server's trusted certificates (after the checks of ``review``, made
    again on this session: the lists may have changed since the confirmation), read back, audited."""
    from cryptography.hazmat.primitives import serialization

    async def work(client):
        cert, warnings = await _review(ctx, client, app_uri, thumbprint)
        der = cert.public_bytes(serialization.Encoding.DER)
        await client.add_certificate(der, trusted=True)
        held = der in (await client.read_trust_list()).trusted
        return cert, warnings, held

    cert, warnings, held = _run(ctx, app_uri, work)
    result = {"app_uri": app_uri, "thumbprint": pki.thumbprint(cert), "subject": cert.subject.rfc4514_string(),
              "trusted": held, "warnings": warnings}
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action=ACTION, target=app_uri,
                          thumbprint=result["thumbprint"], subject=result["subject"], read_back=held)
    if not held:
        raise OperationFailed(f"{app_uri} answered Good to AddCertificate but its TrustList does not hold "
                              f"{result['thumbprint']} when read back", "trust it with the server's own configuration tool")
    return result
