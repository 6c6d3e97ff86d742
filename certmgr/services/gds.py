"""certmgr's GDS directory (Part 12): who may do what, and the applications registered to pull.

The OPC UA conversation is in certmgr/opcua/gds_server.py; it hands each call here with a ``Caller`` (the
session's user and role, the channel's certificate) and turns a ``GdsRefused`` into its Part 12 status code.
Certificate requests are in gds_requests.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError
from .app_spec import build_spec
from .gds_tokens import ENROL_TOKEN
from .gds_users import CA_ADMIN, DISCOVERY_ADMIN, RA_ADMIN, SELF_ADMIN

# Part 12 ApplicationType -> the registration's role (which EKU-bearing sides its certificate serves)
APPLICATION_TYPES = {0: "server", 1: "client", 2: "both", 3: "server"}
TYPE_OF_ROLE = {"server": 0, "client": 1, "both": 2}
CERTIFICATE_ROLES = (CA_ADMIN, RA_ADMIN)  # may request certificates for any registered application


class GdsRefused(Exception):
    """A call refused with a Part 12 / Part 4 status code name (e.g. BadUserAccessDenied) and why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Caller:
    """Who calls: the session's user (None: anonymous) and role, and the channel's client certificate."""

    user: str | None = None
    role: str | None = None
    certificate: x509.Certificate | None = None
    secure: bool = False  # the channel is SignAndEncrypt
    address: str = ""
    token_id: int | None = None  # an enrolment token session: the token, and the one application it is for
    token_app_id: int | None = None
    self_app_id: int | None = field(default=None)  # filled by resolve(): the application whose certificate it is

    @property
    def label(self) -> str:
        if self.token_id:
            return f"enrolment token {self.token_id} via gds"
        if self.user:
            return f"{self.user} ({self.role}) via gds"
        thumb = pki.thumbprint(self.certificate) if self.certificate is not None else "no certificate"
        return f"{SELF_ADMIN} {thumb} via gds" if self.self_app_id else f"anonymous {thumb} via gds"


def resolve(ctx: AppContext, caller: Caller) -> Caller:
    """Refuse a channel that is not SignAndEncrypt; find the application the channel certificate belongs to
    (ApplicationSelfAdmin: it is that registered pull application's *active* certificate). A certificate certmgr's
    CA did not issue (a new application's self-signed one) is accepted only with an enrolment token or a
    RegistrationAuthorityAdmin: other administrators come with a certificate from certmgr's CA."""
    if not caller.secure:
        raise GdsRefused("BadSecurityModeInsufficient", "the GDS serves SignAndEncrypt channels only")
    if caller.certificate is not None and caller.token_id is None and caller.role != RA_ADMIN and not _by_our_ca(ctx, caller.certificate):
        raise GdsRefused("BadCertificateUntrusted", "a client certificate not issued by certmgr's CA may only enrol "
                         "(with an enrolment token or a RegistrationAuthorityAdmin user)")
    if caller.certificate is not None:
        thumb = pki.thumbprint(caller.certificate)
        with ctx.database().read() as session:
            row = session.scalars(select(db.Certificate).where(db.Certificate.thumbprint == thumb)).first()
            if row is not None and row.status == db.CertStatus.ACTIVE and row.application.deploy == "pull" \
                    and row.application.unregistered_at is None:
                caller.self_app_id = row.application_id
    return caller


def _by_our_ca(ctx: AppContext, cert: x509.Certificate) -> bool:
    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    return cert.issuer == ca_cert.subject and pki.cert_signed_by(cert, ca_cert)


def require(caller: Caller, roles: tuple[str, ...], app_id: int | None = None) -> str:
    """The role that allows the call: one of ``roles`` held by the user, ApplicationSelfAdmin for ``app_id``, or
    an enrolment token for ``app_id`` (ENROL_TOKEN in ``roles``)."""
    if caller.token_id is not None:
        if ENROL_TOKEN in roles and app_id is not None and caller.token_app_id == app_id:
            return ENROL_TOKEN
    elif caller.role in roles:
        return caller.role
    if SELF_ADMIN in roles and app_id is not None and caller.self_app_id == app_id:
        return SELF_ADMIN
    who = caller.label.removesuffix(" via gds") if caller.user or caller.token_id else "an anonymous session"
    raise GdsRefused("BadUserAccessDenied", f"{who} may not do this; it needs {' or '.join(roles)}")


