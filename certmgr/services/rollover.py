"""``certmgr ca rollover start|status|advance|finish`` and ``--emergency``: the next CA generation, with overlap.

Phases, kept in the database as the role of each CA generation (authorities.role, migration 0014):

    none --start--> started --advance--> advanced --finish--> finished
                  (G1 signing, G2 next)  (G2 signing, G1 previous)  (G1 retired)

*start* makes G2 (its own subject name, "Plant 1 CA G2"; a new key encrypted with the CA passphrase; the same
profile) with setup's own CA helpers, signs its first CRL and puts both in every store certmgr writes beside G1.
*advance* (once nothing blocks: every store holds G2 and its CRL, every live endpoint accepts a G2 identity)
makes G2 the signing CA and re-issues every application through the renewal pipeline, proofs included. Both
CRLs stay signed and published meanwhile (G1's by `crl refresh` and by revocations of G1 certificates).
*finish* (once no active certificate depends on G1) removes G1's certificate and CRL from every store.

``--emergency`` (services/rollover_emergency.py) runs them back to back for a compromised CA.
Each phase is repeatable: killed anywhere, the same command run again finds what is done and completes the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

import ca
import db
import pki
from db import queries
from pki import destroy_secret
from pki.files import sweep_destroyed

from ..context import AppContext
from ..errors import InputError, OperationFailed
from ..locks import exclusive
from ..passphrase import read_passphrase
from . import rollover_stores as stores
from .crls import sign_crl

log = logging.getLogger(__name__)

NONE, STARTED, ADVANCED, FINISHED = "none", "started", "advanced", "finished"
SIGNING, NEXT, PREVIOUS, RETIRED = "signing", "next", "previous", "retired"


def _fresh_ca_key(bits: int):
    """None: setup's `_ca_key` generates the key (tests hand in keys no leaf shares)."""
    return None


@dataclass
class Generations:
    signing: db.Authority
    next: db.Authority | None
    previous: db.Authority | None
    retired: list[db.Authority] = field(default_factory=list)

    @property
    def phase(self) -> str:
        if self.next is not None:
            return STARTED
        if self.previous is not None:
            return ADVANCED
        return FINISHED if self.retired else NONE

    @property
    def old(self) -> db.Authority | None:
        return {STARTED: self.signing, ADVANCED: self.previous}.get(self.phase, self.retired[-1] if self.retired else self.signing)

    @property
    def new(self) -> db.Authority | None:
        return {STARTED: self.next, NONE: None}.get(self.phase, self.signing)


def generations(session) -> Generations:
    rows = list(session.scalars(select(db.Authority).order_by(db.Authority.generation, db.Authority.id)))
    by_role = {role: [r for r in rows if r.role == role] for role in (SIGNING, NEXT, PREVIOUS, RETIRED)}
    if len(by_role[SIGNING]) != 1:
        raise OperationFailed(f"the database holds {len(by_role[SIGNING])} signing CAs", "run `certmgr ca rollover advance` again")
    return Generations(by_role[SIGNING][0], (by_role[NEXT] or [None])[0], (by_role[PREVIOUS] or [None])[0], by_role[RETIRED])


def read_generations(ctx: AppContext) -> Generations:
    with ctx.database().read() as session:
        found = generations(session)
        session.expunge_all()
    return found


def require_home(ctx: AppContext) -> None:
    if not stores.switch_marker(ctx.home).exists():  # a cut switch: only rollover commands may touch the home
        ctx.require_initialised()
    if ctx.home.ca_cert_path.parent.joinpath("root.der").exists():
        raise InputError("rollover of an issuing CA under a root is not built yet",
                         "have the root sign the next issuing CA (`certmgr ca root sign-csr`) and move the fleet by hand")
    if not ctx.home.ca_key_path.exists():
        raise InputError(f"the CA key is not a file in the home ({ctx.home.ca_key_path})",
                         "rollover of a CA key held on a PKCS#11 token is not built yet")


