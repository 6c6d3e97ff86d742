"""The Starlette application: authentication, roles, CSRF, and the pages; the work is done by certmgr.services."""

from __future__ import annotations

import copy
import hmac
import secrets
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..context import AppContext
from ..errors import CertmgrError
from ..services import web_users
from .sessions import COOKIE, Sessions
from .timeline import timeline_svg

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LOGIN_CSRF = "certmgr_login_csrf"
PAGE = 100
LEVELS = ("expired", "critical", "warning", "ok")


class Console:
    def __init__(self, ctx: AppContext, idle_seconds: float, tls: bool) -> None:
        self.ctx, self.tls = ctx, tls
        self.sessions = Sessions(idle_seconds)
        self.limiter = web_users.LoginLimiter()

    def acting(self, user: str) -> AppContext:
        """The shared context with the signed-in user as the audit actor (same database, same clock)."""
        ctx = copy.copy(self.ctx)
        ctx.__dict__["actor"] = f"{user} (web)"
        return ctx

    def cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=self.tls, path="/")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _session(request: Request, role: str = "viewer"):
    console: Console = request.app.state.console
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if _wants_json(request):
            raise HTTPException(401, "sign in first")
        raise _Redirect(f"/login?next={quote(request.url.path)}")
    if web_users.RANK[session.role] < web_users.RANK[role]:
        raise HTTPException(403, f"needs the {role} role; {session.user} is a {session.role}")
    return session


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


async def _check_csrf(request: Request, session) -> dict:
    form = dict(await request.form()) if not _wants_json(request) else {}
    token = request.headers.get("x-csrf-token") or form.get("csrf", "")
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
        raise HTTPException(403, "the form is stale or forged (CSRF token missing or wrong); reload the page")
    if _wants_json(request):
        form = await request.json()
    return form


def _render(request: Request, name: str, session=None, status_code: int = 200, **values) -> Response:
    return TEMPLATES.TemplateResponse(request, name, {"session": session, **values}, status_code=status_code)


async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = _render(request, "login.html", csrf=token, next=request.query_params.get("next", "/fleet"), error=None)
    request.app.state.console.cookie(response, LOGIN_CSRF, token, max_age=3600)
    return response


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await request.form()
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
        raise HTTPException(403, "the sign-in form is stale (CSRF token missing or wrong); reload the page")
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    address = request.client.host if request.client else "unknown"
    result = await _threaded(web_users.authenticate, console.ctx, console.limiter, name, password, address)
    if isinstance(result, str):
        message = ("too many failed sign-ins for this user from this address; wait a minute" if result == "limited"
                   else "wrong user name or password")
        response = _render(request, "login.html", csrf=expected, next=form.get("next", "/fleet"), error=message)
        response.status_code = 429 if result == "limited" else 401
        return response
    target = str(form.get("next") or "/fleet")
    response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/fleet", 303)
    console.cookie(response, COOKIE, console.sessions.create(*result))
    response.delete_cookie(LOGIN_CSRF, path="/")
    return response


async def logout(request: Request) -> Response:
    session = _session(request)
    await _check_csrf(request, session)
    request.app.state.console.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def _threaded(fn, *args, **kwargs):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