def audit_refusal(ctx: AppContext, caller: Caller, method: str, refused: GdsRefused, target: str | None = None) -> None:
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=caller.label[:200], action="gds.refused", target=target,
                          method=method, status=refused.status, reason=refused.message[:500])


PULL_ACTIONS = ("gds.finish", "gds.trust_list")


def note_pull(ctx: AppContext, caller: Caller, app_id: int, action: str) -> None:
    """An application (its agent) fetched its certificate or asked for the trust list: audited, and the last one
    of each shows in `fleet status` (the GDS cannot see the install itself)."""
    with ctx.database().write() as session:
        app = session.get(db.Application, app_id)
        queries.add_audit(session, at=ctx.now(), actor=caller.label[:200], action=action,
                          target=app.app_uri if app else str(app_id))


def last_pulls(session) -> dict[str, dict[str, object]]:
    """{app_uri: {"gds.finish": at, "gds.trust_list": at}} from the audit log."""
    from sqlalchemy import func, select

    rows = session.execute(select(db.AuditEvent.target, db.AuditEvent.action, func.max(db.AuditEvent.at))
                           .where(db.AuditEvent.action.in_(PULL_ACTIONS))
                           .group_by(db.AuditEvent.target, db.AuditEvent.action)).all()
    found: dict[str, dict[str, object]] = {}
    for target, action, at in rows:
        found.setdefault(target, {})[action] = at
    return found


@dataclass
class Record:
    """Part 12 ApplicationRecordDataType, as plain values."""

    app_uri: str
    application_type: int = 1
    names: list[str] = field(default_factory=list)
    product_uri: str = ""
    discovery_urls: list[str] = field(default_factory=list)
    server_capabilities: list[str] = field(default_factory=list)
    application_id: int | None = None


