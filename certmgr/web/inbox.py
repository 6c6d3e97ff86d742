"""The rejected inbox: list (services/console.inbox, parsed files cached), confirm, approve (= `store trust`) and
its undo (= `store reject`); push servers' GetRejectedList (= `store rejected --app-uri`), read on request, and
trusting one of those on the server's TrustList (= `push-trust`)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import CertmgrError
from .common import Console, check_csrf, console_of, form_text, render, require, run_action, threaded, wants_json


def _inbox(console: Console) -> list[dict]:
    from ..services.console import inbox

    return inbox(console.ctx, console.rejected_cache)


def _registered(console: Console, path: str):
    """Only a registered application's or peer's store: the web never opens a folder a form names."""
    from ..services.console import registered_store

    store = registered_store(console.ctx, path)
    if store is None:
        raise HTTPException(404, f"{path!r} is not the store of a registered application or peer")
    return store


def _push_servers(console: Console) -> list[str]:
    from sqlalchemy import select

    import db

    with console.ctx.database().read() as session:
        return list(session.scalars(select(db.Application.app_uri).where(db.Application.deploy == "push")
                                    .order_by(db.Application.app_uri)))


async def rejected(request: Request) -> Response:
    session = require(request)
    console = console_of(request)
    rows = await threaded(_inbox, console)
    push = await threaded(_push_servers, console)
    return render(request, "rejected.html", session, rows=rows, push_servers=push, done=request.query_params.get("done"),
                  done_store=request.query_params.get("store", ""), undone=request.query_params.get("undone"))


async def api_rejected(request: Request) -> Response:
    require(request)
    return JSONResponse(await threaded(_inbox, console_of(request)))


def _push_rejected(console: Console, app_uri: str) -> list[dict]:
    """`certmgr store rejected --app-uri URI`: the server's GetRejectedList over OPC UA."""
    from cryptography import x509

    from ..services.push import rejected_list
    from ..services.store_inspect import describe

    _push_server(console, app_uri)
    return [describe(x509.load_der_x509_certificate(der)) for der in rejected_list(console.ctx, app_uri)]


async def push_rejected(request: Request) -> Response:
    session = require(request)
    app_uri = request.query_params.get("app_uri", "")
    try:
        rows = await threaded(_push_rejected, console_of(request), app_uri)
    except CertmgrError as exc:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.one_line()}, 400)
        return render(request, "error.html", session, message=exc.one_line(), status_code=400)
    if request.url.path.startswith("/api/"):
        return JSONResponse(rows)
    return render(request, "push_rejected.html", session, rows=rows, app_uri=app_uri, done=request.query_params.get("done"))


def _push_server(console: Console, app_uri: str) -> str:
    if app_uri not in _push_servers(console):
        raise HTTPException(404, f"{app_uri!r} is not a registered push server")
    return app_uri


def _push_review(console: Console, app_uri: str, thumbprint: str) -> dict:
    from ..services.push_trust import review

    return review(console.ctx, _push_server(console, app_uri), thumbprint)


async def push_confirm(request: Request) -> Response:
    """The certificate from the server's GetRejectedList with the checks' outcome (refused: the error page)."""
    session = require(request, "operator")
    app_uri, thumbprint = request.query_params.get("app_uri", ""), request.query_params.get("thumbprint", "")
    try:
        details = await threaded(_push_review, console_of(request), app_uri, thumbprint)
    except CertmgrError as exc:
        if wants_json(request):
            return JSONResponse({"error": exc.one_line()}, 400)
        return render(request, "error.html", session, message=exc.one_line(), status_code=400)
    if wants_json(request):
        return JSONResponse(details)
    return render(request, "push_confirm.html", session, d=details)


