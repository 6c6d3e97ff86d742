"""``certmgr agent``: keep an application's store on its own host from a certmgr GDS (Part 12 pull)."""

from __future__ import annotations

import click

from .options import json_option
from .output import emit_json, table


@click.group()
def agent() -> None:
    """The application host's side of the GDS pull model: no CA key, no database; keys made here.

    \b
    Examples:
      certmgr --home /var/lib/certmgr-agent agent enrol --gds opc.tcp://ca-host:4845 \\
          --app-uri urn:plant1:gateway --store /opt/gateway/pki --token-file /root/gateway.token \\
          --accept-gds 5F3A09C1D2E4B7A8
      certmgr --home /var/lib/certmgr-agent agent run --once
      certmgr --home /var/lib/certmgr-agent agent status
    """


def _print(app, outcomes) -> None:
    if app.json:
        emit_json([o.as_dict() for o in outcomes])
        return
    click.echo(table([o.as_dict() for o in outcomes], [("app_uri", "APPLICATION"), ("action", "RESULT"),
                                                        ("thumbprint", "THUMBPRINT"), ("message", "DETAIL")]))


@agent.command()
@click.option("--gds", required=True, metavar="URL", help="The GDS, opc.tcp://HOST:4845 (`certmgr gds serve` on the CA host).")
@click.option("--app-uri", required=True, help="The application, registered on the GDS with `app add --deploy pull`.")
@click.option("--store", required=True, type=click.Path(file_okay=False), help="The application's certificate store folder.")
@click.option("--layout", default="ua-net", show_default=True, help="Store layout (ua-net, node-opcua, ...).")
@click.option("--deploy-hook", default=None, metavar="CMD", help="Run after each new certificate (CERTMGR_* variables).")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False),
              help="The one-time token from `certmgr gds enrol-token` (a 0600 file).")
@click.option("--accept-gds", default=None, metavar="THUMBPRINT",
              help="Pin the GDS's certificate at first contact (its thumbprint, or 16+ leading characters).")
@click.option("--key-size", type=int, default=2048, show_default=True, help="RSA key size of the key made here.")
@click.option("--wait", type=float, default=None, metavar="SECONDS",
              help="Wait this long for the operator's approval instead of returning at once.")
@click.option("--force", is_flag=True, help="Enrol an enrolled application again (its certificate was revoked), with a new token.")
@json_option
@click.pass_obj
def enrol(app, gds, app_uri, store, layout, deploy_hook, token_file, accept_gds, key_size, wait, force) -> None:
    """Enrol an application: key here, CSR to the GDS with the token, certificate and trust list into the store."""
    from ..services.agent import enrol as enrol_service

    outcome = enrol_service(app, gds=gds, app_uri=app_uri, store=store, layout=layout, deploy_hook=deploy_hook,
                            token_file=token_file, accept_gds=accept_gds, wait=wait, key_size=key_size, force=force)
    _print(app, [outcome])


@agent.command()
@click.option("--once", is_flag=True, help="One pass over the enrolled applications, then exit (for cron).")
@click.option("--force", is_flag=True, help="Renew now even outside the renewal window.")
@click.option("--every", type=float, default=3600.0, show_default=True, metavar="SECONDS",
              help="Without --once: seconds between passes (the trust list is pulled on each).")
@json_option
@click.pass_obj
def run(app, once, force, every) -> None:
    """Renew inside the window as ApplicationSelfAdmin and pull the trust list (CA and CRL) into each store."""
    import time

    from ..errors import OperationFailed
    from ..services.agent import run as run_service

    while True:
        outcomes = run_service(app, force=force)
        _print(app, outcomes)
        if once:
            failed = [o for o in outcomes if not o.ok]
            if failed:
                raise OperationFailed(f"{len(failed)} of {len(outcomes)} applications failed: {failed[0].app_uri}: {failed[0].message}")
            return
        force = False
        time.sleep(max(10.0, every))


@agent.command()
@json_option
@click.pass_obj
def status(app) -> None:
    """What this agent keeps: each application's certificate, last run, last trust-list pull and CRL."""
    from ..services.agent import status as status_service

    data = status_service(app)
    if app.json:
        emit_json(data)
        return
    if not data["apps"]:
        click.echo("no application enrolled here; enrol one with `certmgr agent enrol`")
        return
    click.echo(f"GDS {data['gds']} (pinned {data['gds_pin'] or 'no'})")
    click.echo(table(data["apps"], [("app_uri", "APPLICATION"), ("thumbprint", "THUMBPRINT"), ("not_after", "NOT AFTER"),
                                    ("last_trust_list", "TRUST LIST PULLED"), ("crl_number", "CRL"),
                                    ("last_result", "LAST RESULT")]))


COMMANDS = [agent]
