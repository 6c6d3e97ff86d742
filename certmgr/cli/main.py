"""The ``certmgr`` command group: global options, logging, and the one place errors become exit codes.

Only click is imported at start; each command imports what it needs when it runs, so `certmgr --help`
stays fast.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

from ..context import AppContext
from ..errors import CertmgrError
from ..home import resolve_home

log = logging.getLogger("certmgr")


def _classify(exc: BaseException) -> tuple[int, str] | None:
    """Expected errors from the core packages: (exit code, one-line message)."""
    if isinstance(exc, CertmgrError):
        return exc.exit_code, exc.one_line()
    module = type(exc).__module__.split(".")[0]
    if module == "ca":
        return 2, str(exc)
    if module == "pki":
        return (2 if isinstance(exc, ValueError) else 1), str(exc)
    return None


def _log_file(ctx: click.Context) -> Path | None:
    app = ctx.find_root().obj
    if isinstance(app, AppContext) and app.home.log_dir.is_dir():
        return app.home.log_dir / "certmgr.log"
    return None


def _record_traceback(ctx: click.Context, exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    path = _log_file(ctx)
    if path is not None:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)
            return f"details in {path}"
        except OSError:
            pass
    return "run with -v for the traceback"


class OneLineUsageError(click.ClickException):
    """A click usage error (bad option, missing argument, bad choice) shown in certmgr's one-line format."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message())
        self.exit_code = error.exit_code  # 2, or 3 for `certmgr check` (MonitoringCommand)
        words = error.ctx.command_path.split()[1:] if error.ctx is not None else []  # the root's name varies (python -m)
        self.hint = f"see `{' '.join(['certmgr', *words])} --help`"

    def show(self, file=None) -> None:
        click.echo(f"certmgr: error: {self.message.rstrip('.')}; {self.hint}", err=True)


def _one_line(error: click.UsageError) -> click.ClickException:
    # `certmgr` or `certmgr store` alone print their help (click's NoArgsIsHelpError): keep that
    return error if isinstance(error, click.exceptions.NoArgsIsHelpError) else OneLineUsageError(error)


class CertmgrGroup(click.Group):
    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:  # the group's own options (`certmgr --bogus`)
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # a subcommand's options and arguments, or an unknown command
            raise _one_line(error) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            raise  # stdout closed by the reader (`certmgr list | head -1`): click's main ends quietly
        except KeyboardInterrupt:
            click.echo("certmgr: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            app = ctx.find_root().obj
            classified = _classify(exc)
            verbose = isinstance(app, AppContext) and app.verbosity > 0
            if classified is not None:
                code, message = classified
                log.debug("expected error", exc_info=True)
                click.echo(f"certmgr: error: {message}", err=True)
                ctx.exit(code)
            where = _record_traceback(ctx, exc)
            if verbose:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"certmgr: error: unexpected {type(exc).__name__}: {exc} ({where})", err=True)
            ctx.exit(1)
        finally:
            app = ctx.find_root().obj
            if isinstance(app, AppContext):
                app.close()


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity if verbosity >= 0 else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_certmgr", False)]:
        root.removeHandler(old)
    handler._certmgr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(max(level, logging.DEBUG))
    # asyncua logs every refused handshake as an error with a traceback; certmgr reports those itself.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL if verbosity < 2 else logging.DEBUG)


@click.group(cls=CertmgrGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="certmgr home (settings, CA, default database). Env CERTMGR_HOME, default ~/.certmgr.",
)
@click.option("--db", "db_url", envvar="CERTMGR_DB", default=None, help="Database URL (env CERTMGR_DB; default SQLite in the home).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON instead of tables.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="certmgr", prog_name="certmgr")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, db_url: str | None, json_output: bool, verbose: int, quiet: bool) -> None:
    """certmgr: certificate lifecycle manager for OPC UA applications.

    A local CA issues and renews application instance certificates, keeps every application's
    trust store and CRL current, and proves renewed certificates on a real secure channel.

    \b
    First steps:
      certmgr init --ca-name "Plant 1 CA" --org "Plant 1"
      certmgr issue --app-uri urn:plant1:historian --store /opt/historian/pki --dns historian.plant1.local
      certmgr list --expiring 30d
    """
    verbosity = -1 if quiet else verbose
    _setup_logging(verbosity)
    # an embedding program (the test harness) may hand in a clock: `cli.main(args, obj={"clock": fn})`
    clock = ctx.obj.get("clock") if isinstance(ctx.obj, dict) else None
    ctx.obj = AppContext(resolve_home(home), db_url=db_url, json_output=json_output, verbosity=verbosity, clock=clock)


def _register() -> None:
    from . import (agent_cmds, app_cmds, ca_cmds, crl_cmds, daemon_cmds, db_cmds, gds_cmds, inventory_cmds, issue_cmds, peer_cmds, push_cmds,
                   renew_cmds, store_cmds, verify_cmds, web_cmds)

    modules = (ca_cmds, inventory_cmds, issue_cmds, renew_cmds, app_cmds, push_cmds, crl_cmds, store_cmds, verify_cmds,
               daemon_cmds, db_cmds, peer_cmds, web_cmds, gds_cmds, agent_cmds)
    for module in modules:
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="certmgr")
