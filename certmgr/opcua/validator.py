"""asyncua certificate-validator hooks backed by ``pki.validate`` and a store as laid out on disk.

asyncua's own TrustStore reads only files whose names match ``.*(der|pem)`` (so ``*.crl`` files are
ignored), matches revocations by serial alone and never checks a CRL's signature or nextUpdate; this
validator replaces it for certmgr's own channels (verification, diagnose).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509

import pki

log = logging.getLogger(__name__)

# Refusals an operator fixes by trusting the certificate (or its CA). Any other refusal comes after the chain
# was found trusted (a wrong ApplicationUri, dates, revocation, usage): a copy in rejected/ would wrongly
# suggest "trust it", and would even file certmgr's own CA-issued certificates there.
TRUST_REFUSALS = ("BadCertificateUntrusted", "BadCertificateChainIncomplete")


@dataclass
class StoreValidator:
    """Validates a peer the way an application using ``store`` would.

    ``peer_role`` is what the peer is: "client" on the server side, "server" on the client side. The
    store's trust material is re-read whenever its files change, so a running server sees a new CRL
    on the next connection.
    """

    store: pki.ApplicationStore
    peer_role: str
    clock: Callable[[], datetime]
    record_rejected: bool = False
    hostname: str | None = None
    cache: pki.TrustCache = field(default_factory=pki.TrustCache)
    refusals: dict[str, pki.Validation] = field(default_factory=dict)
    last_refusal: pki.Validation | None = None
    # thumbprint -> the file in rejected/ the refused certificate was copied to, or the reason it was not
    rejected_copies: dict[str, Path | str] = field(default_factory=dict)

    def check(self, cert: x509.Certificate, app_uri: str | None) -> pki.Validation:
        material = self.cache.material(self.store)
        result = pki.validate(
            cert, material, at=self.clock(), app_uri=app_uri, role=self.peer_role, hostname=self.hostname
        )
        if not result.ok:
            self.refusals[pki.thumbprint(cert)] = result
            self.last_refusal = result
        if not result.ok and self.record_rejected and result.status in TRUST_REFUSALS:
            try:
                self.rejected_copies[pki.thumbprint(cert)] = self.store.add_rejected(cert)
            except (OSError, pki.StoreError) as exc:
                self.rejected_copies[pki.thumbprint(cert)] = str(exc)
                log.warning("could not copy the refused certificate to %s: %s", self.store.rejected_dir, exc)
        return result

    def rejected_copy(self, thumb: str) -> Path | None:
        """Where the refused certificate with this thumbprint was copied, or None when no copy was made."""
        copy = self.rejected_copies.get(thumb)
        return copy if isinstance(copy, Path) else None

    def refusal_for(self, thumb: str | None) -> pki.Validation | None:
        """Why the peer with this thumbprint (or, for None, the latest peer) was refused, if it was."""
        return self.last_refusal if thumb is None else self.refusals.get(thumb)

    def forget(self, thumb: str | None = None) -> None:
        if thumb is None:
            self.last_refusal = None
        else:
            self.refusals.pop(thumb, None)

    async def __call__(self, cert: x509.Certificate, app_description) -> None:
        from asyncua import ua
        from asyncua.common.utils import ServiceError

        app_uri = getattr(app_description, "ApplicationUri", None) or None
        result = self.check(cert, app_uri)
        if not result.ok:
            log.info("refused %s peer %s: %s", self.peer_role, cert.subject.rfc4514_string(), result.message)
            raise ServiceError(getattr(ua.StatusCodes, result.status, ua.StatusCodes.BadCertificateInvalid))
