"""``certmgr issue``."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (
    ROLE_CHOICES,
    dns_option,
    ip_option,
    json_option,
    key_size_option,
    layout_option,
    passphrase_file_option,
    renew_before_option,
)
from .output import emit_json, key_values


@click.command()
@click.option("--app-uri", required=True, help="The application's ApplicationUri (goes into the SAN).")
@click.option("--store", type=click.Path(path_type=Path), required=True, help="The application's certificate store folder.")
@layout_option
@click.option("--name", metavar="CN", default=None, help="Subject CN (default: last part of the URI).")
@click.option("--org", "organization", metavar="O", default=None, help="Subject O (default from certmgr.toml).")
@dns_option
@ip_option
@click.option("--role", type=click.Choice(ROLE_CHOICES), default="both", show_default=True, help="What the application is.")
@key_size_option
@click.option("--days", type=int, default=None, help="Validity in days (default 365).")
@renew_before_option
@click.option("--force", is_flag=True, help="Reissue for an application that is already registered.")
@passphrase_file_option
@json_option
@click.pass_obj
def issue(app, app_uri, store, layout, name, organization, dns_names, ip_addresses, role, key_size, days, renew_before, force) -> None:
    """Register an application and issue its certificate into its store.

    Writes the certificate and key under the layout's names, the CA certificate to trusted/certs and the
    CA's current CRL to trusted/crl, so the application trusts every certificate the CA issues.

    \b
    Example:
      certmgr issue --app-uri urn:plant1:historian --store /opt/historian/pki \\
          --dns historian.plant1.local --ip 10.0.0.12 --role server
    """
    from ..services.issuing import IssueRequest, issue_application

    app.require_initialised()
    outcome = issue_application(
        app,
        IssueRequest(
            app_uri=app_uri,
            store=store,
            layout=layout,
            name=name,
            organization=organization,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            role=role,
            key_size=int(key_size) if key_size else None,
            days=days,
            renew_before=renew_before,
            force=force,
        ),
    )
    if app.json:
        emit_json(outcome.as_dict())
        return
    pairs = [
        ("application", outcome.app_uri),
        ("thumbprint", outcome.thumbprint),
        ("serial", outcome.serial),
        ("not after", outcome.not_after.isoformat()),
        ("store", f"{outcome.store} ({outcome.layout})"),
        ("files", outcome.files),
    ]
    if outcome.replaced:
        pairs.append(("replaced", outcome.replaced))
    click.echo(key_values(pairs))


COMMANDS = [issue]
