"""What every page module shares: the console's state, the role check, CSRF, rendering, running services off
the event loop. The work itself is done by certmgr.services."""

from __future__ import annotations

import copy
import hmac
from pathlib import Path
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..context import AppContext
from ..errors import CertmgrError
from ..services import web_users
from .sessions import COOKIE, Sessions

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class Console:
    """One console process: the shared context, sessions and the sign-in limiter (both in the database, so a
    restart keeps them), the rejected-file cache, and whether the CA key is loaded (renew and revoke need it)."""

    def __init__(self, ctx: AppContext, idle_seconds: float, tls: bool, signing: str | None = None) -> None:
        from ..services.store_inspect import RejectedCache

        self.ctx, self.tls = ctx, tls
        self.sessions = Sessions(ctx, idle_seconds)
        self.limiter = web_users.LoginLimiter(ctx)
        self.rejected_cache = RejectedCache()
        # None: the CA key is loaded and renew/revoke can sign; else the one line that says why not
        self.signing_unavailable = signing

    def acting(self, user: str) -> AppContext:
        """The shared context with the signed-in user as the audit actor (same database, same clock, same CA key)."""
        ctx = copy.copy(self.ctx)
        ctx.__dict__["actor"] = f"{user} (web)"
        return ctx

    def cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=self.tls, path="/")


def console_of(request: Request) -> Console:
    return request.app.state.console


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


def require(request: Request, role: str = "viewer"):
    """The signed-in session with at least ``role``: else a redirect to sign in (401 for the API) or 403."""
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if wants_json(request):
            raise HTTPException(401, "sign in first")
        # back to the page after signing in; an action (POST) is not repeated: its form is shown again from the fleet
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "") if request.method == "GET" else "/fleet"
        raise Redirect(f"/login?next={quote(target)}")
    if web_users.RANK[session.role] < web_users.RANK[role]:
        raise HTTPException(403, f"needs the {role} role; {session.user} is a {session.role}")
    return session


async def check_csrf(request: Request, session) -> dict:
    """The form (or the API's JSON body) when the request carries the session's CSRF token; else 403."""
    form = dict(await request.form()) if not wants_json(request) else {}
    token = request.headers.get("x-csrf-token") or form.get("csrf", "")
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
        raise HTTPException(403, "the form is stale or forged (CSRF token missing or wrong); reload the page")
    if wants_json(request):
        try:
            form = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(form, dict):
            raise HTTPException(400, "the body must be a JSON object")
    return form


def render(request: Request, name: str, session=None, status_code: int = 200, **values) -> Response:
    return TEMPLATES.TemplateResponse(request, name, {"session": session, **values}, status_code=status_code)


async def threaded(fn, *args, **kwargs):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


async def run_action(request: Request, session, action, *args, redirect_to=None, template=None, **values) -> Response:
    """Run a service call for the signed-in user: JSON for the API; else a redirect, or ``template`` with the
    result; a refused action (CertmgrError) is the error page (400) with the service's one line."""
    try:
        result = await threaded(action, *args)
    except CertmgrError as exc:
        if wants_json(request):
            return JSONResponse({"error": exc.one_line()}, 400)
        return render(request, "error.html", session, message=exc.one_line(), status_code=400)
    if wants_json(request):
        return JSONResponse(result)
    if redirect_to is not None:
        return RedirectResponse(redirect_to(result), 303)
    return render(request, template, session, result=result, **values)


def form_text(form: dict, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else str(value)


__all__ = ["COOKIE", "Console", "Redirect", "check_csrf", "console_of", "form_text", "render", "require", "run_action",
           "threaded", "wants_json"]
