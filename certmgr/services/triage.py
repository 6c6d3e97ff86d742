"""Trust triage: move certificates between rejected, trusted and issuer folders; import certificates.

Every change is audited when the certmgr home is initialised, and every move re-checks that the file is
still the certificate the operator was shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .store_inspect import describe

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


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def import_certificate(
    ctx: AppContext, store: pki.ApplicationStore, path: Path, kind: str, crl_path: Path | None, warn: Callable[[str], None]
) -> dict:
    """Add a certificate (or CA with its CRL) to trusted/ or issuer(s)/ of a store."""
    cert = read_certificate_file(path)
    result = {"store": str(store.root), "certificate": describe(cert), "part": KIND_LABELS[kind], "crl": None}
    crl_der, number = None, None
    if crl_path is not None:
        try:
            crl = pki.parse_crl(Path(crl_path).read_bytes())
        except (OSError, ValueError):
            raise InputError(f"{crl_path} is not a readable CRL", "give the CRL the CA publishes") from None
        if crl.issuer != cert.subject or not crl.is_signature_valid(cert.public_key()):
            raise InputError(f"the CRL {crl_path} was not signed by {cert.subject.rfc4514_string()}", "give that CA's CRL")
        now = ctx.now()
        if crl.next_update_utc is None or crl.next_update_utc <= now or crl.last_update_utc > now:
            raise InputError(f"the CRL {crl_path} is not current (valid {crl.last_update_utc:%Y-%m-%d %H:%M} to "
                             f"{crl.next_update_utc:%Y-%m-%d %H:%M} UTC)" if crl.next_update_utc else f"the CRL {crl_path} has no nextUpdate",
                             "get a fresh CRL from the CA, and check this host's clock")
        crl_der, number = crl.public_bytes(serialization.Encoding.DER), ca.crl_number(crl)
    elif is_ca(cert):
        warn(
            f"{cert.subject.rfc4514_string()} is a CA and no CRL was given: OPC UA stacks will refuse every peer it issued "
            "with BadCertificateRevocationUnknown until its CRL is in the store (certmgr crl import FILE --store DIR)"
        )
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
