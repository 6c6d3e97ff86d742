"""Peers: endpoints and stores certmgr does not issue for, kept in the inventory and tracked.

A peer has an endpoint (its server certificate is read with GetEndpoints, never a session), a store
(a folder certmgr wrote its CA into, e.g. by `store import` or `trust-exchange`), or both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .store_inspect import describe

CHANGE_NOTICE = timedelta(days=7)  # a changed peer certificate stays a warning this long, so the alert is seen
BUNDLE = "bundle"  # the layout of a `trust-exchange --export` folder: flat files for a human to copy, not a store
PUSH_SOURCE = "push"  # a push server's endpoint: certmgr issues its certificate, tracking catches a vendor regenerating it


@dataclass(frozen=True)
class PeerSettings:
    track_every: timedelta
    probe_concurrency: int
    timeout: float


def peer_settings(ctx: AppContext) -> PeerSettings:
    """The typed [fleet] section of certmgr.toml, with its ranges checked."""
    fleet = ctx.settings.fleet
    hours, concurrency, timeout = fleet.track_every_hours, fleet.probe_concurrency, fleet.timeout_seconds
    for key, value, low, high in (("track_every_hours", hours, 0.01, 24 * 30), ("probe_concurrency", concurrency, 1, 256),
                                  ("timeout_seconds", timeout, 0.5, 300)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InputError(f"[fleet] {key} = {value!r} in certmgr.toml is not allowed", f"give a number between {low} and {high}")
    return PeerSettings(timedelta(hours=hours), int(concurrency), float(timeout))


def check_endpoint_url(url: str) -> str:
    if not url.startswith("opc.tcp://") or len(url) <= len("opc.tcp://"):
        raise InputError(f"{url!r} is not an OPC UA endpoint URL", "give opc.tcp://HOST:PORT[/PATH]")
    return url


def certificate_facts(certificate: x509.Certificate, now: datetime) -> dict:
    """What the inventory keeps of a peer's certificate, with its OPC UA profile findings."""
    details = describe(certificate)
    return {
        "thumbprint": details["thumbprint"], "subject": details["subject"], "app_uri": details["app_uri"],
        "not_after": certificate.not_valid_after_utc, "key_size": getattr(certificate.public_key(), "key_size", None),
        "signature_hash": details["signature"],
        "findings": [str(f) for f in ca.check_application_certificate(certificate, at=now)],
    }


def read_peer_endpoint(url: str, timeout: float):
    """EndpointRead or OperationFailed naming the reason."""
    from ..opcua.faults import describe_failure
    from ..opcua.probe import read_endpoint

    try:
        return asyncio.run(read_endpoint(url, timeout))
    except Exception as exc:  # every failure to read a remote endpoint is reported, not raised
        raise OperationFailed(f"cannot read the endpoints of {url}: {describe_failure(exc)[1]}",
                              "check the URL and that the server runs") from None


def _apply(peer: db.Peer, read, now: datetime) -> None:
    for key, value in certificate_facts(read.certificate, now).items():
        setattr(peer, key, value)
    peer.offered, peer.flags, peer.last_seen_at, peer.last_error = read.offered, read.flags, now, None


def peer_dict(peer: db.Peer) -> dict:
    return {
        "name": peer.name, "endpoint": peer.endpoint, "store": peer.store_path, "layout": peer.layout, "source": peer.source,
        "thumbprint": peer.thumbprint, "subject": peer.subject, "app_uri": peer.app_uri,
        "not_after": peer.not_after.isoformat() if peer.not_after else None, "key_size": peer.key_size,
        "signature_hash": peer.signature_hash, "findings": list(peer.findings or []), "offered": list(peer.offered or []),
        "flags": list(peer.flags or []), "previous_thumbprint": peer.previous_thumbprint,
        "changed_at": peer.changed_at.isoformat() if peer.changed_at else None,
        "last_seen_at": peer.last_seen_at.isoformat() if peer.last_seen_at else None, "last_error": peer.last_error,
    }


