"""SQLAlchemy 2 typed models: authorities, applications, certificates, CRLs, audit events.

The database holds DER certificates and metadata, never private keys.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UTCDateTime, value_enum

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
utc = Annotated[datetime, mapped_column(UTCDateTime)]
thumbprint_str = Annotated[str, mapped_column(String(40))]
uri_str = Annotated[str, mapped_column(String(1024))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"
    BOTH = "both"


class CertStatus(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"
    FAILED = "failed"


class Authority(Base):
    __tablename__ = "authorities"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    thumbprint: Mapped[thumbprint_str] = mapped_column(unique=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_path: Mapped[str] = mapped_column(Text)
    # The next CRL number; allocated under a row lock so numbers never repeat across processes.
    next_crl_number: Mapped[int] = mapped_column(Integer, default=1)
    crl_days: Mapped[int] = mapped_column(Integer, default=30)
    not_after: Mapped[utc]
    created_at: Mapped[utc]
    # CA rollover (services/rollover.py): each row is one CA generation; exactly one is "signing", a "next" one is
    # trusted beside it until advance, a "previous" one until finish, a "retired" one is gone from every store.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    role: Mapped[str] = mapped_column(String(16), default="signing", server_default="signing", index=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    applications: Mapped[list[Application]] = relationship(back_populates="authority")


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[intpk]
    app_uri: Mapped[uri_str] = mapped_column(unique=True)
    name: Mapped[str] = mapped_column(String(64))
    organization: Mapped[str | None] = mapped_column(String(64))
    dns_names: Mapped[list[str]] = mapped_column(default=list)
    ip_addresses: Mapped[list[str]] = mapped_column(default=list)
    role: Mapped[Role] = mapped_column(value_enum(Role, "role"))
    store_path: Mapped[str | None] = mapped_column(Text)
    layout: Mapped[str] = mapped_column(String(20), default="ua-net")
    key_size: Mapped[int] = mapped_column(Integer, default=2048)
    validity_days: Mapped[int] = mapped_column(Integer, default=365)
    renew_before_seconds: Mapped[int | None] = mapped_column(Integer)
    endpoint: Mapped[str | None] = mapped_column(Text)
    deploy_hook: Mapped[str | None] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(default=False)  # certmgr's own verification identity
    # "file": certmgr writes the store; "push": OPC UA Part 12 push over the endpoint (no file access);
    # "pull": the application asks certmgr's GDS with a CSR (its key never leaves its host).
    deploy: Mapped[str] = mapped_column(String(8), default="file", server_default="file")
    admin_user: Mapped[str | None] = mapped_column(String(200))
    admin_password_file: Mapped[str | None] = mapped_column(Text)  # a reference, never the password
    # A node renewing this application holds the claim; a claim older than the timeout is stale.
    renewal_claimed_by: Mapped[str | None] = mapped_column(String(200))
    renewal_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_renewal_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_renewal_status: Mapped[str | None] = mapped_column(String(16), index=True)  # "renewed" or "failed"
    last_renewal_error: Mapped[str | None] = mapped_column(Text)
    # Alert thresholds for this application; None: the [alerts] defaults of certmgr.toml.
    warn_before_seconds: Mapped[int | None] = mapped_column(Integer)
    crit_before_seconds: Mapped[int | None] = mapped_column(Integer)
    # Set when a GDS caller unregistered it (UnregisterApplication): kept, with its certificates revoked, for the CRL.
    unregistered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    created_at: Mapped[utc]
    updated_at: Mapped[utc]

    authority: Mapped[Authority] = relationship(back_populates="applications")
    certificates: Mapped[list[Certificate]] = relationship(
        back_populates="application", order_by="Certificate.id", cascade="all, delete-orphan"
    )


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("authority_id", "serial_hex", name="uq_certificates_authority_serial"),
        Index("ix_certificates_application_status", "application_id", "status"),
        Index("ix_certificates_status_not_after", "status", "not_after"),
        Index("ix_certificates_status_renew_after", "status", "renew_after"),
    )

    id: Mapped[intpk]
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    serial_hex: Mapped[str] = mapped_column(String(42))
    thumbprint: Mapped[thumbprint_str] = mapped_column(unique=True)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[utc]
    not_after: Mapped[utc] = mapped_column(index=True)
    # When this certificate becomes due for renewal: notAfter minus the application's window. Stored so
    # that the nightly selection is one indexed range query.
    renew_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[CertStatus] = mapped_column(value_enum(CertStatus, "cert_status"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    key_size: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    # While pending: the change this certificate is part of (issue, renew, push), the process doing it and the
    # thumbprint of the pair it replaces. Committed before any file is touched, so a command that finds it
    # after a crash can finish or undo the change.
    intent: Mapped[str | None] = mapped_column(String(16))
    intent_owner: Mapped[str | None] = mapped_column(String(200))
    intent_previous: Mapped[str | None] = mapped_column(String(40))
    intent_store: Mapped[str | None] = mapped_column(Text)  # where the change goes (issue --force may move a store)
    intent_layout: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[utc]

    application: Mapped[Application] = relationship(back_populates="certificates")


class Crl(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("authority_id", "number", name="uq_crls_authority_number"),)

    id: Mapped[intpk]
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    number: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[utc]
    next_update: Mapped[utc]
    revoked_count: Mapped[int] = mapped_column(Integer, default=0)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[utc]


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[intpk]
    at: Mapped[utc] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(1024))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class StoreCrl(Base):
    """Which CRL number of an authority a store's ``trusted``/``issuer`` folder holds."""

    __tablename__ = "store_crls"
    __table_args__ = (UniqueConstraint("authority_id", "store_path", "kind", name="uq_store_crls_authority_store_kind"),)

    id: Mapped[intpk]
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    store_path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(10))
    crl_number: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[utc]


