"""``certmgr crl refresh`` and ``certmgr crl import``: CRLs that never go stale.

Refresh re-signs certmgr's CRL when less than a third of its validity is left, republishes it, and then
checks every registered store: each CA there must have exactly one CRL it signed, current now, and for
certmgr's own CA the newest number. certmgr repairs its own CA's CRL files and reports the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError
from .ca_chain import load_chain
from .crls import current_crl, sign_crl
from .recovery import recover
from .publishing import (
    ERROR,
    PUBLISHED,
    SKIPPED,
    UNCHANGED,
    StorePublication,
    StoreTarget,
    record_publications,
    registered_stores,
)


def needs_resign(ctx: AppContext, crl_row: db.Crl, now: datetime) -> bool:
    """Re-sign when a third of the validity is left, or when a revocation is not on the CRL yet (a revoke
    interrupted between its commit and its CRL)."""
    lifetime = crl_row.next_update - crl_row.this_update
    if crl_row.next_update - now < lifetime / 3:
        return True
    with ctx.database().read() as session:
        return queries.revoked_since(session, crl_row.authority_id, crl_row.this_update)


@dataclass
class StoreCheck:
    store: str
    problems: list[str] = field(default_factory=list)  # not repaired: exit 1
    repaired: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"store": self.store, "ok": not self.problems, "problems": self.problems, "repaired": self.repaired, "warnings": self.warnings}


@dataclass
class RefreshReport:
    crl_number: int
    next_update: datetime
    resigned: bool
    publications: list[StorePublication] = field(default_factory=list)
    checks: list[StoreCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not c.problems for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "crl_number": self.crl_number,
            "next_update": self.next_update.isoformat(),
            "resigned": self.resigned,
            "publications": [p.as_dict() for p in self.publications],
            "stores": [c.as_dict() for c in self.checks],
        }


def _describe(state: pki.CaCrlState, at: datetime) -> str:
    name = state.ca_cert.subject.rfc4514_string()
    status = state.status(at)
    if status == pki.MISSING:
        return f"CA {name} ({state.kind}) has no CRL: peers it issued are refused with BadCertificateRevocationUnknown"
    if status == pki.STALE:
        newest = state.newest()
        return f"CA {name} ({state.kind}): CRL expired at {newest.crl.next_update_utc:%Y-%m-%d %H:%M} UTC"
    if status == pki.NOT_YET_VALID:
        return f"CA {name} ({state.kind}): CRL is not valid yet (thisUpdate in the future; check clocks)"
    return f"CA {name} ({state.kind}) has {len(state.valid)} CRL files; keep exactly one"


def check_store(target: StoreTarget, our_ca: x509.Certificate, crl_row: db.Crl, at: datetime,
                chain=None) -> tuple[StoreCheck, StorePublication]:
    """Check one store's CRLs; bring certmgr's CRL up to date there and repair it if it is broken. With a
    ``chain`` (services/ca_chain.py) the root's CRL the home keeps is restored first where it is missing or older."""
    check = StoreCheck(target.path)
    store = target.store()
    if not store.root.is_dir():
        check.problems.append("store folder is missing")
        return check, StorePublication(target.path, ERROR, message="store folder is missing")
    if chain is not None:
        _restore_root_crl(store, chain, check)
    our_thumb = pki.thumbprint(our_ca)
    our_prefix = store.layout.crl_name(our_ca, None)[: -len(".crl")]
    vouched = (crl_row.der,)
    audit = pki.audit_crls(store, vouched)
    publication = StorePublication(target.path, UNCHANGED)
    ours_held = False
    for state in audit.cas:
        status = state.status(at)
        if state.thumbprint != our_thumb:
            if status != pki.OK:
                check.problems.append(_describe(state, at) + "; import a current CRL with `certmgr crl import`")
            elif state.forged:
                names = ", ".join(p.name for p in state.forged)
                check.problems.append(f"CRL files {names} name {state.ca_cert.subject.rfc4514_string()} as issuer but it did not sign them")
            continue
        ours_held = True
        publication.kinds.append(state.kind)
        debris = state.forged + [u.path for u in audit.unreadable if u.path.parent == store.crl_dir(state.kind) and u.path.name.startswith(our_prefix)]
        newest = state.newest()
        if status == pki.OK and not debris and (newest.number or 0) >= crl_row.number:
            continue  # current (or newer: another process published after this refresh began)
        if status == pki.OK and not debris:
            problem = None  # a routine update: the store holds our previous, still valid CRL
        elif status != pki.OK:
            problem = _describe(state, at)
        else:
            problem = f"forged, tampered or unreadable CRL files {', '.join(p.name for p in debris)}"
        try:
            for path in debris:  # signed by no CA of this store, or unreadable under our name
                store.remove_crl_file(path)
            result = store.publish_crl(crl_row.der, our_ca, crl_row.number, state.kind)
        except (OSError, pki.StoreError) as exc:
            check.problems.append(f"{problem or 'update'}; writing CRL {crl_row.number} failed: {exc}")
            publication.status = ERROR
            continue
        publication.status = PUBLISHED
        publication.removed += [str(p) for p in result.removed]
        if problem is None:
            continue
        after = next(s for s in pki.audit_crls(store, vouched).cas if s.thumbprint == our_thumb and s.kind == state.kind)
        if after.status(at) == pki.OK and not after.forged:
            check.repaired.append(f"{problem}: replaced with CRL {crl_row.number}")
        else:
            check.problems.append(f"{problem}; still wrong after repair: {_describe(after, at)}")
    if not ours_held:
        check.problems.append(
            "certmgr's CA is in neither trusted/certs nor issuer certs: peers issued by certmgr are refused; "
            "reissue with `certmgr issue --force` or add it with `certmgr store import`"
        )
        publication = StorePublication(target.path, SKIPPED, message="the store does not hold certmgr's CA")
    for loaded in audit.unreadable:
        if not loaded.path.name.startswith(our_prefix):
            check.warnings.append(f"{loaded.path.name}: {loaded.error} (not a CRL; remove it)")
    for path in audit.orphans:
        check.warnings.append(f"{path.name}: CRL of a CA this store does not hold")
    return check, publication