def add_peer(ctx: AppContext, *, endpoint: str | None, store: Path | None, name: str | None, layout: str = "ua-net",
             source: str = "peer add") -> dict:
    ctx.require_initialised()
    if endpoint is None and store is None:
        raise InputError("a peer needs an endpoint or a store", "pass --endpoint opc.tcp://HOST:PORT and/or --store DIR")
    if endpoint is not None:
        check_endpoint_url(endpoint)
    store_path = str(Path(store).expanduser().resolve()) if store is not None else None
    if store_path is not None and not Path(store_path).is_dir():
        raise InputError(f"store folder {store_path} does not exist", "give the peer's certificate store folder")
    with ctx.database().read() as session:
        if endpoint and session.scalars(select(db.Peer).where(db.Peer.endpoint == endpoint)).first():
            raise InputError(f"peer {endpoint} is already registered", "see `certmgr peer show`")
        if store_path and session.scalars(select(db.Peer).where(db.Peer.store_path == store_path)).first():
            raise InputError(f"a peer with store {store_path} is already registered", "see `certmgr peer list`")
    now = ctx.now()
    read = read_peer_endpoint(endpoint, peer_settings(ctx).timeout) if endpoint else None
    peer = db.Peer(name=name or endpoint or Path(store_path).name, endpoint=endpoint, store_path=store_path, layout=layout,
                   source=source, created_at=now, findings=[], offered=[], flags=[])
    if read is not None:
        _apply(peer, read, now)
    with ctx.database().write() as session:
        session.add(peer)
        queries.add_audit(session, at=now, actor=ctx.actor, action="peer.add", target=endpoint or store_path,
                             thumbprint=peer.thumbprint, source=source)
        session.flush()
        return peer_dict(peer)


def register_store_peer(ctx: AppContext, store: pki.ApplicationStore, source: str, endpoint: str | None = None) -> dict | None:
    """Called by `store import` / `trust-exchange`: a store certmgr writes its CA into and does not manage
    becomes a peer, so every later CRL reaches it. None when it is a registered application's store or a
    known peer already."""
    path = str(Path(store.root).resolve())
    with ctx.database().read() as session:
        managed = session.scalars(select(db.Application).where(db.Application.store_path.in_([path, str(store.root)]))).first()
        known = session.scalars(select(db.Peer).where(db.Peer.store_path == path)).first()
    if managed is not None or known is not None:
        return None
    now = ctx.now()
    with ctx.database().write() as session:
        peer = db.Peer(name=endpoint or Path(path).name, endpoint=None, store_path=path, layout=store.layout.name,
                       source=source, created_at=now, findings=[], offered=[], flags=[])
        session.add(peer)
        queries.add_audit(session, at=now, actor=ctx.actor, action="peer.add", target=path, source=source)
        session.flush()
        return peer_dict(peer)


def register_endpoint_peer(ctx: AppContext, url: str, certificate: x509.Certificate, source: str) -> dict | None:
    """Called by `trust-exchange` and `push`: the server it touched becomes a tracked peer (its offered
    policies are filled in by the next tracking run). None when it is a known peer, or (except for `push`,
    whose server is a push application) an application's endpoint."""
    with ctx.database().read() as session:
        known = session.scalars(select(db.Peer).where(db.Peer.endpoint == url)).first()
        if known is not None:
            if source == PUSH_SOURCE and known.thumbprint != pki.thumbprint(certificate):
                _note_pushed(ctx, url, certificate)
            return None
        if source != PUSH_SOURCE and session.scalars(select(db.Application).where(db.Application.endpoint == url)).first() is not None:
            return None
    now = ctx.now()
    with ctx.database().write() as session:
        peer = db.Peer(name=url, endpoint=url, source=source, created_at=now, offered=[], flags=[], last_seen_at=now,
                       **certificate_facts(certificate, now))
        session.add(peer)
        queries.add_audit(session, at=now, actor=ctx.actor, action="peer.add", target=url, thumbprint=peer.thumbprint, source=source)
        session.flush()
        return peer_dict(peer)


def _note_pushed(ctx: AppContext, url: str, certificate: x509.Certificate) -> None:
    """certmgr pushed this certificate itself: the next tracking run must not call it a change."""
    now = ctx.now()
    with ctx.database().write() as session:
        peer = session.scalars(select(db.Peer).where(db.Peer.endpoint == url)).first()
        for key, value in certificate_facts(certificate, now).items():
            setattr(peer, key, value)
        peer.last_seen_at, peer.previous_thumbprint, peer.changed_at = now, None, None


