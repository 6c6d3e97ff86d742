"""The two store layouts certmgr writes: Part 12 Annex F (``ua-net``) and ``node-opcua``.

| part      | ua-net                              | node-opcua                         |
| own cert  | own/certs/<CN> [<THUMBPRINT>].der   | own/certs/certificate.pem          |
| own key   | own/private/<CN> [<THUMBPRINT>].pem | own/private/private_key.pem        |
| trusted   | trusted/certs, trusted/crl          | trusted/certs, trusted/crl         |
| issuers   | issuer/certs, issuer/crl            | issuers/certs, issuers/crl         |
| rejected  | rejected/certs/<CN> [<T>].der       | rejected/<CN>[<t lower>].pem       |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import StoreError, UnsafeNameError

_FORBIDDEN = set('/\\\x00<>:"|?*')


def thumbprint(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the DER certificate, as OPC UA stacks show it."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def safe_stem(cn: str) -> str:
    """The CN as a file-name stem; refuse anything that could leave the folder or break a stack."""
    bad = sorted({c for c in cn if c in _FORBIDDEN or ord(c) < 32})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise UnsafeNameError(
            f"certificate CN {cn!r} contains {shown}, which would escape or break the store folder; use a plain CN"
        )
    if not cn or cn.startswith(".") or cn != cn.strip():
        raise UnsafeNameError(f"certificate CN {cn!r} would be a hidden or empty file name; use a plain CN")
    return cn


@dataclass(frozen=True)
class Layout:
    name: str
    issuer_dir: str
    rejected_dir: str
    own_fixed_names: tuple[str, str] | None  # (cert, key) file names when the stack loads fixed names

    def own_cert_name(self, cert: x509.Certificate) -> str:
        if self.own_fixed_names:
            return self.own_fixed_names[0]
        return f"{safe_stem(common_name(cert))} [{thumbprint(cert)}].der"

    def own_key_name(self, cert: x509.Certificate) -> str:
        if self.own_fixed_names:
            return self.own_fixed_names[1]
        return f"{safe_stem(common_name(cert))} [{thumbprint(cert)}].pem"

    def own_cert_bytes(self, cert: x509.Certificate) -> bytes:
        encoding = serialization.Encoding.PEM if self.own_cert_name(cert).endswith(".pem") else serialization.Encoding.DER
        return cert.public_bytes(encoding)

    def peer_cert_name(self, cert: x509.Certificate) -> str:
        """Name of a trusted or issuer certificate. node-opcua reads DER only from names holding '.der'."""
        stem = safe_stem(common_name(cert) or "certificate")
        if self.name == "node-opcua":
            return f"{stem}[{thumbprint(cert).lower()}].der"
        return f"{stem} [{thumbprint(cert)}].der"

    def rejected_name(self, cert: x509.Certificate) -> str:
        stem = safe_stem(common_name(cert) or "certificate")
        if self.name == "node-opcua":
            return f"{stem}[{thumbprint(cert).lower()}].pem"
        return f"{stem} [{thumbprint(cert)}].der"

    def rejected_bytes(self, cert: x509.Certificate) -> bytes:
        pem = self.rejected_name(cert).endswith(".pem")
        return cert.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)

    def crl_name(self, ca_cert: x509.Certificate, number: int | None, variant: int = 1) -> str:
        """A CRL name carrying the CRL number, so each new CRL is a new file (watchers miss overwrites).
        ``variant`` > 1 names a second file of the same number, for when the first name is taken by other bytes."""
        stem = safe_stem(common_name(ca_cert) or "ca")
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
}
DEFAULT_LAYOUT = "ua-net"


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise StoreError(f"unknown store layout {name!r}; use one of {', '.join(LAYOUTS)}") from None


def detect_layout(root) -> str | None:
    """Guess a store's layout from its folders: node-opcua has issuers/ and own/certs/certificate.pem."""
    from pathlib import Path

    root = Path(root)
    if (root / "issuers").is_dir() or (root / "own" / "certs" / "certificate.pem").is_file():
        return "node-opcua"
    if (root / "issuer").is_dir() or (root / "rejected" / "certs").is_dir() or (root / "own" / "certs").is_dir():
        return "ua-net"
    return None
