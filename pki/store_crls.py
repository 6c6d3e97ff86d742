"""The CRL folders of a store: publishing a CA's CRL under a new name each time, never rolling back,
and finding which files belong to which CA. Mixed into ApplicationStore (pki/store.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from .errors import StoreError
from .files import CERT_MODE, DIR_MODE, PRIVATE_DIR_MODE, atomic_write
from .readers import CRL_SUFFIXES, Loaded, list_files, read_crl_file, read_crls
from .x509_facts import authority_key_id, crl_number, crl_signed_by, subject_key_id

TRUSTED = "trusted"
ISSUER = "issuer"
CRL_LOCK_NAME = "crl.lock"


@dataclass
class PublishResult:
    path: Path
    written: bool
    removed: list[Path] = field(default_factory=list)
    newer_present: bool = False  # the store holds a higher CRL number of this CA; nothing was changed


class CrlFolders:
    """Needs from the store: root, layout, crl_dir(kind), staging_dir, _dir(path, mode), locked(name) and
    holds_certificate."""

    def crls(self, kind: str) -> list[Loaded[x509.CertificateRevocationList]]:
        return read_crls(self.crl_dir(kind))

    def publish_crl(self, crl_der: bytes, ca_cert: x509.Certificate, number: int, kind: str = TRUSTED) -> PublishResult:
        """Write a CA's CRL under a new name carrying its number, then remove that CA's older CRLs, under the store's
        CRL lock: concurrent publishers (an issue racing a revoke) take turns, and the newest number wins."""
        with self.locked(CRL_LOCK_NAME):
            return self._publish_crl(crl_der, ca_cert, number, kind)

    def _publish_crl(self, crl_der: bytes, ca_cert: x509.Certificate, number: int, kind: str) -> PublishResult:
        """Write a CA's CRL under a new name carrying its number, then remove that CA's older CRLs.

        node-opcua watches ``crl`` folders and misses a file overwritten in place or renamed onto an
        existing name, so the new CRL always arrives as a new file. Only files of this CA (by its name
        pattern, or by AKI and issuer) are removed. A store that already holds a higher CRL number of this
        CA, correctly signed, is left alone: publishing never rolls revocations back.
        The CRL comes as DER bytes: re-encoding a large CRL object costs more than writing it.
        """
        folder = self.crl_dir(kind)
        self._dir(folder, DIR_MODE)
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        target = folder / self.layout.crl_name(ca_cert, number)
        files = self.ca_crl_files(ca_cert, kind)
        newer = self._newer_crl(files, ca_cert, number)
        if newer is not None:
            return PublishResult(newer, False, [], newer_present=True)
        same = [p for p in files if _number_in_name(p) == number and p.read_bytes() == crl_der]
        target = same[0] if same else target
        variant = 1
        while target.exists() and target.read_bytes() != crl_der:
            # other bytes hold our name (tampered, or a foreign file): never delete and re-create a name
            # node-opcua watches, take the next free one; the old file goes with the CA's other CRLs below
            variant += 1
            target = folder / self.layout.crl_name(ca_cert, number, variant)
        written = False
        if not target.exists():
            atomic_write(target, crl_der, CERT_MODE, self.staging_dir)
            written = True
        removed = []
        for path in files:
            if path != target:
                path.unlink(missing_ok=True)
                removed.append(path)
        return PublishResult(target, written, removed)

    def publish_crl_where_held(self, crl_der: bytes, ca_cert: x509.Certificate, number: int) -> dict[str, PublishResult]:
        """publish_crl into each CRL folder whose certificate folder holds the CA: trusted, and issuer(s)
        where the CA sits there too. An empty result: the store does not hold the CA at all."""
        return {kind: self.publish_crl(crl_der, ca_cert, number, kind)
                for kind in (TRUSTED, ISSUER) if self.holds_certificate(ca_cert, kind)}

    def newer_crl_of(self, ca_cert: x509.Certificate, number: int, kind: str = TRUSTED) -> Path | None:
        """A CRL file of this CA with a higher number than ``number`` that the CA really signed, if the store has one."""
        return self._newer_crl(self.ca_crl_files(ca_cert, kind), ca_cert, number)

    def _newer_crl(self, files: list[Path], ca_cert: x509.Certificate, number: int) -> Path | None:
        """A file of this CA with a higher CRL number that the CA really signed (a forged one does not count)."""
        for path in files:
            named = _number_in_name(path)
            if named is not None and named <= number:
                continue  # the name says older: no need to read a possibly large file
            loaded = read_crl_file(path)
            crl = loaded.value
            if crl is None or (crl_number(crl) or 0) <= number:
                continue
            if crl_signed_by(crl, ca_cert):
                return path
        return None

    def ca_crl_files(self, ca_cert: x509.Certificate, kind: str = TRUSTED) -> list[Path]:
        """Every CRL file in a folder that belongs to, or claims to come from, one CA.

        Files carrying the CA's CRL name (which holds its thumbprint) are attributed by name without
        parsing them (a large CRL is megabytes). Others are parsed and attributed when they name the CA as
        issuer and carry its key identifier (AKI = the CA's SKI), so a copy of the CA's CRL under another
        name, or one forged in its name, is found; a CRL of another CA that merely has the same subject
        name is not.
        """
        own_prefix = self.layout.crl_name(ca_cert, None)[: -len(".crl")]
        ski = subject_key_id(ca_cert)
        found = []
        for path in list_files(self.crl_dir(kind), CRL_SUFFIXES):
            if path.name.startswith(own_prefix):
                found.append(path)
                continue
            crl = read_crl_file(path).value
            if crl is None or crl.issuer != ca_cert.subject:
                continue
            aki = authority_key_id(crl)
            if (aki is not None and aki == ski) or (aki is None and crl_signed_by(crl, ca_cert)):
                found.append(path)
        return found

    def newest_ca_crl_file(self, ca_cert: x509.Certificate, kind: str = TRUSTED) -> Path | None:
        """The file of the highest CRL number among ``ca_crl_files`` (by number, never by file time: a copy
        restored from a backup is newer on disk and older in content). None when the folder has none."""
        newest: tuple[int, Path] | None = None
        for path in self.ca_crl_files(ca_cert, kind):
            crl = read_crl_file(path).value
            if crl is None:
                continue
            number = crl_number(crl) or 0
            if newest is None or number > newest[0]:
                newest = (number, path)
        return newest[1] if newest else None

    def remove_crl_file(self, path: Path) -> None:
        """Remove one file from a crl folder of this store (a forged or unreadable CRL found by an audit)."""
        path = Path(path)
        if path.parent not in (self.crl_dir(TRUSTED), self.crl_dir(ISSUER)):
            raise StoreError(f"{path} is not in a CRL folder of {self.root}")
        path.unlink(missing_ok=True)


_CRL_NUMBER_IN_NAME = re.compile(r" crl(\d+)(?:-\d+)?\.crl$")


def _number_in_name(path: Path) -> int | None:
    match = _CRL_NUMBER_IN_NAME.search(path.name)
    return int(match.group(1)) if match else None
