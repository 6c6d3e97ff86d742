"""Application and peer pages (services/console.py), their "renew now" (= `certmgr renew --app-uri URI --force`)
and "probe now" (= `certmgr probe --app-uri URI` / `--peer URL`) buttons, and the CRL page."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import CertmgrError, InputError
from .common import Console, check_csrf, console_of, form_text, render, require, run_action, threaded, wants_json


async def _page(request: Request, session, fn, template: str, *args, **values) -> Response:
    """A read-only page (or its JSON twin under /api/); an unknown application or peer is a 404 with the fix."""
    try:
        data = await threaded(fn, console_of(request).ctx, *args)
    except CertmgrError as exc:
        if wants_json(request):
            return JSONResponse({"error": exc.one_line()}, 404)
        return render(request, "error.html", session, message=exc.one_line(), status_code=404)
    if wants_json(request):
        return JSONResponse(data)
    return render(request, template, session, d=data, signing=console_of(request).signing_unavailable, **values)


async def application(request: Request) -> Response:
    from ..services.console import application_detail

    session = require(request)
    return await _page(request, session, application_detail, "application.html", request.query_params.get("uri", ""))


async def peer(request: Request) -> Response:
    from ..services.console import peer_detail

    session = require(request)
    return await _page(request, session, peer_detail, "peer.html", request.query_params.get("key", ""))


async def crls(request: Request) -> Response:
    from ..services.console import crl_overview

    session = require(request)
    return await _page(request, session, crl_overview, "crls.html")


def _renew(console: Console, user: str, app_uri: str) -> dict:
    """`certmgr renew --app-uri URI --force` as ``user``: new key and certificate, proofs, switch or roll back."""
    from ..services.renewal import FAILED, RenewOptions, renew

    if console.signing_unavailable:
        raise InputError(console.signing_unavailable)
    ctx = console.acting(user)
    results = renew(ctx, RenewOptions(app_uris=(app_uri,), force=True))
    if any(r.outcome == FAILED for r in results):
        from ..alerts.dispatch import alert_now

        alert_now(ctx)  # as the CLI does: a failed renewal is critical, said at once
    return {"app_uri": app_uri, "results": [r.as_dict() for r in results]}


def _probe(console: Console, user: str, app_uri: str | None, endpoint: str | None) -> dict:
    """`certmgr probe --app-uri URI` or `--peer URL` as ``user`` (recorded and audited by the probe service)."""
    from ..services.probe import probe, probe_targets

    ctx = console.acting(user)
    outcomes = probe(ctx, probe_targets(ctx, all_=False, app_uri=app_uri, peer=endpoint))
    return {"app_uri": app_uri, "endpoint": endpoint, "results": [o.as_dict() for o in outcomes]}


async def renew_now(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    uri = form_text(form, "app_uri")
    return await run_action(request, session, _renew, console_of(request), session.user, uri,
                            template="action_result.html", title=f"Renewal of {uri}", back=f"/app?uri={quote(uri)}")


async def probe_app(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    uri = form_text(form, "app_uri")
    return await run_action(request, session, _probe, console_of(request), session.user, uri, None,
                            template="action_result.html", title=f"Probe of {uri}", back=f"/app?uri={quote(uri)}")


async def probe_peer(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    endpoint = form_text(form, "endpoint")
    return await run_action(request, session, _probe, console_of(request), session.user, None, endpoint,
                            template="action_result.html", title=f"Probe of {endpoint}", back=f"/peer?key={quote(endpoint)}")


ROUTES = [
    Route("/app", application), Route("/api/app", application), Route("/peer", peer), Route("/api/peer", peer),
    Route("/crls", crls), Route("/api/crls", crls),
    Route("/app/renew", renew_now, methods=["POST"]), Route("/api/app/renew", renew_now, methods=["POST"]),
    Route("/app/probe", probe_app, methods=["POST"]), Route("/api/app/probe", probe_app, methods=["POST"]),
    Route("/peer/probe", probe_peer, methods=["POST"]), Route("/api/peer/probe", probe_peer, methods=["POST"]),
]
