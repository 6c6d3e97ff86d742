"""CA generations on disk, and what each store certmgr writes holds of them (used by services/rollover.py).

Every generation keeps its files in ``<home>/ca/generations/G<n>/``:

    ca.der, ca.pem           the generation's CA certificate
    private/ca-key.pem       its key, encrypted with the CA passphrase and the current KDF (0600, folder 0700)
    probe.der, probe.pem     a short-lived identity signed by that CA: the fleet probe proves with it that a live
                             endpoint accepts certificates of the generation (never an application's identity)
    last.crl                 the CRL it signed last (written when it is retired)

``ca/ca.der`` and ``ca/private/ca-key.pem`` stay the *signing* CA's, as every other command reads them; at
``advance`` they are overwritten with the next generation's files (the previous generation's are kept in its own
folder since ``start``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import ca
import db
import pki
from pki import CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, atomic_write, ensure_dir

from ..context import AppContext
from ..home import Home
from .publishing import StorePublication, StoreTarget, record_publications, registered_stores

PROBE_DAYS = 30


@dataclass(frozen=True)
class GenerationFiles:
    """Shaped like Home where setup's CA helpers look (``ca_cert_path``, ``ca_key_path``): `_ca_key` and
    `_ca_material` create or resume a generation's key and certificate exactly as `init` does the first."""

    root: Path

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca.der"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "private" / "ca-key.pem"

    @property
    def probe_cert_path(self) -> Path:
        return self.root / "probe.der"

    @property
    def probe_key_path(self) -> Path:
        return self.root / "private" / "probe-key.pem"

    @property
    def last_crl_path(self) -> Path:
        return self.root / "last.crl"

    def prepare(self) -> None:
        ensure_dir(self.root, 0o755)
        ensure_dir(self.ca_key_path.parent, PRIVATE_DIR_MODE)


def generation_files(home: Home, number: int) -> GenerationFiles:
    return GenerationFiles(home.ca_cert_path.parent / "generations" / f"G{number}")


def switch_marker(home: Home) -> Path:
    """Exists while `advance` swaps the signing CA's files and database row: other commands refuse the home."""
    return home.ca_cert_path.parent / "rollover.switching"


def archive_signing_files(home: Home, files: GenerationFiles) -> None:
    """The signing CA's certificate and (still encrypted) key copied into its generation folder, byte for byte."""
    files.prepare()
    for source, target, mode in ((home.ca_cert_path, files.ca_cert_path, CERT_MODE), (home.ca_key_path, files.ca_key_path, KEY_MODE)):
        data = source.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            atomic_write(target, data, mode)
    pem = pki.parse_certificate(files.ca_cert_path.read_bytes()).public_bytes(serialization.Encoding.PEM)
    if not files.ca_cert_path.with_suffix(".pem").exists():
        atomic_write(files.ca_cert_path.with_suffix(".pem"), pem, CERT_MODE)


def install_signing_files(home: Home, files: GenerationFiles) -> None:
    """The generation's files become the signing CA's (``ca/ca.der``, its key, ``ca/ca.pem``); key first. Each
    write is atomic and repeatable, and the switch marker keeps other commands out until all are written."""
    for source, target, mode in ((files.ca_key_path, home.ca_key_path, KEY_MODE), (files.ca_cert_path, home.ca_cert_path, CERT_MODE)):
        data = source.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            atomic_write(target, data, mode)
    pem = pki.parse_certificate(files.ca_cert_path.read_bytes()).public_bytes(serialization.Encoding.PEM)
    pem_path = home.ca_cert_path.with_suffix(".pem")
    if not pem_path.exists() or pem_path.read_bytes() != pem:
        atomic_write(pem_path, pem, CERT_MODE)


def probe_identity(ctx: AppContext, files: GenerationFiles, issuer: ca.Issuer, now: datetime):
    """An Identity signed by the generation ``issuer`` (created or renewed when it has less than a day left)."""
    from ..opcua.channel import Identity

    cert = key = None
    if files.probe_cert_path.exists() and files.probe_key_path.exists():
        cert = pki.parse_certificate(files.probe_cert_path.read_bytes())
        key = ca.load_private_key_pem(files.probe_key_path.read_bytes())
        if cert.not_valid_after_utc - now < timedelta(days=1) or not pki.cert_signed_by(cert, issuer.certificate):
            cert = None
    uri = f"urn:certmgr:rollover-probe:{pki.thumbprint(issuer.certificate)[:16].lower()}"
    if cert is None:
        key = ca.generate_rsa_key(2048)
        identity = ca.ApplicationIdentity(uri, ca.SubjectFields(f"certmgr rollover probe {pki.thumbprint(issuer.certificate)[:8]}"))
        cert = ca.build_application_certificate(identity, key.public_key(), issuer, now=now, days=PROBE_DAYS)
        files.prepare()
        atomic_write(files.probe_key_path, ca.private_key_pem(key), KEY_MODE)
        atomic_write(files.probe_cert_path, cert.public_bytes(serialization.Encoding.DER), CERT_MODE)
    return Identity(uri, cert, key, None)


# stores -------------------------------------------------------------------------------------------


