"""``certmgr push``."""

from __future__ import annotations

import click

from .options import json_option, ca_secret_options
from .output import emit_json, table


@click.command()
@click.option("--app-uri", required=True, help="A server registered with `certmgr app add --deploy push`.")
@click.option("--regenerate-key", is_flag=True, help="Ask the server for a new key pair (renewals always do).")
@click.option("--accept-server", default=None, metavar="THUMBPRINT",
              help="Trust the server's current certificate for this session (first push to a self-signed server).")
@click.option("--security-mode", type=click.Choice(("SignAndEncrypt", "Sign")), default="SignAndEncrypt", show_default=True,
              help="Part 12 needs SignAndEncrypt; Sign exists to show the server's refusal.")
@click.option("--verify-timeout", type=float, default=None, help="Seconds to wait for the server to present the new certificate.")
@ca_secret_options
@json_option
@click.pass_obj
def push(app, app_uri, regenerate_key, accept_server, security_mode, verify_timeout) -> None:
    """Issue a server a new certificate over OPC UA Part 12 push management and prove it is served.

    \b
    Examples:
      certmgr push --app-uri urn:plant1:plc7
      certmgr push --app-uri urn:plant1:plc7 --regenerate-key --accept-server 5F3A09C1D2E4B7A8
    """
    from ..errors import OperationFailed
    from ..services.push import push as push_service

    app.require_initialised()
    report = push_service(app, app_uri, regenerate_key=regenerate_key, accept_server=accept_server,
                          sign_only=security_mode == "Sign", verify_timeout=verify_timeout)
    if app.json:
        emit_json(report.as_dict())
    else:
        click.echo(table([s.as_dict() for s in report.steps], [("step", "STEP"), ("status", "STATUS"), ("detail", "DETAIL")]))
        if report.ok:
            click.echo(f"{app_uri} now serves {report.new_thumbprint} until {report.not_after}")
    if not report.ok:
        from ..alerts.dispatch import alert_now

        alert_now(app)
        raise OperationFailed(f"push to {app_uri} failed at {report.failed_step}: {report.message}")


COMMANDS = [push]
