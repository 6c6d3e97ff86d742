"""Revocation by an admin: a confirmation page with the certificate and its thumbprint, then what
`certmgr revoke THUMBPRINT --reason R --yes --no-probe` does (services/revocation.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..constants import REVOCATION_REASONS
from ..errors import CertmgrError, InputError
from .common import Console, check_csrf, console_of, form_text, render, require, run_action, threaded


def _summary(console: Console, thumbprint: str) -> dict:
    from ..services.revocation import certificate_summary, find_certificate

    cert = find_certificate(console.ctx, thumbprint=thumbprint, serial=None, app_uri=None)
    return {**certificate_summary(cert), "revoked_at": cert.revoked_at.isoformat() if cert.revoked_at else None}


async def revoke_confirm(request: Request) -> Response:
    session = require(request, "admin")
    console = console_of(request)
    try:
        summary = await threaded(_summary, console, request.query_params.get("thumbprint", ""))
    except CertmgrError as exc:
        return render(request, "error.html", session, message=exc.one_line(), status_code=400)
    return render(request, "revoke.html", session, d=summary, reasons=REVOCATION_REASONS, signing=console.signing_unavailable)


def _revoke(console: Console, user: str, thumbprint: str, reason: str) -> dict:
    from ..services.fleet import places_behind
    from ..services.revocation import find_certificate, revoke

    if reason not in REVOCATION_REASONS:
        raise InputError(f"{reason!r} is not a revocation reason", f"choose one of {', '.join(REVOCATION_REASONS)}")
    if console.signing_unavailable:
        raise InputError(console.signing_unavailable)
    ctx = console.acting(user)
    cert = find_certificate(ctx, thumbprint=thumbprint, serial=None, app_uri=None)
    if cert.thumbprint != thumbprint.replace(":", "").strip().upper():
        raise InputError("the confirmation names a thumbprint prefix", "revoke from the confirmation page (full thumbprint)")
    outcome = revoke(ctx, cert.id, reason)
    result = outcome.as_dict()
    result["places_behind"] = places_behind(ctx, outcome.crl_number) if outcome.crl_number is not None else []
    return result


async def revoke_post(request: Request) -> Response:
    session = require(request, "admin")
    form = await check_csrf(request, session)
    return await run_action(request, session, _revoke, console_of(request), session.user, form_text(form, "thumbprint"),
                            form_text(form, "reason") or "unspecified", template="revoked.html")


ROUTES = [
    Route("/admin/revoke", revoke_confirm), Route("/admin/revoke", revoke_post, methods=["POST"]),
    Route("/api/admin/revoke", revoke_post, methods=["POST"]),
]
