"""``certmgr db ...``: migrations are the only way the schema changes."""

from __future__ import annotations

import click

from .options import json_option
from .output import emit_json


@click.group("db")
def db_group() -> None:
    """The certmgr database schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(app) -> None:
    """Apply pending Alembic migrations (run after upgrading certmgr).

    \b
    Example:
      certmgr db upgrade
    """
    import db

    from ..context import safe_url

    database = app.database(check_schema=False)
    before = db.current_revision(database.engine)
    db.upgrade(database.engine)
    after = db.current_revision(database.engine)
    click.echo(f"{safe_url(app.db_url)}: {before or 'empty'} -> {after}")


@db_group.command("check")
@json_option
@click.pass_obj
def db_check(app) -> None:
    """Check that the database is at the newest migration and matches certmgr's models (exit 1 if not).

    \b
    Example:
      certmgr db check
    """
    import db

    from ..errors import OperationFailed

    from ..owners import describe
    from ..services.recovery import pending_summary

    database = app.database(check_schema=False)
    revision = db.current_revision(database.engine)
    differences = [str(d) for d in db.schema_differences(database.engine)] if revision else ["no schema"]
    interrupted = []
    if revision == db.HEAD_REVISION and not differences:
        with database.read() as session:
            interrupted = [{"app_uri": uri, "thumbprint": thumb, "owner": describe(owner)} for uri, thumb, owner in pending_summary(session)]
    result = {"revision": revision, "head": db.HEAD_REVISION, "differences": differences, "pending": interrupted}
    ok = revision == db.HEAD_REVISION and not differences
    if app.json:
        emit_json({**result, "ok": ok and not interrupted})
    else:
        click.echo(f"revision {revision or 'none'} (certmgr needs {db.HEAD_REVISION})")
        for line in differences:
            click.echo(f"  differs: {line}")
        for row in interrupted:
            click.echo(f"  pending: {row['app_uri']} {row['thumbprint']} (a change by {row['owner']} has not finished)")
    if not ok:
        raise OperationFailed("the database schema does not match certmgr's models", "run `certmgr db upgrade`, or add a migration")
    if interrupted:
        raise OperationFailed(f"{len(interrupted)} change(s) left pending (an interrupted issue or renewal)",
                              "run `certmgr renew --all-due` (or the command that was interrupted) to finish or undo them")


COMMANDS = [db_group]