def all_store_targets(ctx: AppContext) -> list[StoreTarget]:
    """Every store certmgr writes: the registered applications' (its verifier's included) and peer stores."""
    from .fleet import peer_store_targets

    return registered_stores(ctx) + peer_store_targets(ctx)


def _kinds_beside(store: pki.ApplicationStore, old_cert: x509.Certificate) -> list[str]:
    """Where the new generation goes: every part holding the old one (trusted, and issuer(s) where a layout
    keeps the CA there too), trusted when the store holds neither."""
    return [k for k in (pki.TRUSTED, pki.ISSUER) if store.holds_certificate(old_cert, k)] or [pki.TRUSTED]


def distribute(ctx: AppContext, new_cert: x509.Certificate, crl_row: db.Crl, old_cert: x509.Certificate,
               now: datetime) -> list[StorePublication]:
    """The new generation's certificate and CRL in every store, beside the old CA (repeatable)."""
    publications = []
    for target in all_store_targets(ctx):
        store = target.store()
        if not store.root.is_dir():
            publications.append(StorePublication(target.path, "error", message="store folder is missing"))
            continue
        try:
            for kind in _kinds_beside(store, old_cert):
                store.add_certificate(new_cert, kind)
            results = store.publish_crl_where_held(crl_row.der, new_cert, crl_row.number)
        except (OSError, pki.StoreError) as exc:
            publications.append(StorePublication(target.path, "error", message=str(exc)))
            continue
        publications.append(StorePublication(target.path, "published", [k for k, r in results.items() if not r.newer_present]))
    record_publications(ctx, crl_row, publications, now)
    return publications


def install_generations(ctx: AppContext, store: pki.ApplicationStore, signing_cert: x509.Certificate) -> None:
    """A store certmgr starts writing during a rollover (a new `issue`) gets the other trusted generation too."""
    from db import queries

    with ctx.database().read() as session:
        others = list(session.scalars(select(db.Authority).where(db.Authority.role.in_(("next", "previous")))))
        found = [(pki.parse_certificate(a.certificate_der), queries.latest_crl(session, a.id)) for a in others]
    for cert, crl_row in found:
        for kind in _kinds_beside(store, signing_cert):
            store.add_certificate(cert, kind)
        if crl_row is not None:
            store.publish_crl_where_held(crl_row.der, cert, crl_row.number)


def publish_generation_crl(ctx: AppContext, crl_row: db.Crl, cert: x509.Certificate, now: datetime) -> list[StorePublication]:
    """A new CRL of a non-signing generation into every store that holds that generation."""
    from .publishing import publish_to_store

    publications = [publish_to_store(t, crl_row.der, cert, crl_row.number) for t in all_store_targets(ctx)]
    record_publications(ctx, crl_row, publications, now)
    return publications


@dataclass
class Removal:
    store: str
    removed: list[str] = field(default_factory=list)
    error: str | None = None


def remove_generation(ctx: AppContext, old_cert: x509.Certificate) -> list[Removal]:
    """The generation's certificate and its CRL files out of every store certmgr writes (repeatable)."""
    der = old_cert.public_bytes(serialization.Encoding.DER)
    removals = []
    for target in all_store_targets(ctx):
        store, removal = target.store(), Removal(target.path)
        removals.append(removal)
        if not store.root.is_dir():
            removal.error = "store folder is missing"
            continue
        try:
            for kind in (pki.TRUSTED, pki.ISSUER):
                for loaded in store.certificates(kind):
                    if loaded.value is not None and loaded.value.public_bytes(serialization.Encoding.DER) == der:
                        store.move_certificate(loaded.path, der, None)
                        removal.removed.append(str(loaded.path))
                for path in store.ca_crl_files(old_cert, kind):
                    store.remove_crl_file(path)
                    removal.removed.append(str(path))
        except (OSError, pki.StoreError) as exc:
            removal.error = str(exc)
    return removals


def stores_lacking(ctx: AppContext, cert: x509.Certificate, crl_number: int, now: datetime) -> list[str]:
    """One line per store that does not hold ``cert`` with a current CRL of it (number >= ``crl_number``)."""
    lines = []
    for target in all_store_targets(ctx):
        store = target.store()
        if not store.root.is_dir():
            lines.append(f"store {target.path}: folder is missing")
            continue
        kinds = [k for k in (pki.TRUSTED, pki.ISSUER) if store.holds_certificate(cert, k)]
        if not kinds:
            lines.append(f"store {target.path}: lacks the new CA (run `certmgr ca rollover start` again)")
            continue
        for kind in kinds:
            newest = store.newest_ca_crl_file(cert, kind)
            crl = pki.parse_crl(newest.read_bytes()) if newest is not None else None
            if crl is None or (pki.crl_number(crl) or 0) < crl_number or not (crl.next_update_utc and now < crl.next_update_utc):
                lines.append(f"store {target.path}: no current CRL of the new CA in {kind} (run `certmgr crl refresh`)")
    return lines


def stores_holding(ctx: AppContext, cert: x509.Certificate) -> list[str]:
    return [t.path for t in all_store_targets(ctx) if t.store().root.is_dir()
            and any(t.store().holds_certificate(cert, k) for k in (pki.TRUSTED, pki.ISSUER))]
