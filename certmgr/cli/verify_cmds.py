"""``certmgr verify``."""

from __future__ import annotations

import click

from .options import json_option
from .output import emit_json, table

POLICY_CHOICES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")


@click.command()
@click.option("--app-uri", required=True, help="The application whose current certificate is proven.")
@click.option("--peer-app-uri", default=None, help="Another managed application as the peer (default: certmgr's verifier).")
@click.option("--policy", "policies", multiple=True, type=click.Choice(POLICY_CHOICES), help="Security policy (repeatable; default all three).")
@json_option
@click.pass_obj
def verify(app, app_uri, peer_app_uri, policies) -> None:
    """Prove on real OPC UA secure channels (127.0.0.1, SignAndEncrypt) that certificates work.

    The application's current certificate plays its role (server, client or both) against the peer;
    each side validates the other with its own store, exactly as the application would (trusted and
    issuer certificates, CRLs, time, application URI, key usage). Exit 1 if any channel fails.

    \b
    Examples:
      certmgr verify --app-uri urn:plant1:historian
      certmgr verify --app-uri urn:plant1:historian --peer-app-uri urn:plant1:scada
    """
    from ..errors import OperationFailed
    from ..services.proof import verify_pair

    app.require_initialised()
    report = verify_pair(app, app_uri, peer_app_uri, policies or POLICY_CHOICES)
    if app.json:
        emit_json(report.as_dict())
    else:
        rows = [{**r, "result": "ok" if r["ok"] else f"{r['status']} ({r['side']} refused)"} for r in report.runs]
        click.echo(table(rows, [("server", "SERVER"), ("client", "CLIENT"), ("policy", "POLICY"), ("result", "RESULT"), ("seconds", "SECONDS")]))
        for r in report.runs:
            if not r["ok"]:
                click.echo(f"  {r['policy']}: {r['message']}")
    if not report.ok:
        raise OperationFailed(f"{sum(not r['ok'] for r in report.runs)} of {len(report.runs)} secure channels failed")


COMMANDS = [verify]