class ExternalCrl(Base):
    """A third-party CA's CRL imported into a store; tracked so it is refreshed before it goes stale."""

    __tablename__ = "external_crls"
    __table_args__ = (UniqueConstraint("issuer_thumbprint", "store_path", name="uq_external_crls_issuer_store"),)

    id: Mapped[intpk]
    issuer_subject: Mapped[str] = mapped_column(Text)
    issuer_thumbprint: Mapped[thumbprint_str]
    store_path: Mapped[str] = mapped_column(Text)
    crl_number: Mapped[int | None] = mapped_column(Integer)
    this_update: Mapped[utc]
    next_update: Mapped[utc] = mapped_column(index=True)
    imported_at: Mapped[utc]


class Meta(Base):
    """Small key/value facts about the database, e.g. the renewal-window rule renew_after was computed with."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AlertState(Base):
    """What each alert channel was last told about a subject (a certificate or a CRL), so an alert is sent
    once per level change (and repeated while critical), across daemon restarts. Channel "" holds the level
    the last scan computed."""

    __tablename__ = "alert_states"
    __table_args__ = (UniqueConstraint("subject_key", "channel", name="uq_alert_states_subject_channel"),)

    id: Mapped[intpk]
    subject_key: Mapped[str] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[utc]


# APScheduler's SQLAlchemy job store table, declared here so that migrations (not APScheduler) create it
# and `certmgr db check` knows it. Same columns as apscheduler.jobstores.sqlalchemy 3.x.
scheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class Peer(Base):
    """An endpoint and/or store certmgr does not issue for (a vendor server, a third-party client's store),
    with what GetEndpoints last showed of its certificate."""

    __tablename__ = "peers"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str | None] = mapped_column(String(1024), unique=True)
    store_path: Mapped[str | None] = mapped_column(Text)
    layout: Mapped[str] = mapped_column(String(20), default="ua-net")
    source: Mapped[str] = mapped_column(String(32), default="peer add")  # the command that registered it
    thumbprint: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(Text)
    app_uri: Mapped[str | None] = mapped_column(String(1024))
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    key_size: Mapped[int | None] = mapped_column(Integer)
    signature_hash: Mapped[str | None] = mapped_column(String(32))
    findings: Mapped[list[str]] = mapped_column(default=list)
    offered: Mapped[list[str]] = mapped_column(default=list)  # "Policy/Mode" pairs from GetEndpoints
    flags: Mapped[list[str]] = mapped_column(default=list)  # weak policies or modes offered
    previous_thumbprint: Mapped[str | None] = mapped_column(String(40))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[utc]


class ProbeResult(Base):
    """The last canary probe of one endpoint (an application's or a peer's)."""

    __tablename__ = "probe_results"

    id: Mapped[intpk]
    endpoint: Mapped[str] = mapped_column(String(1024), unique=True)
    trusts_ca: Mapped[bool | None] = mapped_column()
    crl_effective: Mapped[int | None] = mapped_column(Integer)
    crl_current: Mapped[int | None] = mapped_column(Integer)
    statuses: Mapped[list[str]] = mapped_column(default=list)
    fix: Mapped[str | None] = mapped_column(Text)
    probed_at: Mapped[utc]


class Canary(Base):
    """A certificate revoked before it was ever used, first listed in CRL ``crl_number``: a server refusing it
    has loaded that CRL or a newer one. Its key stays in the home of the node that signed the CRL."""

    __tablename__ = "canaries"
    __table_args__ = (UniqueConstraint("authority_id", "crl_number", name="uq_canaries_authority_number"),)

    id: Mapped[intpk]
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    crl_number: Mapped[int] = mapped_column(Integer)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    key_file: Mapped[str] = mapped_column(Text)
    created_at: Mapped[utc]


class WebUser(Base):
    """A person who signs in to `certmgr web`: a scrypt hash of the password, never the password."""

    __tablename__ = "web_users"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    password_hash: Mapped[str] = mapped_column(String(400))  # scrypt$n$r$p$salt-hex$hash-hex
    created_at: Mapped[utc]


class WebSession(Base):
    """A signed-in console session. The cookie holds a random token; only its SHA-256 is stored, so reading the
    database does not sign anyone in. The role is the user's current one (joined at each request)."""

    __tablename__ = "web_sessions"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[utc]
    seen_at: Mapped[utc] = mapped_column(index=True)


class WebLoginFailure(Base):
    """One failed console sign-in, kept for the limiter's window (rows older than it are deleted)."""

    __tablename__ = "web_login_failures"
    __table_args__ = (Index("ix_web_login_failures_user_address", "user_name", "address"),)

    id: Mapped[intpk]
    user_name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[utc] = mapped_column(index=True)
class GdsUser(Base):
    """A user of certmgr's GDS (`certmgr gds serve`) with one Part 12 role; a scrypt hash, never the password."""

    __tablename__ = "gds_users"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(32))  # DiscoveryAdmin | CertificateAuthorityAdmin | RegistrationAuthorityAdmin
    password_hash: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[utc]


