"""Schema only through Alembic; models and migrations agree; UTC datetimes; SQLite foreign keys on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError

import db
from db.migrate import script_head


@pytest.fixture
def database(tmp_path, database_url):
    engine = db.make_engine(database_url or f"sqlite:///{tmp_path / 'test.db'}")
    db.upgrade(engine)
    yield db.Database(engine)
    engine.dispose()


def test_head_constant_matches_migration_scripts():
    assert db.HEAD_REVISION == script_head()


def test_migrations_and_models_agree(database):
    assert db.current_revision(database.engine) == db.HEAD_REVISION
    assert db.schema_differences(database.engine) == []


def test_schema_drift_is_detected(database):
    with database.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_certificates_not_after"))
    differences = db.schema_differences(database.engine)
    assert any("ix_certificates_not_after" in str(d) for d in differences)


def test_sqlite_foreign_keys_and_utc_round_trip(database):
    now = datetime(2026, 11, 26, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    with database.write() as session:
        authority = db.Authority(
            name="CA", subject="CN=CA", thumbprint="A" * 40, certificate_der=b"x", key_path="k",
            not_after=now, created_at=now,
        )
        session.add(authority)
    with database.read() as session:
        stored = session.get(db.Authority, authority.id)
        assert stored.created_at == now and stored.created_at.tzinfo == timezone.utc
    with pytest.raises(IntegrityError):
        with database.write() as session:
            session.add(
                db.Application(
                    app_uri="urn:x:y", name="y", role=db.Role.CLIENT, authority_id=999, created_at=now, updated_at=now
                )
            )
    with pytest.raises(StatementError, match="naive"):
        with database.write() as session:
            session.add(db.AuditEvent(at=datetime(2026, 1, 1), actor="t", action="x", target=None, details={}))


def test_enums_are_stored_by_value(database):
    now = datetime.now(timezone.utc)
    with database.write() as session:
        authority = db.Authority(
            name="CA", subject="CN=CA", thumbprint="B" * 40, certificate_der=b"x", key_path="k", not_after=now, created_at=now
        )
        app = db.Application(app_uri="urn:x:z", name="z", role=db.Role.BOTH, authority=authority, created_at=now, updated_at=now)
        session.add_all([authority, app])
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT role FROM applications")).scalar() == "both"
