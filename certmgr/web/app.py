"""The Starlette application: sign-in, the fleet and audit pages, and the routes of the page modules
(inbox.py, detail.py, admin.py); the work is done by certmgr.services."""

from __future__ import annotations

import hmac
import os
import secrets
from collections import Counter

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..context import AppContext
from ..services import web_users
from . import admin, detail, inbox
from .common import COOKIE, Console, Redirect, check_csrf, console_of, render, require, threaded, wants_json
from .timeline import timeline_svg

LOGIN_CSRF = "certmgr_login_csrf"
PAGE = 100
LEVELS = ("expired", "critical", "warning", "ok")
KINDS = ("store", "push", "pull", "peer", "bundle")
# fleet table columns that sort (?sort=COLUMN&dir=asc|desc); levels sort by urgency, empty values last
SORTS = ("level", "kind", "app_uri", "endpoint", "thumbprint", "not_after", "crl_effective", "last_probe")
_URGENCY = {level: i for i, level in enumerate(LEVELS)}


async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", csrf=token, next=request.query_params.get("next", "/fleet"), error=None)
    console_of(request).cookie(response, LOGIN_CSRF, token, max_age=3600)
    return response


async def login(request: Request) -> Response:
    console: Console = console_of(request)
    form = await request.form()
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
        raise HTTPException(403, "the sign-in form is stale (CSRF token missing or wrong); reload the page")
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    address = request.client.host if request.client else "unknown"
    result = await threaded(web_users.authenticate, console.ctx, console.limiter, name, password, address)
    if isinstance(result, str):
        message = ("too many failed sign-ins for this user from this address; wait a minute" if result == "limited"
                   else "wrong user name or password")
        response = render(request, "login.html", csrf=expected, next=form.get("next", "/fleet"), error=message)
        response.status_code = 429 if result == "limited" else 401
        return response
    target = str(form.get("next") or "/fleet")
    local = target.startswith("/") and not target.startswith(("//", "/\\"))  # browsers read /\host as //host
    response = RedirectResponse(target if local else "/fleet", 303)
    console.cookie(response, COOKIE, console.sessions.create(*result))
    response.delete_cookie(LOGIN_CSRF, path="/")
    return response


async def logout(request: Request) -> Response:
    session = require(request)
    await check_csrf(request, session)
    console_of(request).sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _sorted(rows: list[dict], column: str, descending: bool) -> list[dict]:
    """Rows by ``column`` (levels by urgency), empty values last in either direction."""
    present = [r for r in rows if r[column] is not None]
    key = (lambda r: _URGENCY.get(r["level"], len(LEVELS))) if column == "level" else (lambda r: r[column])
    present.sort(key=key, reverse=descending)  # stable: equal values keep the service's order
    return present + [r for r in rows if r[column] is None]