def _push_approve(console: Console, user: str, app_uri: str, thumbprint: str) -> dict:
    """`certmgr push-trust --app-uri URI THUMBPRINT --yes` for the signed-in user; only the full thumbprint the
    confirmation showed (a prefix could match a certificate the server rejected since)."""
    from ..services.push_trust import trust

    _push_server(console, app_uri)
    if len(thumbprint) != 40:
        raise HTTPException(400, "give the full 40-digit thumbprint the confirmation page showed")
    return trust(console.acting(user), app_uri, thumbprint)


async def push_approve(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    app_uri = form_text(form, "app_uri")
    return await run_action(request, session, _push_approve, console_of(request), session.user, app_uri,
                            form_text(form, "thumbprint"),
                            redirect_to=lambda r: f"/rejected/push?app_uri={quote(app_uri)}&done={quote(r['thumbprint'])}")


def _details(console: Console, store_path: str, thumbprint: str) -> dict:
    import pki

    from ..services.triage import check_before_trust, find

    store = _registered(console, store_path)
    match = find(store, thumbprint, (pki.REJECTED,))
    warnings: list[str] = []
    check_before_trust(console.ctx, store, match.certificate, warnings.append)
    return {**match.details(), "store": store_path, "warnings": warnings}


async def confirm(request: Request) -> Response:
    session = require(request, "operator")
    store, thumbprint = request.query_params.get("store", ""), request.query_params.get("thumbprint", "")
    try:
        details = await threaded(_details, console_of(request), store, thumbprint)
    except CertmgrError as exc:
        return render(request, "error.html", session, message=exc.one_line(), status_code=400)
    return render(request, "confirm.html", session, d=details)


def _approve(console: Console, user: str, store_path: str, thumbprint: str) -> dict:
    import pki

    from ..services.triage import check_before_trust, find, move

    ctx = console.acting(user)
    store = _registered(console, store_path)
    match = find(store, thumbprint, (pki.REJECTED,))
    warnings: list[str] = []
    check_before_trust(ctx, store, match.certificate, warnings.append)  # refuses a certificate certmgr revoked
    target = move(ctx, store, match, pki.TRUSTED, "store.trust")
    return {"thumbprint": pki.thumbprint(match.certificate), "from": str(match.path), "to": str(target), "warnings": warnings}


async def approve(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    store = form_text(form, "store")
    return await run_action(request, session, _approve, console_of(request), session.user, store, form_text(form, "thumbprint"),
                            redirect_to=lambda r: f"/rejected?done={quote(r['thumbprint'])}&store={quote(store)}")


def _reject(console: Console, user: str, store_path: str, thumbprint: str) -> dict:
    """`certmgr store reject`: a trusted certificate back to rejected/ (the undo of an approval)."""
    import pki

    from ..services.triage import find, move

    ctx = console.acting(user)
    store = _registered(console, store_path)
    match = find(store, thumbprint, (pki.TRUSTED,))
    target = move(ctx, store, match, pki.REJECTED, "store.reject")
    return {"thumbprint": pki.thumbprint(match.certificate), "from": str(match.path), "to": str(target)}


async def reject(request: Request) -> Response:
    session = require(request, "operator")
    form = await check_csrf(request, session)
    return await run_action(request, session, _reject, console_of(request), session.user, form_text(form, "store"),
                            form_text(form, "thumbprint"), redirect_to=lambda r: f"/rejected?undone={quote(r['thumbprint'])}")


ROUTES = [
    Route("/rejected", rejected), Route("/api/rejected", api_rejected), Route("/rejected/confirm", confirm),
    Route("/rejected/approve", approve, methods=["POST"]), Route("/api/rejected/approve", approve, methods=["POST"]),
    Route("/trusted/reject", reject, methods=["POST"]), Route("/api/trusted/reject", reject, methods=["POST"]),
    Route("/rejected/push", push_rejected), Route("/api/rejected/push", push_rejected),
    Route("/rejected/push/confirm", push_confirm), Route("/api/rejected/push/confirm", push_confirm),
    Route("/rejected/push/approve", push_approve, methods=["POST"]), Route("/api/rejected/push/approve", push_approve, methods=["POST"]),
]