class GdsRequest(Base):
    """A certificate request made to the GDS (StartSigningRequest): the CSR, who asked, the operator's decision
    and, once FinishRequest delivered it, the certificate. Never a private key."""

    __tablename__ = "gds_requests"
    __table_args__ = (Index("ix_gds_requests_state", "state"),)

    id: Mapped[intpk]
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    csr_der: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | denied | issued
    requested_by: Mapped[str] = mapped_column(String(200))  # "alice (CertificateAuthorityAdmin)", "ApplicationSelfAdmin"
    self_renewal: Mapped[bool] = mapped_column(default=False)
    # StartNewKeyPairRequest: the GDS made the key ("PEM" or "PFX"); it waits, encrypted with the request's
    # password, in a 0600 file of the GDS home until FinishRequest hands it over once (never in this table)
    new_key_format: Mapped[str | None] = mapped_column(String(8))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    created_at: Mapped[utc]

    application: Mapped[Application] = relationship()


class GdsEnrolToken(Base):
    """A one-time enrolment token (`certmgr gds enrol-token`): lets an application with a self-signed certificate
    ask for its first certificate. Only a SHA-256 of the token is kept (it is 32 random bytes, not a password)."""

    __tablename__ = "gds_enrol_tokens"

    id: Mapped[intpk]
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[utc]
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set when its certificate was handed out
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[utc]