def _fleet_data(console: Console, params) -> dict:
    from ..services.fleet import fleet_status

    status = fleet_status(console.ctx)
    rows = status["rows"]
    counts = Counter(row["level"] or "unknown" for row in rows)
    level, kind, text = params.get("level", ""), params.get("kind", ""), params.get("q", "").strip().lower()
    shown = [r for r in rows if (not level or r["level"] == level) and (not kind or r["kind"] == kind)
             and (not text or text in " ".join(str(r[k] or "") for k in ("app_uri", "endpoint", "store", "thumbprint")).lower())]
    sort = params.get("sort", "")
    descending = params.get("dir", "asc") == "desc"
    if sort in SORTS:  # the service's order (by application URI) is the default
        shown = _sorted(shown, sort, descending)
    try:
        page = max(int(params.get("page", "1")), 1)
    except ValueError:
        page = 1
    return {"counts": dict(counts), "total": len(rows), "matching": len(shown), "page": page,
            "pages": max((len(shown) + PAGE - 1) // PAGE, 1), "rows": shown[(page - 1) * PAGE: page * PAGE],
            "all_rows": rows, "crl_current": status["crl_current"], "code": status["code"],
            "filters": {"level": level, "kind": kind, "q": params.get("q", ""), "sort": sort if sort in SORTS else "",
                        "dir": "desc" if descending else "asc"}}


async def fleet(request: Request) -> Response:
    session = require(request)
    console: Console = console_of(request)
    data = await threaded(_fleet_data, console, request.query_params)
    svg = timeline_svg(data.pop("all_rows"), console.ctx.now())
    return render(request, "fleet.html", session, svg=svg, levels=LEVELS, kinds=KINDS, **data)


async def api_fleet(request: Request) -> Response:
    require(request)
    data = await threaded(_fleet_data, console_of(request), request.query_params)
    data.pop("all_rows")
    return JSONResponse(data)


def _audit(console: Console, params) -> list[dict]:
    return web_users.audit_events(console.ctx, params.get("user", ""), params.get("action", ""), params.get("q", ""))


async def audit(request: Request) -> Response:
    session = require(request)
    rows = await threaded(_audit, console_of(request), request.query_params)
    return render(request, "audit.html", session, rows=rows, filters=dict(request.query_params))


async def api_audit(request: Request) -> Response:
    require(request)
    return JSONResponse(await threaded(_audit, console_of(request), request.query_params))


async def home(request: Request) -> Response:
    return RedirectResponse("/fleet", 303)


async def _redirect(request: Request, exc: Redirect) -> Response:
    return RedirectResponse(exc.to, 303)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if wants_json(request):
        return JSONResponse({"error": exc.detail}, exc.status_code)
    return render(request, "error.html", None, message=exc.detail, status_code=exc.status_code)


def signing_state(ctx: AppContext) -> str | None:
    """Load the CA key now when its secret is at hand, the way the daemon does: the passphrase of a key file
    (CERTMGR_CA_PASSPHRASE or --passphrase-file) or the PIN of a PKCS#11 token (CERTMGR_PKCS11_PIN or --pin-file),
    read once at start; a wrong one stops the start. None when renew and revoke can sign; else the line the
    console shows instead of those buttons. Never a prompt: the console has no terminal. The one issuer (for a
    token: one logged-in session) is shared by every request (Console.acting) and closed with the context."""
    from ..ca_key import ENV_PIN, custody
    from ..passphrase import ENV_PASSPHRASE

    loaded = ctx._issuer is not None  # the daemon loaded it already (perhaps from its prompt)
    if not loaded:
        if custody(ctx.home).on_token:
            if ctx.pin_file is None and os.environ.get(ENV_PIN) is None:
                return (f"the token PIN of the CA key was not given when the console started: start it with {ENV_PIN} set "
                        "or `certmgr web serve --pin-file FILE` to renew and revoke from here")
        elif ctx.passphrase_file is None and os.environ.get(ENV_PASSPHRASE) is None:
            return (f"the CA passphrase was not given when the console started: start it with {ENV_PASSPHRASE} set or "
                    "`certmgr web serve --passphrase-file FILE` to renew and revoke from here")
    ctx.issuer()
    return None


def make_app(ctx: AppContext, *, idle_seconds: float = 900, tls: bool = False, load_ca: bool = True) -> Starlette:
    ctx.require_initialised()
    ctx.database()  # a schema that is not current stops here, not at the first page
    routes = [
        Route("/", home), Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]), Route("/fleet", fleet), Route("/audit", audit),
        Route("/api/fleet", api_fleet), Route("/api/audit", api_audit),
        *inbox.ROUTES, *detail.ROUTES, *admin.ROUTES,
    ]
    app = Starlette(routes=routes, exception_handlers={Redirect: _redirect, HTTPException: _http_error})
    signing = signing_state(ctx) if load_ca else "the CA key is not loaded in this console"
    ctx.issuer_frozen = signing  # requests never open the CA key themselves (a token session each, never closed)
    app.state.console = Console(ctx, idle_seconds, tls, signing)
    return app
