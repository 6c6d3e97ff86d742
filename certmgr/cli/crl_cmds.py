"""``certmgr revoke`` and ``certmgr crl ...``."""

from __future__ import annotations

from pathlib import Path

import click

from .options import LAYOUT_CHOICES, confirm, json_option, ca_secret_options, yes_option
from .output import emit_json, key_values, table, warn

from ..constants import REVOCATION_REASONS as REASON_CHOICES


def _publication_lines(stores) -> list[str]:
    return [f"  {s.store}: {s.status}{' (' + s.message + ')' if s.message else ''}" for s in stores]


@click.command()
@click.argument("thumbprint", required=False)
@click.option("--serial", default=None, metavar="HEX", help="The certificate's serial number in hex.")
@click.option("--app-uri", default=None, help="Revoke this application's active certificate.")
@click.option("--reason", type=click.Choice(REASON_CHOICES), default="unspecified", show_default=True)
@click.option("--no-probe", is_flag=True, help="Do not probe the application and peer endpoints afterwards.")
@yes_option
@ca_secret_options
@json_option
@click.pass_obj
def revoke(app, thumbprint, serial, app_uri, reason, yes, no_probe) -> None:
    """Revoke a certificate, sign a new CRL at once and publish it to every store.

    \b
    Examples:
      certmgr revoke 17E59B9173E08250 --reason keyCompromise
      certmgr revoke --app-uri urn:plant1:hmi --reason cessationOfOperation --yes
      certmgr revoke --serial 4873685b54d59ac0ba9f --yes
    """
    from ..errors import OperationFailed
    from ..services.revocation import certificate_summary, find_certificate
    from ..services.revocation import revoke as revoke_service

    app.require_initialised()
    cert = find_certificate(app, thumbprint=thumbprint, serial=serial, app_uri=app_uri)
    summary = certificate_summary(cert)
    if not yes and not app.json:
        click.echo(key_values(list(summary.items())), err=True)
    confirm(f"Revoke {cert.thumbprint} of {cert.application.app_uri} ({reason})?", yes)
    outcome = revoke_service(app, cert.id, reason)
    failed = [s for s in outcome.stores if s.status == "error"]
    probed = _probe_after_revoke(app) if not (no_probe or outcome.already) else []  # issue 15
    behind = _places_behind(app, outcome.crl_number)
    if app.json:
        emit_json({**outcome.as_dict(), "probe": [o.as_dict() for o in probed], "places_behind": behind.unreached})
    elif outcome.already:
        click.echo(f"{outcome.thumbprint} was already revoked on {outcome.revoked_at:%Y-%m-%d %H:%M} UTC ({outcome.reason}); nothing changed")
    else:
        click.echo(f"revoked {outcome.thumbprint} ({outcome.reason}); CRL {outcome.crl_number} published:")
        click.echo("\n".join(_publication_lines(outcome.stores)))
    for o in probed:
        if not o.ok:
            warn(f"revocation not effective on {o.endpoint} (CRL {o.crl_effective} of {o.crl_current}): {o.fix}")
    if behind.summary() and not app.json:
        click.echo(behind.summary())
    if outcome.was_active:
        warn(
            f"{outcome.app_uri} is now without a valid certificate; "
            f"issue a new one with `certmgr renew --force --app-uri {outcome.app_uri}`"
        )
    if failed:
        raise OperationFailed(f"the new CRL could not be written to {len(failed)} store(s)", "fix them and run `certmgr crl refresh`")


def _places_behind(app, crl_number: int | None):
    """Places certmgr's CA went that did not get CRL ``crl_number``, each with the command that delivers it (the
    stores revoke could not write are on the publication lines already)."""
    from ..services.fleet import PeerDelivery, places_behind

    return PeerDelivery(unreached=places_behind(app, crl_number) if crl_number is not None else [])


def _probe_after_revoke(app) -> list:
    """Canary probe of every application and peer endpoint: did the new CRL take effect? (docs/fleet.md)"""
    from ..services.probe import probe, probe_targets

    targets = probe_targets(app, all_=True, app_uri=None, peer=None)
    return probe(app, targets) if targets else []


@click.group("crl")
def crl_group() -> None:
    """certmgr's CRL and third-party CRLs in stores."""


@crl_group.command("refresh")
@click.option("--force", is_flag=True, help="Re-sign now, even with more than a third of the validity left.")
@ca_secret_options
@json_option
@click.pass_obj
def crl_refresh(app, force) -> None:
    """Re-sign the CRL when a third of its validity is left, republish it, check and repair every store.

    Each CA certificate in a store's trusted/ or issuer(s)/ folder must have exactly one CRL, signed by
    it and current now; certmgr's own CA's must be the newest. Missing, stale, forged or tampered CRLs
    of certmgr's CA are repaired; those of other CAs are reported. Exit 1 if anything is left broken.

    \b
    Examples:
      certmgr crl refresh
      certmgr crl refresh --force --json
    """
    from ..errors import OperationFailed
    from ..services.crl_refresh import refresh

    app.require_initialised()
    report = refresh(app, force=force)
    if app.json:
        emit_json(report.as_dict())
    else:
        action = "re-signed" if report.resigned else "current"
        click.echo(f"CRL {report.crl_number} ({action}), next update {report.next_update:%Y-%m-%d %H:%M} UTC")
        rows = [
            {"store": c.store, "state": "ok" if not c.problems else "PROBLEM", "repaired": len(c.repaired), "warnings": len(c.warnings)}
            for c in report.checks
        ]
        click.echo(table(rows, [("store", "STORE"), ("state", "STATE"), ("repaired", "REPAIRED"), ("warnings", "WARNINGS")]))
        for check in report.checks:
            for line in check.repaired:
                click.echo(f"  repaired {check.store}: {line}")
            for line in check.problems:
                click.echo(f"  PROBLEM {check.store}: {line}")
            for line in check.warnings:
                click.echo(f"  warning {check.store}: {line}")
        behind = _places_behind(app, report.crl_number).summary()
        if behind:
            click.echo(behind)
    if not report.ok:
        broken = sum(1 for c in report.checks if c.problems)
        raise OperationFailed(f"{broken} store(s) still have CRL problems", "see the lines marked PROBLEM")


@crl_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="The store to import into.")
@click.option("--layout", type=click.Choice(LAYOUT_CHOICES), default=None, help="Layout of --store (default: as registered, else ua-net).")
@click.option("--all-stores", is_flag=True, help="Every registered store that holds the CRL's CA.")
@json_option
@click.pass_obj
def crl_import(app, file, store_dir, layout, all_stores) -> None:
    """Import a third-party CA's CRL into stores that trust that CA (signature checked first).

    The CRL's nextUpdate is recorded, so the expiry scan warns before it goes stale.

    \b
    Examples:
      certmgr crl import vendor-ca.crl --store /opt/historian/pki
      certmgr crl import vendor-ca.crl --all-stores
    """
    from ..services.crl_refresh import import_crl

    app.require_initialised()
    results = import_crl(app, file, store_dir=store_dir, layout=layout, all_stores=all_stores)
    if app.json:
        emit_json([r.as_dict() for r in results])
    else:
        click.echo(table([r.as_dict() for r in results], [("store", "STORE"), ("status", "STATUS"), ("message", "DETAILS")]))


COMMANDS = [revoke, crl_group]