def issuer_of(ctx: AppContext, row: db.Authority, passphrase: bytes) -> ca.Issuer:
    """A non-signing generation's issuer, its key read by setup's `_ca_key` from the generation folder."""
    from .setup import _ca_key

    files = stores.generation_files(ctx.home, row.generation)
    cert = pki.parse_certificate(row.certificate_der)
    key = _ca_key(files, ctx.settings, passphrase, None) if files.ca_key_path.exists() else None
    if key is None or not ca.key_matches_certificate(key, cert.public_key()):
        raise OperationFailed(f"the key of CA generation G{row.generation} is missing or does not match in {files.root}",
                              "restore the generation folder from a backup")
    return ca.Issuer(cert, key)


def audit(ctx: AppContext, action: str, **details) -> None:
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action=action, target=None, **details)


# start --------------------------------------------------------------------------------------------


def start(ctx: AppContext, passphrase: bytes | None = None) -> dict:
    require_home(ctx)
    passphrase = passphrase if passphrase is not None else read_passphrase(ctx.passphrase_file)
    gens = read_generations(ctx)
    if gens.phase == ADVANCED:
        raise InputError("the rollover is past start (the new CA signs already)", "run `certmgr ca rollover finish`")
    current = ctx.issuer(passphrase=passphrase)  # proves the passphrase before anything is written
    with exclusive(ctx.home.lock_path, "certmgr ca rollover start"):
        from .recovery import recover

        recover(ctx)
        new_row, new_issuer = _next_generation(ctx, gens, current, passphrase)
        now = ctx.now()
        with ctx.database().read() as session:
            crl_row = queries.latest_crl(session, new_row.id)
        if crl_row is None:
            crl_row = sign_crl(ctx, new_issuer, now, authority_id=new_row.id)
        publications = stores.distribute(ctx, new_issuer.certificate, crl_row, current.certificate, now)
        from .rollover_push import distribute_to_push_servers

        pushed = distribute_to_push_servers(ctx, new_issuer.certificate, crl_row.der)
        stores.probe_identity(ctx, stores.generation_files(ctx.home, new_row.generation), new_issuer, now)
        audit(ctx, "ca.rollover.start", new_ca=new_row.thumbprint, generation=new_row.generation,
               stores=len(publications), errors=[p.store for p in publications if p.status == "error"],
               push_servers=[r["app_uri"] for r in pushed if r["ok"]])
    result = status(ctx, probe=False)
    result["stores"] = [p.as_dict() for p in publications]
    result["push_servers"] = pushed
    return result


def _next_generation(ctx: AppContext, gens: Generations, current: ca.Issuer, passphrase: bytes):
    """The next generation's files and row: those a killed start left, or new ones. Files first (setup's
    `_ca_material` resumes a key and certificate already written), the row last."""
    from .setup import InitOptions, _ca_material

    signing = gens.signing
    stores.archive_signing_files(ctx.home, stores.generation_files(ctx.home, signing.generation))
    if gens.next is not None:
        return gens.next, issuer_of(ctx, gens.next, passphrase)
    number = max([signing.generation] + [r.generation for r in gens.retired]) + 1
    files = stores.generation_files(ctx.home, number)
    files.prepare()
    subject = _next_subject(current.certificate)
    shim = SimpleNamespace(home=files, settings=ctx.settings)  # setup's helpers read only these two
    key_size = current.certificate.public_key().key_size  # the same profile as the current CA
    ctx.settings.ca.key_size = key_size
    cert, _ = _ca_material(shim, ctx.settings, subject, passphrase, _fresh_ca_key(key_size), ctx.now(), InitOptions())
    issuer = issuer_of(ctx, SimpleNamespace(generation=number, certificate_der=cert.public_bytes(serialization.Encoding.DER)),
                        passphrase)
    now = ctx.now()
    with ctx.database().write() as session:
        row = db.Authority(name=subject.common_name, subject=cert.subject.rfc4514_string(), thumbprint=pki.thumbprint(cert),
                           certificate_der=cert.public_bytes(serialization.Encoding.DER), key_path=str(files.ca_key_path),
                           next_crl_number=1, crl_days=signing.crl_days, not_after=cert.not_valid_after_utc, created_at=now,
                           generation=number, role=NEXT)
        session.add(row)
        queries.add_audit(session, at=now, actor=ctx.actor, action="ca.create", target=subject.common_name,
                          thumbprint=row.thumbprint, generation=number)
        session.flush()
        session.expunge(row)
    return row, issuer


