"""Read-only views of what certmgr tracks: ``list`` and ``show``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import db
from db import queries

from ..context import AppContext
from ..errors import InputError


def days_left(not_after: datetime, now: datetime) -> float:
    return round((not_after - now).total_seconds() / 86400, 1)


def certificate_row(cert: db.Certificate, app: db.Application, now: datetime) -> dict:
    return {
        "app_uri": app.app_uri,
        "name": app.name,
        "role": app.role.value,
        "thumbprint": cert.thumbprint,
        "serial": cert.serial_hex,
        "status": cert.status.value,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "days_left": days_left(cert.not_after, now),
        "store": app.store_path,
        "layout": app.layout,
        "internal": app.internal,
    }


def list_certificates(ctx: AppContext, *, expiring: timedelta | None, now: datetime) -> Iterator[dict]:
    """Active certificates, soonest expiry first; with ``expiring`` only those ending before now + it."""
    limit = now + expiring if expiring is not None else None
    with ctx.database().read() as session:
        for uri, name, role, thumb, serial, status, not_before, not_after, store, layout, internal in queries.listing(session, limit):
            yield {
                "app_uri": uri, "name": name, "role": role.value, "thumbprint": thumb, "serial": serial,
                "status": status.value, "not_before": not_before.isoformat(), "not_after": not_after.isoformat(),
                "days_left": days_left(not_after, now), "store": store, "layout": layout, "internal": internal,
            }


def show(ctx: AppContext, key: str, now: datetime) -> dict:
    """An application (by URI) or a certificate (by thumbprint prefix) with its certificate history."""
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, key)
        if app is None:
            hex_key = key.replace(":", "").strip()
            if len(hex_key) < 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_key):
                raise InputError(
                    f"no application {key!r} is registered",
                    "give a registered application URI (see `certmgr list`) or at least 8 hex digits of a thumbprint",
                )
            matches = queries.certificates_by_thumbprint_prefix(session, hex_key)
            if not matches:
                raise InputError(f"no application or certificate matches {key!r}", "see `certmgr list`")
            if len(matches) > 1:
                raise InputError(f"thumbprint prefix {key!r} matches {len(matches)} certificates", "give more digits")
            app = matches[0].application
        history = [
            {
                "thumbprint": c.thumbprint,
                "serial": c.serial_hex,
                "status": c.status.value,
                "status_reason": c.status_reason,
                "not_before": c.not_before.isoformat(),
                "not_after": c.not_after.isoformat(),
                "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                "revocation_reason": c.revocation_reason,
            }
            for c in app.certificates
        ]
        active = queries.active_certificate(session, app.id)
        return {
            "app_uri": app.app_uri,
            "name": app.name,
            "organization": app.organization,
            "role": app.role.value,
            "dns_names": app.dns_names,
            "ip_addresses": app.ip_addresses,
            "store": app.store_path,
            "layout": app.layout,
            "key_size": app.key_size,
            "validity_days": app.validity_days,
            "renew_before_seconds": app.renew_before_seconds,
            "endpoint": app.endpoint,
            "deploy_hook": app.deploy_hook,
            "internal": app.internal,
            "active": certificate_row(active, app, now) if active else None,
            "certificates": history,
        }