def _restore_root_crl(store: pki.ApplicationStore, chain, check: StoreCheck) -> None:
    """The root is offline, so its CRL cannot be re-signed here; but the home holds the current one (`crl import`
    keeps it), and a store that lost it or holds an older one gets it back: without it stacks refuse the chain."""
    number = chain.root_crl_number
    try:
        results = store.publish_crl_where_held(chain.root_crl_der, chain.root, number)
    except (OSError, pki.StoreError) as exc:
        check.problems.append(f"writing the root's CRL {number} failed: {exc}")
        return
    for kind, result in results.items():
        if result.written:
            check.repaired.append(f"the root's CRL in {kind}/crl was missing or older: replaced with root CRL {number}")


MAX_PEER_CLOCK_SKEW = timedelta(minutes=5)


def _recheck(ctx: AppContext, target: StoreTarget, issuer_cert, check: StoreCheck, publication: StorePublication):
    """Another certmgr process may have signed and published a newer CRL while this refresh ran: its CRL looks "not
    valid yet" against this run's clock, or newer than the one checked against. Before a problem is reported, the
    store is checked again with the newest CRL and the time now; only what is still wrong is reported."""
    latest = current_crl(ctx)
    now = ctx.now()
    # a CRL another node signed a moment ago may carry its clock; minutes of skew are tolerated, days are not
    at = max(now, min(latest.this_update, now + MAX_PEER_CLOCK_SKEW))
    again, publication_again = check_store(target, issuer_cert, latest, at, load_chain(ctx.home))
    if not again.problems:
        again.repaired = check.repaired + again.repaired
        return again, publication_again if publication_again.status != UNCHANGED else publication
    return check, publication


def refresh(ctx: AppContext, *, force: bool = False, now: datetime | None = None) -> RefreshReport:
    now = now or ctx.now()
    recover(ctx, now=now)  # a revocation it makes is caught by needs_resign below
    crl_row = current_crl(ctx)
    resigned = force or needs_resign(ctx, crl_row, now)
    issuer_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    if resigned:
        crl_row = sign_crl(ctx, ctx.issuer(), now)
    report = RefreshReport(crl_row.number, crl_row.next_update, resigned)
    chain = load_chain(ctx.home)
    for target in registered_stores(ctx):
        check, publication = check_store(target, issuer_cert, crl_row, now, chain)
        if check.problems:
            check, publication = _recheck(ctx, target, issuer_cert, check, publication)
        report.checks.append(check)
        report.publications.append(publication)
    record_publications(ctx, crl_row, report.publications, now)
    from .fleet import deliver_crl_to_peer_stores  # issue 15: peer stores holding certmgr's CA get it too

    report.publications += deliver_crl_to_peer_stores(ctx, crl_row, issuer_cert, now).publications
    from .rollover import republish_generation_crls  # a CA rollover: the other trusted generation's CRL stays current

    republish_generation_crls(ctx, now, force=force)
    with ctx.database().write() as session:
        queries.add_audit(
            session, at=now, actor=ctx.actor, action="crl.refresh", target=None, number=crl_row.number, resigned=resigned,
            repaired=sum(len(c.repaired) for c in report.checks), problems=sum(len(c.problems) for c in report.checks),
        )
    return report


# third-party CRLs ---------------------------------------------------------------------------------


@dataclass
class ImportResult:
    store: str
    status: str
    message: str = ""

    def as_dict(self) -> dict:
        return {"store": self.store, "status": self.status, "message": self.message}