def _hosts(urls: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns, ips = [], []
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            raise GdsRefused("BadInvalidArgument", f"discovery URL {url!r} names no host")
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def live_application(session, app_id: int | None) -> db.Application:
    app = session.get(db.Application, app_id) if app_id else None
    if app is None or app.deploy != "pull" or app.unregistered_at is not None:
        raise GdsRefused("BadNotFound", f"no application {app_id} is registered to pull")
    return app


def record_of(app: db.Application) -> Record:
    urls = [app.endpoint] if app.endpoint else []
    return Record(app.app_uri, TYPE_OF_ROLE[app.role.value], [app.name], "", urls, [], app.id)


def register_application(ctx: AppContext, caller: Caller, record: Record) -> int:
    """A new pull registration; one the operator made (`app add --deploy pull`) is answered with its id."""
    role = require(caller, (DISCOVERY_ADMIN, RA_ADMIN))
    if record.application_type not in APPLICATION_TYPES:
        raise GdsRefused("BadInvalidArgument", f"ApplicationType {record.application_type} is not known")
    dns, ips = _hosts(record.discovery_urls)
    try:
        spec = build_spec(ctx, app_uri=record.app_uri, name=record.names[0][:64] if record.names else None,
                          organization=None, dns_names=dns, ip_addresses=ips, role=APPLICATION_TYPES[record.application_type])
    except InputError as exc:
        raise GdsRefused("BadInvalidArgument", exc.message) from None
    now = ctx.now()
    with ctx.database().write() as session:
        app = queries.application_by_uri(session, record.app_uri)
        if app is not None and app.deploy == "pull" and app.unregistered_at is None:
            queries.add_audit(session, at=now, actor=caller.label[:200], action="gds.register", target=app.app_uri,
                              application_id=app.id, existing=True, role=role)
            return app.id
        if app is not None and app.deploy != "pull":
            raise GdsRefused("BadEntryExists", f"{record.app_uri} is registered for {app.deploy} deployment, not pull")
        identity = spec.identity
        if app is None:
            authority = queries.authority(session)
            app = db.Application(app_uri=record.app_uri, authority_id=authority.id, created_at=now, deploy="pull", layout="ua-net")
            session.add(app)
        app.name, app.organization = identity.subject.common_name, identity.subject.organization
        app.dns_names, app.ip_addresses = list(identity.dns_names), list(identity.ip_addresses)
        app.role, app.key_size, app.validity_days = db.Role(spec.role), spec.key_size, spec.days
        app.endpoint = record.discovery_urls[0] if record.discovery_urls else None
        app.unregistered_at, app.updated_at = None, now
        session.flush()
        queries.add_audit(session, at=now, actor=caller.label[:200], action="gds.register", target=app.app_uri,
                          application_id=app.id, role=role, dns=list(dns), ips=list(ips))
        return app.id


def update_application(ctx: AppContext, caller: Caller, record: Record) -> None:
    """UpdateApplication: new names, type and discovery URLs (hence DNS names / IPs) for the next certificate."""
    role = require(caller, (DISCOVERY_ADMIN, RA_ADMIN))
    if record.application_type not in APPLICATION_TYPES:
        raise GdsRefused("BadInvalidArgument", f"ApplicationType {record.application_type} is not known")
    dns, ips = _hosts(record.discovery_urls)
    with ctx.database().write() as session:
        app = live_application(session, record.application_id)
        if record.app_uri != app.app_uri:
            raise GdsRefused("BadInvalidArgument", f"application {app.id} is {app.app_uri}; its ApplicationUri cannot change")
        try:
            spec = build_spec(ctx, app_uri=app.app_uri, name=record.names[0][:64] if record.names else app.name,
                              organization=app.organization, dns_names=dns, ip_addresses=ips,
                              role=APPLICATION_TYPES[record.application_type], days=app.validity_days)
        except InputError as exc:
            raise GdsRefused("BadInvalidArgument", exc.message) from None
        app.name, app.role = spec.identity.subject.common_name, db.Role(spec.role)
        app.dns_names, app.ip_addresses = list(spec.identity.dns_names), list(spec.identity.ip_addresses)
        app.endpoint = record.discovery_urls[0] if record.discovery_urls else None
        app.updated_at = ctx.now()
        queries.add_audit(session, at=ctx.now(), actor=caller.label[:200], action="gds.update", target=app.app_uri,
                          application_id=app.id, role=role, dns=list(dns), ips=list(ips))


def get_application(ctx: AppContext, caller: Caller, app_id: int) -> Record:
    require(caller, (DISCOVERY_ADMIN, CA_ADMIN, RA_ADMIN, SELF_ADMIN, ENROL_TOKEN), app_id)
    with ctx.database().read() as session:
        return record_of(live_application(session, app_id))


def find_applications(ctx: AppContext, caller: Caller, app_uri: str) -> list[Record]:
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None or app.deploy != "pull" or app.unregistered_at is not None:
            return []
        require(caller, (DISCOVERY_ADMIN, CA_ADMIN, RA_ADMIN, SELF_ADMIN, ENROL_TOKEN), app.id)
        return [record_of(app)]


def like(pattern: str):
    """A Part 4 LIKE pattern (``%`` any run, ``_`` one character, ``\\`` escapes) as a compiled regex; empty: anything."""
    import re

    if not pattern:
        return re.compile(r".*", re.S)
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out) + r"\Z", re.S | re.I)


# QueryApplications' ApplicationType filter: 0 every application, 1 servers, 2 clients (Part 12 §6.5.12);
# a ClientAndServer application is both
_QUERY_TYPES = {0: (0, 1, 2, 3), 1: (0, 2, 3), 2: (1, 2)}


