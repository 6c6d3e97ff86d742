"""Alembic migrations are the only way the schema is created or changed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; a test keeps this in step with the scripts.
HEAD_REVISION = "0014"


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_known_revision(revision: str) -> bool:
    """Whether this certmgr ships ``revision``; an unknown one was written by a newer certmgr."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config_for_scripts()).get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


def script_head() -> str:
    from alembic.script import ScriptDirectory

    config = alembic_config_for_scripts()
    return ScriptDirectory.from_config(config).get_current_head() or ""


def alembic_config_for_scripts():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def schema_differences(engine: Engine, metadata=None) -> list:
    """Differences between the models (or ``metadata``) and the database; empty when they agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from .models import Base

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, metadata if metadata is not None else Base.metadata)
