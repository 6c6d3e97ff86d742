"""certmgr's state: SQLAlchemy 2 models, engine setup, queries and Alembic migrations.

Imports only ``sqlalchemy``, ``alembic`` (lazily, for migrations) and the standard library.
"""

from .engine import Database, make_engine
from .migrate import HEAD_REVISION, current_revision, is_known_revision, schema_differences, upgrade
from .models import (
    AlertState,
    Canary,
    Peer,
    ProbeResult,
    Application,
    AuditEvent,
    Authority,
    Base,
    CertStatus,
    Certificate,
    Crl,
    ExternalCrl,
    GdsEnrolToken,
    GdsRequest,
    GdsUser,
    Meta,
    Role,
    StoreCrl,
    WebLoginFailure,
    WebSession,
    WebUser,
    scheduler_jobs,
)

__all__ = [
    "HEAD_REVISION",
    "AlertState",
    "Canary",
    "Peer",
    "ProbeResult",
    "Application",
    "AuditEvent",
    "Authority",
    "Base",
    "CertStatus",
    "Certificate",
    "Crl",
    "Database",
    "ExternalCrl",
    "GdsEnrolToken",
    "GdsRequest",
    "GdsUser",
    "Meta",
    "StoreCrl",
    "Role",
    "current_revision",
    "is_known_revision",
    "make_engine",
    "schema_differences",
    "scheduler_jobs",
    "upgrade",
    "WebLoginFailure",
    "WebSession",
    "WebUser",
]