def _next_subject(cert) -> ca.SubjectFields:
    def attr(oid):
        values = cert.subject.get_attributes_for_oid(oid)
        return values[0].value if values else None

    fields = ca.SubjectFields(common_name=attr(pki_oid("COMMON_NAME")), organization=attr(pki_oid("ORGANIZATION_NAME")))
    try:
        return ca.next_generation_subject(fields)
    except ca.ProfileError as exc:
        raise InputError(str(exc)) from None


def pki_oid(name: str):
    from cryptography.x509.oid import NameOID

    return getattr(NameOID, name)


# status -------------------------------------------------------------------------------------------


def status(ctx: AppContext, *, probe: bool = True) -> dict:
    require_home(ctx)
    gens = read_generations(ctx)
    now = ctx.now()
    old, new = gens.old, gens.new
    with ctx.database().read() as session:
        counts = dict(session.execute(
            select(db.Certificate.authority_id, func.count()).join(db.Application)
            .where(db.Certificate.status == db.CertStatus.ACTIVE, db.Application.internal.is_(False))
            .group_by(db.Certificate.authority_id)).all())
    result = {
        "phase": gens.phase,
        "old_ca": old.thumbprint if old is not None and old is not new else None,
        "new_ca": new.thumbprint if new is not None else None,
        "old_subject": old.subject if old is not None and old is not new else None,
        "new_subject": new.subject if new is not None else None,
        "applications": {"old_ca": counts.get(old.id, 0) if old is not None and old is not new else 0,
                         "new_ca": counts.get(new.id, 0) if new is not None else 0},
        "blocking": [], "unreached": [], "probes": [],
    }
    if gens.phase == STARTED:
        _advance_blockers(ctx, gens, result, now, probe)
    elif gens.phase == ADVANCED:
        result["blocking"] = _finish_blockers(ctx, gens.previous, now)
    return result


def _advance_blockers(ctx: AppContext, gens: Generations, result: dict, now: datetime, probe: bool) -> None:
    new = gens.next
    cert = pki.parse_certificate(new.certificate_der)
    with ctx.database().read() as session:
        crl_row = queries.latest_crl(session, new.id)
    result["blocking"] += stores.stores_lacking(ctx, cert, crl_row.number if crl_row else 1, now)
    result["unreached"] += _unreachable_places(ctx)
    if not probe:
        return
    from .probe import probe_targets

    targets = probe_targets(ctx, all_=True, app_uri=None, peer=None)
    if not targets:
        return
    import asyncio

    from ..opcua.probe import probe_many
    from .peers import peer_settings

    files = stores.generation_files(ctx.home, new.generation)
    identity = stores.probe_identity(ctx, files, issuer_of(ctx, new, read_passphrase(ctx.passphrase_file)), now)
    settings = peer_settings(ctx)
    outcomes = asyncio.run(probe_many(targets, identity, [], None, concurrency=settings.probe_concurrency, timeout=settings.timeout))
    for outcome in outcomes:
        result["probes"].append({"endpoint": outcome.endpoint, "trusts_new_ca": outcome.trusts_ca, "statuses": outcome.statuses})
        if outcome.trusts_ca is None:
            result["blocking"].append(f"endpoint {outcome.endpoint}: did not answer the probe (start it, or remove its endpoint)")
        elif not outcome.trusts_ca:
            result["blocking"].append(f"endpoint {outcome.endpoint}: refuses a certificate of the new CA ({', '.join(outcome.statuses)}); "
                                      "reload the server (or push its TrustList), then check again")


