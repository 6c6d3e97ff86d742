"""``certmgr renew``."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from .options import json_option, ca_secret_options
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
@ca_secret_options
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
    stale = [r for r in results if r.stale_claim]
    if stale:
        raise OperationFailed(f"{len(stale)} application(s) skipped: claimed by a run that has stopped moving", "see WHY above")


COMMANDS = [renew]