def register_bundle_peer(ctx: AppContext, folder: Path, server_url: str, app_uri: str) -> dict | None:
    """Called by `trust-exchange --export`: the exported folder holds certmgr's CA and a CRL that goes stale with
    the next revocation, and certmgr cannot reach the server's store behind it; as a peer of layout "bundle" it is
    listed after each revocation with the command that refreshes it (name = the server, app_uri = the application
    the bundle is for). None when the folder is known already."""
    path = str(Path(folder).resolve())
    with ctx.database().read() as session:
        if session.scalars(select(db.Peer).where(db.Peer.store_path == path)).first() is not None:
            return None
    now = ctx.now()
    with ctx.database().write() as session:
        peer = db.Peer(name=server_url[:200], endpoint=None, store_path=path, layout=BUNDLE, source="trust-exchange --export",
                       app_uri=app_uri, created_at=now, findings=[], offered=[], flags=[])
        session.add(peer)
        queries.add_audit(session, at=now, actor=ctx.actor, action="peer.add", target=path, source="trust-exchange --export")
        session.flush()
        return peer_dict(peer)


def find_peer(session, key: str) -> db.Peer:
    resolved = str(Path(key).expanduser().resolve()) if not key.startswith("opc.tcp://") else key
    peer = session.scalars(select(db.Peer).where(
        (db.Peer.endpoint == key) | (db.Peer.name == key) | (db.Peer.store_path == resolved))).first()
    if peer is None:
        raise InputError(f"no peer {key!r} is registered", "see `certmgr peer list`")
    return peer


def list_peers(ctx: AppContext) -> list[dict]:
    ctx.require_initialised()
    with ctx.database().read() as session:
        return [peer_dict(p) for p in session.scalars(select(db.Peer).order_by(db.Peer.name))]


def show_peer(ctx: AppContext, key: str) -> dict:
    ctx.require_initialised()
    with ctx.database().read() as session:
        data = peer_dict(find_peer(session, key))
        if data["endpoint"]:
            probe = session.scalars(select(db.ProbeResult).where(db.ProbeResult.endpoint == data["endpoint"])).first()
            data["last_probe"] = probe_dict(probe)
        return data


def probe_dict(probe: db.ProbeResult | None) -> dict | None:
    if probe is None:
        return None
    return {"trusts_ca": probe.trusts_ca, "crl_effective": probe.crl_effective, "crl_current": probe.crl_current,
            "statuses": list(probe.statuses or []), "fix": probe.fix, "probed_at": probe.probed_at.isoformat()}


def remove_peer(ctx: AppContext, key: str) -> dict:
    ctx.require_initialised()
    with ctx.database().write() as session:
        peer = find_peer(session, key)
        data = peer_dict(peer)
        session.delete(peer)
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="peer.remove", target=peer.endpoint or peer.store_path)
    return data


def scan(ctx: AppContext, url: str) -> list[dict]:
    """FindServers on ``url``, then GetEndpoints of each discovery URL; what each offers, with flags."""
    from ..opcua.faults import describe_failure
    from ..opcua.probe import find_servers, read_endpoint

    check_endpoint_url(url)
    settings = peer_settings(ctx)

    async def run() -> list[dict]:
        try:
            servers = await find_servers(url, settings.timeout)
        except Exception as exc:  # a server without FindServers is still scanned by its own URL
            servers = [{"app_uri": None, "name": None, "discovery_url": url, "find_servers": describe_failure(exc)[1]}]
        found = []
        for server in servers:
            entry = {**server, "endpoint": server["discovery_url"]}
            try:
                read = await read_endpoint(server["discovery_url"], settings.timeout)
            except Exception as exc:  # listed by FindServers but not answering: reported
                entry["error"] = describe_failure(exc)[1]
            else:
                facts = certificate_facts(read.certificate, ctx.now())
                entry.update({**facts, "not_after": facts["not_after"].isoformat(), "offered": read.offered, "flags": read.flags})
            found.append(entry)
        return found

    return asyncio.run(run())


@dataclass
class CertificateChange:
    endpoint: str
    old_thumbprint: str
    new_thumbprint: str
    stores_trusting_old: list[str]

    def message(self) -> str:
        where = ", ".join(self.stores_trusting_old) or "no registered store"
        return (f"certificate changed on {self.endpoint}: {self.old_thumbprint} -> {self.new_thumbprint}; "
                f"still trusting the old one: {where}")


