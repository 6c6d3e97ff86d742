"""``certmgr list`` and ``certmgr show``."""

from __future__ import annotations

import click

from .options import json_option
from .output import emit_json, emit_json_stream, emit_jsonl, key_values, table

LIST_COLUMNS = [
    ("app_uri", "APPLICATION"),
    ("role", "ROLE"),
    ("thumbprint", "THUMBPRINT"),
    ("not_after", "NOT AFTER"),
    ("days_left", "DAYS"),
    ("store", "STORE"),
]


@click.command("list")
@click.option("--expiring", metavar="DURATION", default=None, help="Only certificates ending within DURATION, e.g. 30d.")
@click.option("--jsonl", is_flag=True, help="One JSON object per line (for large fleets).")
@json_option
@click.pass_obj
def list_cmd(app, expiring, jsonl) -> None:
    """List active certificates, soonest expiry first.

    \b
    Examples:
      certmgr list
      certmgr list --expiring 30d --json
    """
    from ..durations import parse_duration
    from ..services.inventory import list_certificates

    window = parse_duration(expiring) if expiring else None
    app.require_initialised()
    rows = list_certificates(app, expiring=window, now=app.now())
    if jsonl:
        emit_jsonl(rows)
    elif app.json:
        emit_json_stream(rows)
    else:
        materialised = [{**r, "not_after": r["not_after"][:19].replace("T", " ")} for r in rows]
        click.echo(table(materialised, LIST_COLUMNS) if materialised else "no certificates")


@click.command()
@click.argument("key", metavar="APP_URI|THUMBPRINT")
@json_option
@click.pass_obj
def show(app, key) -> None:
    """Show an application and its certificates, by application URI or thumbprint (prefix of 8+ digits).

    \b
    Example:
      certmgr show urn:plant1:historian
    """
    from ..services.inventory import show as show_service

    app.require_initialised()
    data = show_service(app, key, app.now())
    if app.json:
        emit_json(data)
        return
    active = data["active"] or {}
    click.echo(
        key_values(
            [
                ("application", data["app_uri"]),
                ("name", data["name"]),
                ("role", data["role"]),
                ("DNS names", data["dns_names"]),
                ("IP addresses", data["ip_addresses"]),
                ("store", f"{data['store']} ({data['layout']})"),
                ("key size", data["key_size"]),
                ("endpoint", data["endpoint"]),
                ("active", f"{active.get('thumbprint')} until {active.get('not_after')}" if active else "none"),
            ]
        )
    )
    click.echo()
    click.echo(table(data["certificates"], [("thumbprint", "THUMBPRINT"), ("status", "STATUS"), ("not_after", "NOT AFTER"), ("status_reason", "REASON")]))


COMMANDS = [list_cmd, show]
