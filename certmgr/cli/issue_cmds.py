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
    ca_secret_options,
    renew_before_option,
)
from .output import emit_json, key_values


@click.command()
@click.option("--app-uri", default=None, help="The application's ApplicationUri (goes into the SAN).")
@click.option("--store", type=click.Path(path_type=Path), default=None, help="The application's certificate store folder.")
@click.option("--batch", "batch_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Issue for every row of a CSV (header row) or JSON-lines file; columns are these options' names.")
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
@ca_secret_options
@json_option
@click.pass_obj
def issue(app, app_uri, store, batch_file, layout, name, organization, dns_names, ip_addresses, role, key_size, days, renew_before, force) -> None:
    """Register an application and issue its certificate into its store.

    Writes the certificate and key under the layout's names, the CA certificate to trusted/certs and the
    CA's current CRL to trusted/crl, so the application trusts every certificate the CA issues.

    \b
    Examples:
      certmgr issue --app-uri urn:plant1:historian --store /opt/historian/pki \\
          --dns historian.plant1.local --ip 10.0.0.12 --role server
      certmgr issue --batch fleet.csv
    """
    from ..errors import InputError
    from ..services.issuing import IssueRequest, issue_application

    from ..services.recovery import recover

    app.require_initialised()
    if recover(app):  # what a killed command left is finished or undone first; its revocations get their CRL
        from ..services.renewal import publish_revocations

        publish_revocations(app, app.issuer())
    if batch_file is not None:
        if app_uri is not None or store is not None:
            raise InputError("--batch takes everything from the file", "drop --app-uri and --store, or drop --batch")
        _issue_batch(app, batch_file)
        return
    if app_uri is None or store is None:
        raise InputError("missing --app-uri or --store", "give both, or --batch FILE")
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


def _issue_batch(app, path) -> None:
    import sys

    from ..errors import OperationFailed
    from ..services.batch import issue_batch, read_rows

    total = len(read_rows(path))
    bar = click.progressbar(length=total, label="issuing", file=sys.stderr) if sys.stderr.isatty() and not app.json else None
    rows = issue_batch(app, path, progress=(lambda: bar.update(1)) if bar else None)
    if bar:
        bar.render_finish()
    if app.json:
        from .output import emit_jsonl

        emit_jsonl(r.as_dict() for r in rows)
    else:
        from .output import table

        click.echo(table([r.as_dict() for r in rows], [("line", "LINE"), ("app_uri", "APPLICATION"), ("outcome", "OUTCOME"),
                                                       ("thumbprint", "THUMBPRINT"), ("detail", "DETAIL")]))
    failed = sum(1 for r in rows if r.outcome == "failed")
    if failed:
        raise OperationFailed(f"{failed} of {len(rows)} rows failed; the others were issued", "fix those rows and run them again")


COMMANDS = [issue]