def _fleet_data(console: Console, params) -> dict:
    from ..services.fleet import fleet_status

    status = fleet_status(console.ctx)
    rows = status["rows"]
    counts = Counter(row["level"] or "unknown" for row in rows)
    level, kind, text = params.get("level", ""), params.get("kind", ""), params.get("q", "").strip().lower()
    shown = [r for r in rows if (not level or r["level"] == level) and (not kind or r["kind"] == kind)
             and (not text or text in " ".join(str(r[k] or "") for k in ("app_uri", "endpoint", "store", "thumbprint")).lower())]
    try:
        page = max(int(params.get("page", "1")), 1)
    except ValueError:
        page = 1
    return {"counts": dict(counts), "total": len(rows), "matching": len(shown), "page": page,
            "pages": max((len(shown) + PAGE - 1) // PAGE, 1), "rows": shown[(page - 1) * PAGE: page * PAGE],
            "all_rows": rows, "crl_current": status["crl_current"], "code": status["code"],
            "filters": {"level": level, "kind": kind, "q": params.get("q", "")}}


async def fleet(request: Request) -> Response:
    session = _session(request)
    console: Console = request.app.state.console
    data = await _threaded(_fleet_data, console, request.query_params)
    svg = timeline_svg(data.pop("all_rows"), console.ctx.now())
    return _render(request, "fleet.html", session, svg=svg, levels=LEVELS, kinds=("store", "push", "pull", "peer", "bundle"), **data)


async def api_fleet(request: Request) -> Response:
    _session(request)
    data = await _threaded(_fleet_data, request.app.state.console, request.query_params)
    data.pop("all_rows")
    return JSONResponse(data)


def _stores(console: Console) -> list:
    """The stores of registered applications, then registered peer stores (`peer add --store`), each once."""
    from ..services.fleet import peer_store_targets
    from ..services.store_inspect import registered_store_list

    stores = {str(store.root): store for store in registered_store_list(console.ctx)}
    for target in peer_store_targets(console.ctx):
        if Path(target.path).is_dir():
            stores.setdefault(str(target.store().root), target.store())
    return list(stores.values())


def _inbox(console: Console) -> list[dict]:
    from ..services.store_inspect import rejected_entries

    return [{**entry, "store": str(store.root)} for store in _stores(console)
            for entry in rejected_entries(store) if "thumbprint" in entry]


def _registered(console: Console, path: str):
    """Only a registered application's or peer's store: the web never opens a folder a form names."""
    for store in _stores(console):
        if str(store.root) == path:
            return store
    raise HTTPException(404, f"{path!r} is not the store of a registered application or peer")


async def rejected(request: Request) -> Response:
    session = _session(request)
    rows = await _threaded(_inbox, request.app.state.console)
    return _render(request, "rejected.html", session, rows=rows, done=request.query_params.get("done"),
                   done_store=request.query_params.get("store", ""), undone=request.query_params.get("undone"))


async def api_rejected(request: Request) -> Response:
    _session(request)
    return JSONResponse(await _threaded(_inbox, request.app.state.console))


def _details(console: Console, store_path: str, thumbprint: str) -> dict:
    import pki

    from ..services.triage import check_before_trust, find

    store = _registered(console, store_path)
    match = find(store, thumbprint, (pki.REJECTED,))
    warnings: list[str] = []
    check_before_trust(console.ctx, store, match.certificate, warnings.append)
    return {**match.details(), "store": store_path, "warnings": warnings}


async def confirm(request: Request) -> Response:
    session = _session(request, "operator")
    console: Console = request.app.state.console
    store, thumbprint = request.query_params.get("store", ""), request.query_params.get("thumbprint", "")
    try:
        details = await _threaded(_details, console, store, thumbprint)
    except CertmgrError as exc:
        return _render(request, "error.html", session, message=exc.one_line(), status_code=400)
    return _render(request, "confirm.html", session, d=details)


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
    session = _session(request, "operator")
    form = await _check_csrf(request, session)
    return await _act(request, session, _approve, form,
                      lambda result: f"/rejected?done={quote(result['thumbprint'])}&store={quote(str(form.get('store', '')))}")


async def _act(request: Request, session, action, form, redirect_to) -> Response:
    """Run a store action for the signed-in user: JSON for the API, else a redirect (or the error page)."""
    try:
        result = await _threaded(action, request.app.state.console, session.user, str(form.get("store", "")),
                                 str(form.get("thumbprint", "")))
    except CertmgrError as exc:
        if _wants_json(request):
            return JSONResponse({"error": exc.one_line()}, 400)
        return _render(request, "error.html", session, message=exc.one_line(), status_code=400)
    if _wants_json(request):
        return JSONResponse(result)
    return RedirectResponse(redirect_to(result), 303)


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
    session = _session(request, "operator")
    form = await _check_csrf(request, session)
    return await _act(request, session, _reject, form, lambda result: f"/rejected?undone={quote(result['thumbprint'])}")


def _audit(console: Console, params) -> list[dict]:
    return web_users.audit_events(console.ctx, params.get("user", ""), params.get("action", ""), params.get("q", ""))


async def audit(request: Request) -> Response:
    session = _session(request)
    rows = await _threaded(_audit, request.app.state.console, request.query_params)
    return _render(request, "audit.html", session, rows=rows, filters=dict(request.query_params))


async def api_audit(request: Request) -> Response:
    _session(request)
    return JSONResponse(await _threaded(_audit, request.app.state.console, request.query_params))


async def home(request: Request) -> Response:
    return RedirectResponse("/fleet", 303)


async def _redirect(request: Request, exc: _Redirect) -> Response:
    return RedirectResponse(exc.to, 303)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, exc.status_code)
    return _render(request, "error.html", None, message=exc.detail, status_code=exc.status_code)


def make_app(ctx: AppContext, *, idle_seconds: float = 900, tls: bool = False) -> Starlette:
    ctx.require_initialised()
    ctx.database()  # a schema that is not current stops here, not at the first page
    routes = [
        Route("/", home), Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]), Route("/fleet", fleet), Route("/rejected", rejected),
        Route("/rejected/confirm", confirm), Route("/rejected/approve", approve, methods=["POST"]), Route("/audit", audit),
        Route("/api/fleet", api_fleet), Route("/api/rejected", api_rejected), Route("/api/audit", api_audit),
        Route("/api/rejected/approve", approve, methods=["POST"]), Route("/trusted/reject", reject, methods=["POST"]),
        Route("/api/trusted/reject", reject, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={_Redirect: _redirect, HTTPException: _http_error})
    app.state.console = Console(ctx, idle_seconds, tls)
    return app
