"""``certmgr app update``: change what the next certificate of an application will hold, and how it is
renewed and deployed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import ca
import db
from db import queries

from ..constants import DEPLOY_MODES
from ..context import AppContext
from ..durations import parse_duration
from ..errors import InputError
from . import windows
from .app_spec import build_spec, check_days, check_role, check_window


@dataclass
class AppChanges:
    dns_names: tuple[str, ...] | None = None
    ip_addresses: tuple[str, ...] | None = None
    endpoint: str | None = None  # "" clears
    renew_before: str | None = None  # "" clears (back to the default window)
    deploy_hook: str | None = None  # "" clears
    key_size: int | None = None
    days: int | None = None
    role: str | None = None
    name: str | None = None
    organization: str | None = None
    warn_before: str | None = None  # "" clears (back to [alerts] warning)
    crit_before: str | None = None
    deploy: str | None = None  # "file" or "push"
    admin_user: str | None = None
    admin_password_file: str | None = None




def check_password_file(path: str) -> Path:
    """A readable file holding a password; refuse one others can read (it is a SecurityAdmin secret)."""
    from ..secrets import check_secret_file

    return check_secret_file(path, "admin password file")


def validate_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise InputError(f"endpoint {url!r} is not an opc.tcp URL", "write it like opc.tcp://historian.plant1.local:4840")
    try:
        parts.port
    except ValueError:
        raise InputError(f"endpoint {url!r} has an invalid port", "use a number 1..65535") from None
    return url


def update_application(ctx: AppContext, app_uri: str, changes: AppChanges) -> dict:
    """Apply ``changes``; returns {field: (old, new)} of what changed."""
    try:
        dns = tuple(dict.fromkeys(ca.validate_dns_name(d) for d in changes.dns_names)) if changes.dns_names is not None else None
        ips = tuple(dict.fromkeys(str(ca.validate_ip_address(i)) for i in changes.ip_addresses)) if changes.ip_addresses is not None else None
        if changes.key_size is not None:
            ca.check_key_size(changes.key_size)
        if changes.name is not None or changes.organization is not None:
            ca.SubjectFields(changes.name or "x", changes.organization)
    except ca.ProfileError as exc:
        raise InputError(str(exc)) from None
    if changes.role is not None:
        check_role(changes.role)
    if changes.days is not None:
        check_days(changes.days)
    endpoint = validate_endpoint(changes.endpoint) if changes.endpoint else changes.endpoint
    seconds = None
    if changes.renew_before:
        seconds = int(parse_duration(changes.renew_before).total_seconds())
    now = ctx.now()
    changed: dict[str, tuple] = {}
    with ctx.database().write() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None:
            raise InputError(f"no application {app_uri!r} is registered", "register it with `certmgr issue`")
        days = changes.days or app.validity_days
        window = seconds if seconds is not None else (None if changes.renew_before == "" else app.renew_before_seconds)
        check_window(window, days, changes.renew_before or None)

        def put(field: str, value) -> None:
            old = getattr(app, field)
            if value is not None and old != value:
                setattr(app, field, value)
                changed[field] = (old, value)

        put("dns_names", list(dns) if dns is not None else None)
        put("ip_addresses", list(ips) if ips is not None else None)
        put("endpoint", (endpoint or None) if changes.endpoint is not None else None)
        if changes.endpoint == "" and app.endpoint is not None:
            changed["endpoint"] = (app.endpoint, None)
            app.endpoint = None
        if changes.deploy_hook == "" and app.deploy_hook is not None:
            changed["deploy_hook"] = (app.deploy_hook, None)
            app.deploy_hook = None
        elif changes.deploy_hook:
            put("deploy_hook", changes.deploy_hook)
        if changes.renew_before == "" and app.renew_before_seconds is not None:
            changed["renew_before_seconds"] = (app.renew_before_seconds, None)
            app.renew_before_seconds = None
        elif seconds is not None:
            put("renew_before_seconds", seconds)
        for field_name, value in (("warn_before_seconds", changes.warn_before), ("crit_before_seconds", changes.crit_before)):
            if value == "" and getattr(app, field_name) is not None:
                changed[field_name] = (getattr(app, field_name), None)
                setattr(app, field_name, None)
            elif value:
                put(field_name, int(parse_duration(value).total_seconds()))
        if changes.admin_password_file:
            put("admin_password_file", str(check_password_file(changes.admin_password_file)))
        put("admin_user", changes.admin_user)
        if changes.deploy:
            if changes.deploy not in DEPLOY_MODES:
                raise InputError(f"unknown deploy mode {changes.deploy!r}", "use file or push")
            put("deploy", changes.deploy)
            if app.deploy == "push" and not app.endpoint:
                raise InputError("push deployment needs the server's endpoint", "add --endpoint opc.tcp://HOST:PORT")
            if app.deploy == "file" and not app.store_path:
                raise InputError("file deployment needs a store folder", "register the store with `certmgr issue --force`")
        put("key_size", changes.key_size)
        put("validity_days", changes.days)
        put("role", db.Role(changes.role) if changes.role else None)
        put("name", changes.name)
        put("organization", changes.organization)
        if changed:
            app.updated_at = now
            if "renew_before_seconds" in changed:
                windows.set_for_application(session, ctx, app)
            queries.add_audit(
                session, at=now, actor=ctx.actor, action="application.update", target=app_uri,
                changes={k: [str(v[0]), str(v[1])] for k, v in changed.items()},
            )
    return changed


def add_push_application(
    ctx: AppContext, app_uri: str, *, endpoint: str | None, admin_user: str | None, admin_password_file: str | None,
    name: str | None, organization: str | None, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...], role: str,
    key_size: int | None, days: int | None, renew_before: str | None,
) -> dict:
    """Register a server whose certificate certmgr pushes over OPC UA (no store folder)."""
    if not endpoint:
        raise InputError("push deployment needs the server's endpoint", "give --endpoint opc.tcp://HOST:PORT")
    validate_endpoint(endpoint)
    if bool(admin_user) != bool(admin_password_file):
        raise InputError("give the admin user and its password file together", "--admin-user NAME --admin-password-file FILE")
    password_file = str(check_password_file(admin_password_file)) if admin_password_file else None
    spec = build_spec(ctx, app_uri=app_uri, name=name, organization=organization, dns_names=dns_names,
                      ip_addresses=ip_addresses, role=role, key_size=key_size, days=days, renew_before=renew_before)
    identity, size, validity, seconds = spec.identity, spec.key_size, spec.days, spec.renew_before_seconds
    now = ctx.now()
    with ctx.database().write() as session:
        if queries.application_by_uri(session, app_uri) is not None:
            raise InputError(f"application {app_uri} is already registered", f"change it with `certmgr app update --app-uri {app_uri}`")
        authority = queries.authority(session)
        session.add(db.Application(
            app_uri=app_uri, name=identity.subject.common_name, organization=identity.subject.organization,
            dns_names=list(identity.dns_names), ip_addresses=list(identity.ip_addresses), role=db.Role(role), store_path=None,
            layout="ua-net", key_size=size, validity_days=validity, renew_before_seconds=seconds, endpoint=endpoint,
            deploy="push", admin_user=admin_user, admin_password_file=password_file, authority_id=authority.id,
            created_at=now, updated_at=now,
        ))
        queries.add_audit(session, at=now, actor=ctx.actor, action="application.add", target=app_uri, deploy="push",
                          endpoint=endpoint, admin_user=admin_user)
    return {"app_uri": app_uri, "endpoint": endpoint, "deploy": "push", "admin_user": admin_user,
            "admin_password_file": password_file}
