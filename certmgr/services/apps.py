"""``certmgr app update``: change what the next certificate of an application will hold, and how it is
renewed and deployed."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import ca
import db
from db import queries

from ..context import AppContext
from ..durations import parse_duration
from ..errors import InputError
from . import windows
from .issuing import ROLES


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
    if changes.role is not None and changes.role not in ROLES:
        raise InputError(f"unknown role {changes.role!r}", f"use one of {', '.join(ROLES)}")
    if changes.days is not None and changes.days <= 0:
        raise InputError(f"--days {changes.days} is not allowed", "give a number of days greater than 0")
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
        if seconds is not None and seconds >= days * 86400:
            raise InputError(f"--renew-before {changes.renew_before} is not shorter than the {days}-day lifetime", "choose a shorter window")

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
