"""``certmgr daemon``, ``certmgr check``, ``certmgr alerts test`` and ``certmgr metrics``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .options import json_option, ca_secret_options
from .output import emit_json, table

JOB_CHOICES = ("renew-due", "crl-refresh", "expiry-scan", "track-peers", "probe")


def _structured_logging() -> None:
    from ..daemon.logfmt import LogfmtFormatter

    for handler in logging.getLogger().handlers:
        if getattr(handler, "_certmgr", False):
            handler.setFormatter(LogfmtFormatter())
            handler.setLevel(logging.INFO)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@click.command()
@click.option("--once", "once", type=click.Choice(JOB_CHOICES), default=None, help="Run one job now and exit with its result.")
@ca_secret_options
@click.pass_obj
def daemon(app, once) -> None:
    """Run the scheduled jobs: renew-due (nightly 02:00), crl-refresh (every 6 h), expiry-scan (07:00).

    Schedules, alert channels and the metrics address come from certmgr.toml; with `[web] daemon = true` the
    daemon serves the web console as well (`certmgr web serve`'s rules: loopback, or TLS). The job store lives in the
    certmgr database, so a restarted daemon runs a missed job once. Logs are logfmt lines on stderr.

    \b
    Examples:
      certmgr daemon
      certmgr daemon --once renew-due      # from cron or a systemd timer
    """
    from ..daemon.jobs import run_locked
    from ..daemon.runner import serve
    from ..daemon.schedule import SIGNING_JOBS, daemon_settings
    from ..errors import OperationFailed

    app.require_initialised()
    _structured_logging()
    settings = daemon_settings(app.settings)
    if once:
        if once in SIGNING_JOBS:
            app.issuer()  # the passphrase before the job starts, not halfway through it
        if not run_locked(app, once):
            raise OperationFailed(f"job {once} failed", "see the log lines above")
        return
    web = None
    if app.settings.web.daemon:  # [web] daemon = true: the console too, checked (listen, TLS) before anything starts
        from ..web.serving import plan

        web = plan(app.settings)
    sys.exit(serve(app, settings, web=web))


class MonitoringCommand(click.Command):
    """Usage errors exit 3 (UNKNOWN) instead of click's 2, which a monitoring system reads as CRITICAL."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = 3
            raise


@click.command(cls=MonitoringCommand)
@click.option("--warn", "warn", default=None, metavar="DURATION", help="WARNING below this much validity (default [alerts] warning, 30d).")
@click.option("--crit", "crit", default=None, metavar="DURATION", help="CRITICAL below this (default [alerts] critical, 7d).")
@json_option
@click.pass_context
def check(click_ctx, warn, crit) -> None:
    """One line for monitoring systems (Nagios plugin codes): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    \b
    Example:
      certmgr check --warn 21d --crit 5d
    """
    import json

    app = click_ctx.obj
    try:
        from ..services.check import check as run_check

        result = run_check(app, warn=warn, crit=crit)
    except Exception as exc:  # monitoring wants UNKNOWN, never a traceback or a usage code
        message = exc.one_line() if hasattr(exc, "one_line") else f"{type(exc).__name__}: {exc}"
        click.echo(json.dumps({"status": "UNKNOWN", "message": message}) if app.json else f"CERTMGR UNKNOWN - {message}")
        click_ctx.exit(3)
    click.echo(json.dumps(result) if app.json else result["line"])
    click_ctx.exit(result["code"])


@click.group("alerts")
def alerts_group() -> None:
    """Alert channels ([[alerts.channel]] in certmgr.toml)."""


@alerts_group.command("test")
@click.option("--channel", default=None, help="Only this channel.")
@json_option
@click.pass_obj
def alerts_test(app, channel) -> None:
    """Send a test alert through each channel; exit 1 if any failed.

    \b
    Example:
      certmgr alerts test --channel ops-mail
    """
    from ..alerts.dispatch import test_alert
    from ..errors import InputError, OperationFailed

    app.require_initialised()
    results = test_alert(app, channel)
    if not results:
        raise InputError("no alert channels are configured", "add [[alerts.channel]] sections to certmgr.toml")
    if app.json:
        emit_json(results)
    else:
        click.echo(table([{"channel": k, "result": v} for k, v in results.items()], [("channel", "CHANNEL"), ("result", "RESULT")]))
    if any(v != "ok" for v in results.values()):
        raise OperationFailed("some alert channels failed", "see RESULT above")


@click.command()
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the metrics here atomically (node_exporter textfile collector) instead of stdout.")
@click.pass_obj
def metrics(app, textfile) -> None:
    """Print the Prometheus metrics, or write them for node_exporter.

    \b
    Example:
      certmgr metrics --textfile /var/lib/node_exporter/textfile/certmgr.prom
    """
    from ..metrics import registry_for, write_textfile
    from .output_paths import check_output_file

    if textfile is not None:
        textfile = check_output_file(textfile, "--textfile")
    app.require_initialised()
    if textfile is not None:
        write_textfile(app, textfile)
        return
    from prometheus_client import generate_latest

    click.echo(generate_latest(registry_for(app)).decode(), nl=False)


COMMANDS = [daemon, check, alerts_group, metrics]