def query_applications(ctx: AppContext, caller: Caller, *, start: int, limit: int, name: str, uri: str, app_type: int,
                       product_uri: str, capabilities: list[str]) -> tuple[object, int, list[Record]]:
    """QueryApplications (administrators): the registered pull applications matching every filter, from record
    ``start`` (the application id), at most ``limit`` (0: no limit). Returns (LastCounterResetTime, NextRecordId
    (0: no more), records). Record ids are database ids, never reused, so the counter was last reset when the
    CA was made. certmgr keeps no ProductUri or ServerCapabilities: a filter on them matches only empty values."""
    require(caller, (DISCOVERY_ADMIN, CA_ADMIN, RA_ADMIN))
    if app_type not in _QUERY_TYPES:
        raise GdsRefused("BadInvalidArgument", f"ApplicationType {app_type} is not 0 (all), 1 (servers) or 2 (clients)")
    names, uris, products = like(name), like(uri), like(product_uri)
    with ctx.database().read() as session:
        reset = queries.authority(session).created_at
        apps = session.scalars(select(db.Application).where(
            db.Application.deploy == "pull", db.Application.unregistered_at.is_(None), db.Application.id >= max(start, 0))
            .order_by(db.Application.id))
        found = [r for r in map(record_of, apps)
                 if r.application_type in _QUERY_TYPES[app_type] and uris.match(r.app_uri) and products.match(r.product_uri)
                 and any(names.match(n) for n in r.names or [""]) and set(capabilities or []) <= set(r.server_capabilities)]
    if limit and len(found) > limit:
        return reset, found[limit].application_id, found[:limit]
    return reset, 0, found


def unregister_application(ctx: AppContext, caller: Caller, app_id: int) -> dict:
    """The registration ends and its live certificate is revoked (a new CRL is signed and published)."""
    from .revocation import revoke

    role = require(caller, (DISCOVERY_ADMIN,))
    with ctx.database().read() as session:
        app = live_application(session, app_id)
        uri = app.app_uri
        active = queries.active_certificate(session, app.id)
        active_id = active.id if active else None
    crl_number = None
    if active_id is not None:
        crl_number = revoke(ctx, active_id, "cessationOfOperation").crl_number
    with ctx.database().write() as session:
        app = session.get(db.Application, app_id)
        app.unregistered_at = app.updated_at = ctx.now()
        for request in session.scalars(select(db.GdsRequest).where(db.GdsRequest.application_id == app_id,
                                                                   db.GdsRequest.state.in_(("pending", "approved")))):
            request.state, request.reason = "denied", "application unregistered"
        queries.add_audit(session, at=ctx.now(), actor=caller.label[:200], action="gds.unregister", target=uri,
                          application_id=app_id, role=role, crl_number=crl_number)
    return {"app_uri": uri, "crl_number": crl_number}


def add_pull_application(ctx: AppContext, app_uri: str, *, name: str | None, organization: str | None,
                         dns_names: tuple[str, ...], ip_addresses: tuple[str, ...], role: str, key_size: int | None,
                         days: int | None, renew_before: str | None) -> dict:
    """`certmgr app add --deploy pull`: an application that will ask the GDS for its certificates."""
    spec = build_spec(ctx, app_uri=app_uri, name=name, organization=organization, dns_names=dns_names,
                      ip_addresses=ip_addresses, role=role, key_size=key_size, days=days, renew_before=renew_before)
    identity = spec.identity
    now = ctx.now()
    with ctx.database().write() as session:
        if queries.application_by_uri(session, app_uri) is not None:
            raise InputError(f"application {app_uri} is already registered", f"change it with `certmgr app update --app-uri {app_uri}`")
        authority = queries.authority(session)
        app = db.Application(
            app_uri=app_uri, name=identity.subject.common_name, organization=identity.subject.organization,
            dns_names=list(identity.dns_names), ip_addresses=list(identity.ip_addresses), role=db.Role(role), store_path=None,
            layout="ua-net", key_size=spec.key_size, validity_days=spec.days, renew_before_seconds=spec.renew_before_seconds,
            deploy="pull", authority_id=authority.id, created_at=now, updated_at=now,
        )
        session.add(app)
        session.flush()
        queries.add_audit(session, at=now, actor=ctx.actor, action="application.add", target=app_uri, deploy="pull",
                          application_id=app.id)
        return {"app_uri": app_uri, "deploy": "pull", "application_id": app.id}


def identity_of(app: db.Application) -> ca.ApplicationIdentity:
    """What a pulled certificate holds: the registration, never the CSR."""
    return ca.ApplicationIdentity(app.app_uri, ca.SubjectFields(app.name, app.organization), tuple(app.dns_names),
                                  tuple(app.ip_addresses))