def _unreachable_places(ctx: AppContext) -> list[str]:
    """Places certmgr cannot write: exported bundles and push servers' TrustLists (probed through the endpoint)."""
    from .peers import BUNDLE

    with ctx.database().read() as session:
        bundles = session.execute(select(db.Peer.store_path, db.Peer.name).where(db.Peer.layout == BUNDLE)).all()
        pushed = session.execute(select(db.Application.app_uri, db.Application.endpoint)
                                 .where(db.Application.deploy == "push")).all()
        endpoint_peers = session.execute(select(db.Peer.endpoint, db.Peer.name)
                                         .where(db.Peer.endpoint.is_not(None), db.Peer.store_path.is_(None))).all()
    lines = [f"exported bundle {folder} for {name}: add the new CA certificate (ca/generations/*/ca.der) and its CRL; "
             "the server's administrator copies them" for folder, name in bundles]
    lines += [f"push server {endpoint} ({uri}): certmgr writes the new CA into its TrustList (start) and reads it back; "
              "only the probe of its endpoint shows that the server uses it" for uri, endpoint in pushed]
    lines += [f"peer {name} ({endpoint}): certmgr holds no store of it: its administrator adds the new CA and CRL"
              for endpoint, name in endpoint_peers]
    return lines


def _finish_blockers(ctx: AppContext, previous: db.Authority, now: datetime) -> list[str]:
    with ctx.database().read() as session:
        rows = session.execute(
            select(db.Application.app_uri, db.Certificate.status).join(db.Application)
            .where(db.Certificate.authority_id == previous.id, db.Certificate.not_after > now,
                   db.Certificate.status.in_((db.CertStatus.ACTIVE, db.CertStatus.PENDING)))
            .order_by(db.Application.app_uri)).all()
    return [f"application {uri}: its {state.value} certificate is signed by the old CA "
            f"(`certmgr renew --app-uri {uri} --force`, or revoke it)" for uri, state in rows]


# advance ------------------------------------------------------------------------------------------


def advance(ctx: AppContext, *, check: bool = True, progress=None) -> dict:
    """The new generation becomes the signing CA; every application is re-issued under it (renewal pipeline)."""
    require_home(ctx)
    gens = read_generations(ctx)
    if gens.phase in (NONE, FINISHED) and not stores.switch_marker(ctx.home).exists():
        raise InputError("no rollover is in progress", "start one with `certmgr ca rollover start`")
    if gens.phase == STARTED:
        if check:
            blocking = status(ctx)["blocking"]
            if blocking:
                more = f" (and {len(blocking) - 1} more; see `certmgr ca rollover status`)" if len(blocking) > 1 else ""
                raise OperationFailed(f"advance is blocked: {blocking[0]}{more}", "fix what blocks, then run advance again")
        switch_signing(ctx, gens)
    elif stores.switch_marker(ctx.home).exists():
        switch_signing(ctx, gens)  # the database switched, the files may not have
    results = reissue(ctx, progress=progress)
    audit(ctx, "ca.rollover.advance", renewed=sum(r.outcome == "renewed" for r in results),
           failed=[r.app_uri for r in results if r.outcome == "failed"])
    result = status(ctx, probe=False)
    result["renewals"] = [r.as_dict() for r in results]
    return result


def switch_signing(ctx: AppContext, gens: Generations) -> None:
    """Marker, files, database row, marker gone: each step repeatable, so a kill anywhere is finished by a re-run."""
    marker = stores.switch_marker(ctx.home)
    with exclusive(ctx.home.lock_path, "certmgr ca rollover advance"):
        pki.atomic_write(marker, b"certmgr ca rollover advance is switching the signing CA; run it again to finish\n", 0o600)
        target = gens.next if gens.next is not None else gens.signing
        old = gens.signing if gens.next is not None else gens.previous
        stores.install_signing_files(ctx.home, stores.generation_files(ctx.home, target.generation))
        if gens.next is not None:
            with ctx.database().write() as session:
                old_row, new_row = session.get(db.Authority, old.id), session.get(db.Authority, target.id)
                old_row.role, old_row.key_path = PREVIOUS, str(stores.generation_files(ctx.home, old.generation).ca_key_path)
                new_row.role, new_row.key_path = SIGNING, str(ctx.home.ca_key_path)
                queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="ca.rollover.switch", target=new_row.name,
                                  thumbprint=new_row.thumbprint, previous=old_row.thumbprint)
        ctx._issuer = None  # this process read the previous CA's files: the next signature uses the new ones
        marker.unlink(missing_ok=True)


