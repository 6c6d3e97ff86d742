"""The store layouts certmgr writes: Part 12 Annex F (``ua-net``), ``node-opcua`` and ``open62541``.

| part      | ua-net                              | node-opcua                         | open62541                     |
| own cert  | own/certs/<CN> [<THUMBPRINT>].der   | own/certs/certificate.pem (+chain) | own/certs/certificate.der     |
| own key   | own/private/<CN> [<THUMBPRINT>].pem | own/private/private_key.pem        | own/private/private_key.pem   |
| trusted   | trusted/certs, trusted/crl          | trusted/certs, trusted/crl         | trusted/certs, crl (shared)   |
| issuers   | issuer/certs, issuer/crl            | issuers/certs, issuers/crl         | issuer/certs, crl (shared)    |
| rejected  | rejected/certs/<CN> [<T>].der       | rejected/<CN>[<t lower>].pem       | rejected/certs/<T>.der        |

<CN> is ``safe_stem(CN)``: the CN mapped to a name every file system and stack can hold (docs/store-layouts.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import StoreError

# Characters Windows, POSIX or a stack's path handling cannot hold in a file name (':' also breaks
# Windows alternate data streams); control characters are added by code point.
_FORBIDDEN = set('/\\<>:"|?*')
_REPLACEMENT = "_"
# Bytes (UTF-8) of a stem: with " [<40 hex>]", " crl<N>-<v>" and ".crl" a name stays far below the
# 255-byte limit of ext4, NTFS and APFS.
MAX_STEM_BYTES = 120


def thumbprint(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the DER certificate, as OPC UA stacks show it."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def safe_stem(cn: str, fallback: str = "certificate") -> str:
    """The CN as a file-name stem that every file system and stack can hold; never refuses.

    Characters a file system or a stack cannot hold (``/ \\ < > : " | ? *``, control characters) become
    ``_``; leading dots and spaces (hidden or unreachable names) and trailing dots and spaces (dropped by
    Windows) are removed; the stem is cut at MAX_STEM_BYTES of UTF-8. Distinct CNs may map to one stem:
    every caller appends the thumbprint, which keeps names unique. A plain CN maps to itself, so stores
    written before this mapping keep their names. The result never contains a path separator and is
    never ``.`` or ``..``, so it cannot leave its folder.
    """
    mapped = "".join(_REPLACEMENT if c in _FORBIDDEN or ord(c) < 32 or ord(c) == 127 else c for c in cn)
    mapped = mapped.lstrip(". ").rstrip(". ")
    encoded = mapped.encode("utf-8")
    if len(encoded) > MAX_STEM_BYTES:
        mapped = encoded[:MAX_STEM_BYTES].decode("utf-8", "ignore").rstrip(". ")
    return mapped or fallback


@dataclass(frozen=True)
class Layout:
    name: str
    issuer_dir: str
    rejected_dir: str
    own_fixed_names: tuple[str, str] | None  # (cert, key) file names when the stack loads fixed names
    # The one CRL folder (relative to the root) for trusted and issuer CAs alike, for stacks that read a
    # single CRL folder (open62541's CertFolders); None: each part has its own <part>/crl.
    shared_crl_dir: str | None = None

    def own_cert_name(self, cert: x509.Certificate) -> str:
        if self.own_fixed_names:
            return self.own_fixed_names[0]
        return f"{safe_stem(common_name(cert))} [{thumbprint(cert)}].der"

    @property
    def own_holds_chain(self) -> bool:
        """The own file is PEM and so can carry the issuing CA chain after the leaf (node-opcua reads it)."""
        return bool(self.own_fixed_names) and self.own_fixed_names[0].endswith(".pem")

    def own_key_name(self, cert: x509.Certificate) -> str:
        if self.own_fixed_names:
            return self.own_fixed_names[1]
        return f"{safe_stem(common_name(cert))} [{thumbprint(cert)}].pem"

    def own_cert_bytes(self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...] = ()) -> bytes:
        """The own certificate file: DER of the leaf, or for a PEM own file the leaf first and then the
        issuing CA chain (leaf-first is what every reader, certmgr's included, takes as the certificate)."""
        if not self.own_cert_name(cert).endswith(".pem"):
            return cert.public_bytes(serialization.Encoding.DER)
        blocks = [cert] + [c for c in chain if c != cert]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in blocks)

    def peer_cert_name(self, cert: x509.Certificate) -> str:
        """Name of a trusted or issuer certificate. node-opcua reads DER only from names holding '.der'."""
        stem = safe_stem(common_name(cert))
        if self.name == "node-opcua":
            return f"{stem}[{thumbprint(cert).lower()}].der"
        return f"{stem} [{thumbprint(cert)}].der"

    def rejected_name(self, cert: x509.Certificate) -> str:
        if self.name == "open62541":
            return f"{thumbprint(cert)}.der"  # the name open62541 itself gives a refused certificate
        stem = safe_stem(common_name(cert))
        if self.name == "node-opcua":
            return f"{stem}[{thumbprint(cert).lower()}].pem"
        return f"{stem} [{thumbprint(cert)}].der"

    def rejected_bytes(self, cert: x509.Certificate) -> bytes:
        pem = self.rejected_name(cert).endswith(".pem")
        return cert.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)

    def crl_name(self, ca_cert: x509.Certificate, number: int | None, variant: int = 1) -> str:
        """A CRL name carrying the CRL number, so each new CRL is a new file (watchers miss overwrites).
        ``variant`` > 1 names a second file of the same number, for when the first name is taken by other bytes."""
        stem = safe_stem(common_name(ca_cert), fallback="ca")
        suffix = (f" crl{number}" + (f"-{variant}" if variant > 1 else "")) if number is not None else ""
        return f"{stem} [{thumbprint(ca_cert)}]{suffix}.crl"


LAYOUTS: dict[str, Layout] = {
    "ua-net": Layout("ua-net", issuer_dir="issuer", rejected_dir="rejected/certs", own_fixed_names=None),
    "node-opcua": Layout(
        "node-opcua",
        issuer_dir="issuers",
        rejected_dir="rejected",
        own_fixed_names=("certificate.pem", "private_key.pem"),
    ),
    # open62541 is given its own certificate and key as file paths read once at start, so the names never
    # change across renewals; CertFolders(trusted, issuer, crl, rejected) reads exactly one CRL folder.
    "open62541": Layout(
        "open62541",
        issuer_dir="issuer",
        rejected_dir="rejected/certs",
        own_fixed_names=("certificate.der", "private_key.pem"),
        shared_crl_dir="crl",
    ),
}
DEFAULT_LAYOUT = "ua-net"


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise StoreError(f"unknown store layout {name!r}; use one of {', '.join(LAYOUTS)}") from None


def detect_layout(root) -> str | None:
    """Guess a store's layout from its folders: node-opcua has issuers/ and own/certs/certificate.pem,
    open62541 its fixed own/certs/certificate.der or the shared crl/ folder."""
    from pathlib import Path

    root = Path(root)
    if (root / "own" / "certs" / "certificate.der").is_file() or (root / "crl").is_dir():
        return "open62541"
    if (root / "issuers").is_dir() or (root / "own" / "certs" / "certificate.pem").is_file():
        return "node-opcua"
    if (root / "issuer").is_dir() or (root / "rejected" / "certs").is_dir() or (root / "own" / "certs").is_dir():
        return "ua-net"
    return None