def _read_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return pki.parse_crl(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check the path") from None
    except ValueError:
        raise InputError(f"{path} is not a CRL (PEM or DER)", "give the CRL file the CA published") from None


def import_crl(
    ctx: AppContext, path: Path, *, store_dir: Path | None, layout: str | None, all_stores: bool, now: datetime | None = None
) -> list[ImportResult]:
    """Place a third-party CA's CRL in stores that hold that CA, after checking its signature against it."""
    now = now or ctx.now()
    crl = _read_crl(path)
    our_ca = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    if crl.issuer == our_ca.subject:
        raise InputError("this is certmgr's own CA's CRL", "certmgr publishes it itself: run `certmgr crl refresh`")
    if not (crl.last_update_utc <= now and crl.next_update_utc is not None and now < crl.next_update_utc):
        raise InputError(
            f"the CRL is not current (valid {crl.last_update_utc:%Y-%m-%d} to "
            f"{crl.next_update_utc:%Y-%m-%d} UTC)" if crl.next_update_utc else "the CRL has no nextUpdate",
            "get a fresh CRL from its CA",
        )
    from .ca_chain import accept_root_crl
    from .fleet import peer_store_targets

    chain = accept_root_crl(ctx.home, crl)
    if chain is not None and store_dir is None:
        all_stores = True  # the root's CRL goes beside the root, which every store certmgr writes holds
    if all_stores == (store_dir is not None):
        raise InputError("say where the CRL goes", "give --store DIR or --all-stores")
    if store_dir is not None:
        targets = [StoreTarget(str(store_dir), layout or _registered_layout(ctx, store_dir) or "ua-net", ())]
    else:
        targets = registered_stores(ctx)
        if chain is not None:  # and every peer store that was given the root (Part 12 §7.9.6, as for certmgr's own CRL)
            targets += [t for t in peer_store_targets(ctx)
                        if any(t.store().holds_certificate(chain.root, kind) for kind in (pki.TRUSTED, pki.ISSUER))]
    number = pki.crl_number(crl)
    results = []
    for target in targets:
        results.append(_import_into(ctx, target, crl, number, now))
    if not any(r.status == "imported" for r in results):
        reasons = "; ".join(f"{r.store}: {r.message}" for r in results) or "no registered stores"
        raise InputError(f"the CRL was not imported anywhere ({reasons})", "import the CA's certificate first with `certmgr store import`")
    return results


def _registered_layout(ctx: AppContext, store_dir: Path) -> str | None:
    with ctx.database().read() as session:
        return session.scalars(
            select(db.Application.layout).where(db.Application.store_path == str(Path(store_dir).expanduser()))
        ).first()


def _import_into(ctx: AppContext, target: StoreTarget, crl, number: int | None, now: datetime) -> ImportResult:
    store = target.store()
    issuers = [
        (kind, loaded.value)
        for kind in (pki.TRUSTED, pki.ISSUER)
        for loaded in store.certificates(kind)
        if loaded.value is not None and loaded.value.subject == crl.issuer
    ]
    signers = [(kind, cert) for kind, cert in issuers if pki.crl_signed_by(crl, cert)]
    if not signers:
        why = "its signature does not verify with the CA certificate there" if issuers else "the store does not hold its CA"
        return ImportResult(target.path, "refused", why)
    crl_der = crl.public_bytes(serialization.Encoding.DER)
    for kind, cert in signers:
        held = [s.newest() for s in pki.audit_crls(store).cas if s.kind == kind and s.thumbprint == pki.thumbprint(cert)]
        if held and held[0] is not None and (held[0].number or 0) > (number or 0):
            return ImportResult(target.path, "refused", f"the store holds a newer CRL ({held[0].number})")
        store.publish_crl(crl_der, cert, number or 0, kind)
    ca_cert = signers[0][1]
    with ctx.database().write() as session:
        row = session.scalars(
            select(db.ExternalCrl).where(
                db.ExternalCrl.issuer_thumbprint == pki.thumbprint(ca_cert), db.ExternalCrl.store_path == target.path
            )
        ).first()
        if row is None:
            row = db.ExternalCrl(issuer_thumbprint=pki.thumbprint(ca_cert), store_path=target.path)
            session.add(row)
        row.issuer_subject = ca_cert.subject.rfc4514_string()
        row.crl_number = number
        row.this_update = crl.last_update_utc
        row.next_update = crl.next_update_utc
        row.imported_at = now
        queries.add_audit(
            session, at=now, actor=ctx.actor, action="crl.import", target=target.path,
            issuer=row.issuer_subject, number=number, next_update=crl.next_update_utc.isoformat(),
        )
    return ImportResult(target.path, "imported", f"CRL {number} of {ca_cert.subject.rfc4514_string()}, next update {crl.next_update_utc:%Y-%m-%d}")