def reissue(ctx: AppContext, *, progress=None) -> list:
    """Every application whose active certificate the signing CA did not sign, through `renew --force`."""
    from .renewal import RenewOptions, renew

    with ctx.database().read() as session:
        signing = queries.authority(session)
        rows = session.execute(
            select(db.Application.app_uri, db.Application.internal, db.Application.store_path).join(db.Certificate)
            .where(db.Certificate.status == db.CertStatus.ACTIVE, db.Certificate.authority_id != signing.id,
                   (db.Application.store_path.is_not(None)) | (db.Application.deploy == "push"))
            .order_by(db.Application.app_uri)).all()
    own_verifier = str(ctx.home.verifier_store)
    uris = tuple(uri for uri, internal, store in rows if not internal or store == own_verifier)
    if not uris:
        return []
    return renew(ctx, RenewOptions(app_uris=uris, force=True), progress=progress)


# finish -------------------------------------------------------------------------------------------


def finish(ctx: AppContext, *, force: bool = False) -> dict:
    """The previous generation out of every store; its last CRL kept in its folder; the generation retired."""
    require_home(ctx)
    gens = read_generations(ctx)
    if gens.phase != ADVANCED:
        raise InputError(f"the rollover is {gens.phase}, not advanced", "run `certmgr ca rollover advance` first"
                         if gens.phase == STARTED else "nothing to finish: see `certmgr ca rollover status`")
    previous = gens.previous
    if not force:
        blocking = _finish_blockers(ctx, previous, ctx.now())
        if blocking:
            raise OperationFailed(f"finish is blocked: {blocking[0]}" + (f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""),
                                  "re-issue or revoke those certificates, then run finish again")
    removals = retire(ctx, previous)
    result = status(ctx, probe=False)
    result["removed"] = [{"store": r.store, "removed": r.removed, "error": r.error} for r in removals]
    return result


def retire(ctx: AppContext, previous: db.Authority) -> list:
    files = stores.generation_files(ctx.home, previous.generation)
    cert = pki.parse_certificate(previous.certificate_der)
    with exclusive(ctx.home.lock_path, "certmgr ca rollover finish"):
        removals = stores.remove_generation(ctx, cert)
        with ctx.database().read() as session:
            last = queries.latest_crl(session, previous.id)
        if last is not None and not files.last_crl_path.exists():
            pki.atomic_write(files.last_crl_path, last.der, pki.CERT_MODE)
        destroy_secret(files.ca_key_path)  # a retired CA signs nothing again; its key has no use left
        destroy_secret(files.probe_key_path)  # nor does its probe identity prove anything any more
        sweep_destroyed(files.ca_key_path.parent)  # a destruction a kill cut short
        with ctx.database().write() as session:
            row = session.get(db.Authority, previous.id)
            row.role, row.retired_at = RETIRED, ctx.now()
            queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="ca.rollover.finish", target=row.name,
                              thumbprint=row.thumbprint, stores=len(removals), errors=[r.store for r in removals if r.error])
    return removals


def republish_generation_crls(ctx: AppContext, now: datetime, *, only: set[int] | None = None, force: bool = False) -> list:
    """Re-sign and publish the CRL of each trusted non-signing generation that needs it (`crl refresh`, and a
    revocation of a certificate of that generation)."""
    from .crl_refresh import needs_resign

    gens = read_generations(ctx)
    rows = [r for r in (gens.next, gens.previous) if r is not None and (only is None or r.id in only)]
    done = []
    for row in rows:
        with ctx.database().read() as session:
            latest = queries.latest_crl(session, row.id)
        if latest is not None and not force and not needs_resign(ctx, latest, now):
            continue
        issuer = issuer_of(ctx, row, read_passphrase(ctx.passphrase_file))
        crl_row = sign_crl(ctx, issuer, now, authority_id=row.id)
        stores.publish_generation_crl(ctx, crl_row, issuer.certificate, now)
        done.append(crl_row.number)
    return done
