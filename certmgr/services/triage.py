"""Trust triage: move certificates between rejected, trusted and issuer folders; import certificates.

Every change is audited when the certmgr home is initialised, and every move re-checks that the file is
still the certificate the operator was shown.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .store_inspect import describe, issuer_held

MIN_PREFIX = 8
KIND_LABELS = {pki.REJECTED: "rejected", pki.TRUSTED: "trusted", pki.ISSUER: "issuer"}


@dataclass
class Match:
    kind: str
    path: Path
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def details(self) -> dict:
        return {**describe(self.certificate), "file": str(self.path), "part": KIND_LABELS[self.kind]}


def find_file(store: pki.ApplicationStore, name: str, kinds: tuple[str, ...]) -> Path | None:
    """A file named ``name`` in one of the folders of ``kinds`` (or its path relative to the store root,
    e.g. ``trusted/certs/x.der``), readable or not; None when ``name`` names no such file. Never a path
    outside those folders: a name with a separator must resolve to a file directly inside one of them."""
    candidates = []
    for folder in map(store.folder_of, kinds):
        if "/" in name:
            candidate = store.root / name
            if candidate.parent != folder:
                continue
        else:
            candidate = folder / name
        if candidate.is_file() and not candidate.is_symlink():
            candidates.append(candidate)
    return candidates[0] if candidates else None


def find(store: pki.ApplicationStore, prefix: str, kinds: tuple[str, ...]) -> Match:
    """The one certificate in ``kinds`` whose thumbprint starts with ``prefix`` (8+ hex digits)."""
    cleaned = prefix.replace(":", "").replace(" ", "").upper()
    if len(cleaned) < MIN_PREFIX or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise InputError(f"{prefix!r} is not a thumbprint prefix", f"give at least {MIN_PREFIX} hex digits of the SHA-1 thumbprint")
    matches = [
        Match(kind, loaded.path, loaded.value)
        for kind in kinds
        for loaded in (store.rejected() if kind == pki.REJECTED else store.certificates(kind))
        if loaded.value is not None and pki.thumbprint(loaded.value).startswith(cleaned)
    ]
    where = " or ".join(KIND_LABELS[k] for k in kinds)
    if not matches:
        raise InputError(f"no {where} certificate in {store.root} has a thumbprint starting with {cleaned}", "see `certmgr store status`")
    if len({pki.thumbprint(m.certificate) for m in matches}) > 1:
        listed = ", ".join(sorted({pki.thumbprint(m.certificate) for m in matches}))
        raise InputError(f"thumbprint prefix {cleaned} is ambiguous ({listed})", "give more digits")
    return matches[0]


def remove_file(ctx: AppContext, store: pki.ApplicationStore, path: Path) -> None:
    """Delete one file from a certificate folder (an unreadable file that breaks a stack), audited."""
    try:
        path.unlink()
    except FileNotFoundError:
        raise OperationFailed(f"{path} is gone; list the store again") from None
    audit(ctx, "store.remove", store, source=str(path), destination=None, file=path.name)


def revoked_by_certmgr(ctx: AppContext, cert: x509.Certificate):
    """The database row of ``cert`` when certmgr's CA issued and revoked it, else None."""
    from sqlalchemy import select

    import db

    with ctx.database().read() as session:
        row = session.scalars(select(db.Certificate).where(db.Certificate.thumbprint == pki.thumbprint(cert))).first()
        if row is None or row.revoked_at is None:  # revoked, or failed (revoked too: it never went live)
            return None
        session.expunge(row)
        return row


def refuse_revoked(ctx: AppContext, cert: x509.Certificate) -> None:
    """InputError when certmgr's CA revoked ``cert``: trusting it would undo the revocation (`store trust`, the
    console's approvals, and trusting on a push server's TrustList all refuse it)."""
    revoked = revoked_by_certmgr(ctx, cert)
    if revoked is not None:
        when = f"{revoked.revoked_at:%Y-%m-%d %H:%M} UTC" if revoked.revoked_at else "an unknown date"
        raise InputError(
            f"{cert.subject.rfc4514_string()} ({pki.thumbprint(cert)}) was revoked by certmgr's CA on {when} "
            f"(reason: {revoked.revocation_reason or 'unspecified'}); trusting it would undo the revocation",
            "keep it out of trusted/; give that application a new certificate (certmgr renew --app-uri URI --force)",
        )


