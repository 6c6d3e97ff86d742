"""``certmgr renew`` and ``certmgr app update``."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from .options import KEY_SIZES, ROLE_CHOICES, dns_option, ip_option, json_option, passphrase_file_option
from .output import emit_json, table


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    from ..errors import InputError

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--at {value!r} is not a timestamp", "write it like 2027-03-01 or 2027-03-01T02:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Progress:
    """A progress bar on a terminal, sized once the batch is known (batches of more than one)."""

    def __init__(self) -> None:
        self.bar = None

    def start(self, total: int) -> None:
        if total > 1:
            self.bar = click.progressbar(length=total, label="renewing", file=sys.stderr)

    def advance(self, _app_uri: str) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


@click.command()
@click.option("--app-uri", "app_uris", multiple=True, help="Renew this application (repeatable).")
@click.option("--all-due", is_flag=True, help="Renew every certificate inside its renewal window.")
@click.option("--force", is_flag=True, help="Renew even if not due (also for applications without an active certificate).")
@click.option("--no-verify", is_flag=True, help="Skip the secure-channel proofs (recorded in the audit log).")
@click.option("--dry-run", is_flag=True, help="Show what would be renewed and why; change nothing.")
@click.option("--at", "at_text", default=None, metavar="TIMESTAMP", help="With --dry-run: select as if it were this time.")
@click.option("--verify-timeout", type=float, default=None, help="Seconds to wait for an endpoint to present the new certificate (default 60).")
@passphrase_file_option
@json_option
@click.pass_obj
def renew(app, app_uris, all_due, force, no_verify, dry_run, at_text, verify_timeout) -> None:
    """Renew due certificates, prove each on a real OPC UA secure channel, switch or roll back.

    Each new certificate (new key, new serial, subject and SAN from the application record) is staged
    beside the current one, proven on loopback secure channels with all three RSA policies, then switched
    atomically; the deploy hook runs and, for applications with an endpoint, the live server must present
    the new certificate. Any failure puts the old certificate back and revokes the new one. Exit 1 if
    anything failed.

    \b
    Examples:
      certmgr renew --all-due
      certmgr renew --app-uri urn:plant1:historian --force
      certmgr renew --all-due --dry-run --at 2027-03-01
    """
    from ..errors import InputError, OperationFailed
    from ..services.renewal import FAILED, RenewOptions
    from ..services.renewal import renew as renew_service

    app.require_initialised()
    at = _parse_at(at_text)
    if at is not None and not dry_run:
        raise InputError("--at only rehearses a selection", "add --dry-run, or drop --at")
    options = RenewOptions(app_uris, all_due, force, not no_verify, dry_run, verify_timeout)
    progress = _Progress() if sys.stderr.isatty() and not app.json and not dry_run else None
    results = renew_service(app, options, at=at, progress=progress)
    if progress is not None:
        progress.finish()
    if app.json:
        emit_json([r.as_dict() for r in results])
    elif results:
        rows = [{**r.as_dict(), "new": r.new_thumbprint or ""} for r in results]
        click.echo(table(rows, [("app_uri", "APPLICATION"), ("outcome", "OUTCOME"), ("new", "NEW THUMBPRINT"), ("reason", "WHY")]))
    else:
        click.echo("nothing is due")
    failed = [r for r in results if r.outcome == FAILED]
    if failed:
        from ..alerts.dispatch import alert_now

        alert_now(app)  # a failed renewal is critical: say so now, through the configured channels
        raise OperationFailed(f"{len(failed)} renewal(s) failed; the old certificates stay in use", "see WHY above")


@click.group("app")
def app_group() -> None:
    """Registered applications."""


@app_group.command("update")
@click.option("--app-uri", required=True)
@dns_option
@ip_option
@click.option("--endpoint", default=None, metavar="URL", help='opc.tcp:// endpoint for live proofs ("" clears).')
@click.option("--renew-before", default=None, metavar="DURATION", help='Renewal window, e.g. 30d ("" restores the default).')
@click.option("--deploy-hook", default=None, metavar="CMD", help='Shell command run after a switch ("" clears).')
@click.option("--role", type=click.Choice(ROLE_CHOICES), default=None)
@click.option("--key-size", type=click.Choice(KEY_SIZES), default=None)
@click.option("--days", type=int, default=None, help="Validity of the next certificates.")
@click.option("--name", default=None, metavar="CN")
@click.option("--org", "organization", default=None, metavar="O")
@click.option("--deploy", type=click.Choice(("file", "push")), default=None, help="How certificates reach the application.")
@click.option("--admin-user", default=None, help="Push: a user with the SecurityAdmin role on the server.")
@click.option("--admin-password-file", default=None, metavar="FILE", help="Push: file holding that user's password (mode 600).")
@click.option("--warn-before", default=None, metavar="DURATION", help='Alert level warning below this ("" restores [alerts] warning).')
@click.option("--crit-before", default=None, metavar="DURATION", help='Alert level critical below this ("" restores [alerts] critical).')
@json_option
@click.pass_obj
def app_update(app, app_uri, dns_names, ip_addresses, endpoint, renew_before, deploy_hook, role, key_size, days, name, organization,
               deploy, admin_user, admin_password_file, warn_before, crit_before) -> None:
    """Change an application's record; names and hosts take effect with the next certificate.

    --dns and --ip replace the lists (give each host again to keep it).

    \b
    Examples:
      certmgr app update --app-uri urn:plant1:historian --dns historian.plant1.local --ip 10.0.0.12
      certmgr app update --app-uri urn:plant1:historian --endpoint opc.tcp://historian.plant1.local:4840 \\
          --deploy-hook 'systemctl reload historian' --renew-before 30d
    """
    from ..services.apps import AppChanges, update_application

    app.require_initialised()
    changes = AppChanges(
        dns_names=dns_names or None, ip_addresses=ip_addresses or None, endpoint=endpoint, renew_before=renew_before,
        deploy_hook=deploy_hook, key_size=int(key_size) if key_size else None, days=days, role=role, name=name,
        organization=organization, warn_before=warn_before, crit_before=crit_before, deploy=deploy, admin_user=admin_user,
        admin_password_file=admin_password_file,
    )
    changed = update_application(app, app_uri, changes)
    if app.json:
        emit_json({k: {"old": v[0], "new": v[1]} for k, v in changed.items()})
    elif not changed:
        click.echo("nothing changed")
    else:
        for field, (old, new) in changed.items():
            click.echo(f"{field}: {old} -> {new}")  # the password itself is never stored, so never shown
        if {"dns_names", "ip_addresses", "name", "organization", "key_size"} & set(changed):
            click.echo(f"the current certificate is unchanged; `certmgr renew --force --app-uri {app_uri}` applies it now")


@app_group.command("add")
@click.option("--app-uri", required=True)
@click.option("--endpoint", required=True, metavar="URL", help="The server's opc.tcp:// endpoint.")
@click.option("--deploy", type=click.Choice(("push",)), required=True, help="push: certificates travel over OPC UA Part 12.")
@click.option("--admin-user", default=None, help="A user with the SecurityAdmin role on the server.")
@click.option("--admin-password-file", default=None, metavar="FILE", help="File holding that user's password (mode 600).")
@click.option("--name", default=None, metavar="CN")
@click.option("--org", "organization", default=None, metavar="O")
@dns_option
@ip_option
@click.option("--role", type=click.Choice(ROLE_CHOICES), default="server", show_default=True)
@click.option("--key-size", type=click.Choice(KEY_SIZES), default=None)
@click.option("--days", type=int, default=None)
@click.option("--renew-before", default=None, metavar="DURATION")
@json_option
@click.pass_obj
def app_add(app, app_uri, endpoint, deploy, admin_user, admin_password_file, name, organization, dns_names, ip_addresses, role,
            key_size, days, renew_before) -> None:
    """Register a server whose certificate certmgr pushes over OPC UA (no file access); then `certmgr push`.

    (Applications whose store certmgr writes are registered by `certmgr issue`.)

    \b
    Example:
      certmgr app add --app-uri urn:plant1:plc7 --endpoint opc.tcp://plc7.plant1.local:4840 --deploy push \\
          --admin-user certadmin --admin-password-file /etc/certmgr/plc7.pass --dns plc7.plant1.local --ip 10.0.1.7
    """
    from ..services.apps import add_push_application

    app.require_initialised()
    result = add_push_application(
        app, app_uri, endpoint=endpoint, admin_user=admin_user, admin_password_file=admin_password_file, name=name,
        organization=organization, dns_names=dns_names, ip_addresses=ip_addresses, role=role,
        key_size=int(key_size) if key_size else None, days=days, renew_before=renew_before,
    )
    emit_json(result) if app.json else click.echo(f"registered {app_uri} for push to {endpoint}; next: certmgr push --app-uri {app_uri}")


COMMANDS = [renew, app_group]
