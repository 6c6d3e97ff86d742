"""``certmgr push`` and ``certmgr push-trust``."""

from __future__ import annotations

import click

from .options import ca_secret_options, confirm, json_option, yes_option
from .output import emit_json, key_values, table, warn


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


@click.command("push-trust")
@click.option("--app-uri", required=True, help="A server registered with `certmgr app add --deploy push`.")
@click.argument("thumbprint")
@yes_option
@json_option
@click.pass_obj
def push_trust(app, app_uri, thumbprint, yes) -> None:
    """Trust a certificate from a push server's GetRejectedList: add it to the server's TrustList over Part 12.

    The checks of `store trust`: a certificate certmgr's CA revoked is refused, and one whose issuer the
    server's TrustList does not hold (trusting the leaf alone would change nothing).

    \b
    Examples:
      certmgr store rejected --app-uri urn:plant1:plc7
      certmgr push-trust --app-uri urn:plant1:plc7 35FE16F0E016BFF2
    """
    from ..services.push_trust import review, trust

    app.require_initialised()
    details = review(app, app_uri, thumbprint)
    for line in details.pop("warnings"):
        warn(line)
    if not app.json:
        click.echo(key_values(list(details.items())), err=True)
    confirm(f"Add {details['subject']} to the TrustList of {app_uri}?", yes)
    result = trust(app, app_uri, details["thumbprint"])
    emit_json(result) if app.json else click.echo(f"{result['thumbprint']} -> trusted by {app_uri}")


COMMANDS = [push, push_trust]