def check_before_trust(ctx: AppContext, store: pki.ApplicationStore, cert: x509.Certificate, warn: Callable[[str], None]) -> None:
    """Refuse a certificate certmgr's CA revoked; warn when the store cannot build or check its chain."""
    refuse_revoked(ctx, cert)
    if cert.issuer == cert.subject:
        return
    issuer = issuer_held(store, cert)
    ours = _certmgr_ca_and_crl(ctx, cert)
    name = cert.issuer.rfc4514_string()
    root = shlex.quote(str(store.root))
    if ours is not None:  # certmgr's own CA: the exact files are known
        crl = shlex.quote(str(ours[1])) if ours[1] else "CA-CRL-FILE"
        fix = f"certmgr store import {root} {shlex.quote(str(ours[0]))} --trusted --crl {crl}"
    elif issuer is None:
        fix = f"certmgr store import {root} ISSUER-CA.der --issuer --crl ISSUER-CA.crl"
    else:
        fix = f"certmgr crl import ISSUER-CA.crl --store {root}"
    if issuer is None:
        warn(f"{cert.subject.rfc4514_string()} is signed by {name}, which this store does not hold: stacks refuse it "
             f"(BadCertificateChainIncomplete) until the CA and its CRL are there: {fix}")
        return
    states = [s for s in pki.audit_crls(store).cas if s.ca_cert == issuer]
    if not any(s.status(ctx.now()) == pki.OK for s in states):
        warn(f"this store holds the issuer {name} but no current CRL of it: stacks refuse its certificates "
             f"(BadCertificateRevocationUnknown) until one is there: {fix}")


def _certmgr_ca_and_crl(ctx: AppContext, cert: x509.Certificate) -> tuple[Path, Path | None] | None:
    """(certmgr's CA certificate file, its current CRL file in the verifier store) when certmgr's CA
    issued ``cert``; None for any other issuer."""
    try:
        ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return None
    return ctx.home.ca_cert_path, pki.ApplicationStore(ctx.home.verifier_store).newest_ca_crl_file(ca_cert)


def move(ctx: AppContext, store: pki.ApplicationStore, match: Match, to_kind: str | None, action: str) -> Path | None:
    try:
        target = store.move_certificate(match.path, match.der, to_kind)
    except pki.StoreError as exc:
        raise OperationFailed(str(exc)) from None
    audit(ctx, action, store, thumbprint=pki.thumbprint(match.certificate), subject=match.certificate.subject.rfc4514_string(),
          source=str(match.path), destination=str(target) if target else None)
    return target


def audit(ctx: AppContext, action: str, store: pki.ApplicationStore, **details) -> None:
    """Every change to a store is audited: the commands that call this require an initialised home."""
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action=action, target=str(store.root), **details)


def read_certificate_file(path: Path) -> x509.Certificate:
    try:
        return pki.parse_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check the path") from None
    except ValueError:
        raise InputError(f"{path} is not a certificate (PEM or DER)", "give the certificate file") from None


def import_certificate(
    ctx: AppContext, store: pki.ApplicationStore, path: Path, kind: str, crl_path: Path | None, warn: Callable[[str], None]
) -> dict:
    """Add a certificate (or CA with its CRL) to trusted/ or issuer(s)/ of a store."""
    cert = read_certificate_file(path)
    if pki.is_ca(cert) and cert.issuer == cert.subject:
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature):
            raise InputError(f"{path} is a CA certificate whose self-signature does not verify (damaged or forged)",
                             "get the CA certificate again from its owner and compare its thumbprint") from None
    result = {"store": str(store.root), "certificate": describe(cert), "part": KIND_LABELS[kind], "crl": None}
    crl_der, number = None, None
    if crl_path is not None:
        try:
            crl = pki.parse_crl(Path(crl_path).read_bytes())
        except (OSError, ValueError):
            raise InputError(f"{crl_path} is not a readable CRL", "give the CRL the CA publishes") from None
        if not pki.crl_signed_by(crl, cert):
            raise InputError(f"the CRL {crl_path} was not signed by {cert.subject.rfc4514_string()}", "give that CA's CRL")
        now = ctx.now()
        if crl.next_update_utc is None or crl.next_update_utc <= now or crl.last_update_utc > now:
            raise InputError(f"the CRL {crl_path} is not current (valid {crl.last_update_utc:%Y-%m-%d %H:%M} to "
                             f"{crl.next_update_utc:%Y-%m-%d %H:%M} UTC)" if crl.next_update_utc else f"the CRL {crl_path} has no nextUpdate",
                             "get a fresh CRL from the CA, and check this host's clock")
        crl_der, number = crl.public_bytes(serialization.Encoding.DER), pki.crl_number(crl)
    elif pki.is_ca(cert):
        warn(
            f"{cert.subject.rfc4514_string()} is a CA and no CRL was given: OPC UA stacks will refuse every peer it issued "
            "with BadCertificateRevocationUnknown until its CRL is in the store (certmgr crl import FILE --store DIR)"
        )
    if crl_der is not None:  # refused before anything is written: publishing never rolls a store back
        newer = store.newer_crl_of(cert, number or 0, kind)
        if newer is not None:
            raise InputError(f"the store already holds a newer CRL of this CA ({newer.name})", "import the newest CRL")
    result["file"] = str(store.add_certificate(cert, kind))
    if crl_der is not None:
        published = store.publish_crl(crl_der, cert, number or 0, kind)
        if published.newer_present:
            raise InputError(f"the store already holds a newer CRL of this CA ({published.path.name})", "import the newest CRL")
        result["crl"] = str(published.path)
    audit(ctx, "store.import", store, thumbprint=pki.thumbprint(cert), subject=cert.subject.rfc4514_string(), part=kind, crl=result["crl"])
    from .peers import register_store_peer  # issue 15: a store certmgr does not manage becomes a peer

    result["peer"] = register_store_peer(ctx, store, "store import")
    return result