def _stores_trusting(ctx: AppContext, thumbprint: str) -> list[str]:
    from .publishing import registered_stores

    paths = [t.store() for t in registered_stores(ctx)]
    with ctx.database().read() as session:
        paths += [pki.ApplicationStore(p.store_path, p.layout) for p in session.scalars(select(db.Peer).where(
            db.Peer.store_path.is_not(None), db.Peer.layout != BUNDLE))]
    found = []
    for store in paths:
        try:
            if any(loaded.value is not None and pki.thumbprint(loaded.value) == thumbprint for loaded in store.certificates(pki.TRUSTED)):
                found.append(str(store.root))
        except (OSError, pki.StoreError):
            continue
    return sorted(set(found))


def track_peers(ctx: AppContext) -> list[CertificateChange]:
    """The daemon job (every [fleet] track_every_hours): re-read each peer endpoint's certificate with
    GetEndpoints; a changed certificate is recorded (audit "peer.certificate-changed") and returned."""
    from ..opcua.faults import describe_failure
    from ..opcua.probe import read_endpoint

    settings = peer_settings(ctx)
    with ctx.database().read() as session:
        endpoints = [p.endpoint for p in session.scalars(select(db.Peer).where(db.Peer.endpoint.is_not(None)))]

    async def read_all():
        async def one(url):
            try:
                return url, await read_endpoint(url, settings.timeout), None
            except Exception as exc:  # one unreachable peer never stops the others
                return url, None, describe_failure(exc)[1]
        return await asyncio.gather(*(one(u) for u in endpoints))

    results = asyncio.run(read_all()) if endpoints else []
    now, changes = ctx.now(), []
    for url, read, error in results:
        with ctx.database().write() as session:
            peer = session.scalars(select(db.Peer).where(db.Peer.endpoint == url)).first()
            if peer is None:
                continue
            if read is None:
                peer.last_error = error
                continue
            old = peer.thumbprint
            _apply(peer, read, now)
            if old and old != peer.thumbprint:
                peer.previous_thumbprint, peer.changed_at = old, now
                change = CertificateChange(url, old, peer.thumbprint, [])
                changes.append(change)
    for change in changes:
        change.stores_trusting_old = _stores_trusting(ctx, change.old_thumbprint)
        with ctx.database().write() as session:
            queries.add_audit(session, at=now, actor=ctx.actor, action="peer.certificate-changed", target=change.endpoint,
                                 old=change.old_thumbprint, new=change.new_thumbprint, stores=change.stores_trusting_old)
    return changes


def peer_subjects(ctx: AppContext, now: datetime, settings) -> Iterator:
    """Expiry levels of peer certificates as alert Subjects (kind "peer"), only those above ok, like
    certmgr.alerts.levels.scan; the lead chains it into the expiry scan, check and alerts."""
    from ..alerts.levels import Subject, _days, certificate_level

    with ctx.database().read() as session:
        peers = list(session.scalars(select(db.Peer).where(db.Peer.not_after.is_not(None))))
        ours = set(session.scalars(select(db.Certificate.thumbprint).where(db.Certificate.thumbprint.in_([p.thumbprint for p in peers]))))
    for peer in peers:
        level, reason = certificate_level(peer.not_after, None, now, settings.warning, settings.critical, False)
        if peer.thumbprint in ours:
            level = "ok"  # a push server serving what certmgr issued: the application's own alert covers its expiry
        if peer.changed_at is not None and now - peer.changed_at < CHANGE_NOTICE:
            level = "warning" if level == "ok" else level
            change = CertificateChange(peer.endpoint or peer.name, peer.previous_thumbprint, peer.thumbprint,
                                       _stores_trusting(ctx, peer.previous_thumbprint))
            reason = f"{change.message()}; {reason}"
        if level != "ok":
            yield Subject(f"peer:{peer.endpoint or peer.store_path}:{peer.thumbprint}", "peer", peer.endpoint or peer.name,
                          peer.thumbprint, peer.not_after, _days(peer.not_after - now), level, f"peer {reason}", peer.store_path)


def peer_expiry_metric(ctx: AppContext) -> list[tuple[dict, float]]:
    """certmgr_peer_certificate_not_after_timestamp_seconds{endpoint}: (labels, value) per peer endpoint."""
    with ctx.database().read() as session:
        rows = session.execute(select(db.Peer.endpoint, db.Peer.not_after).where(
            db.Peer.endpoint.is_not(None), db.Peer.not_after.is_not(None)).order_by(db.Peer.endpoint)).all()
    return [({"endpoint": endpoint}, not_after.timestamp()) for endpoint, not_after in rows]
