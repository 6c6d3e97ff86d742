"""Validation of the names that go into an application certificate.

Each check raises ``ProfileError`` with the offending value and what a valid one looks like, so the
CLI can show it as a one-line error.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import ProfileError

# RFC 3986 section 3.1 scheme, and the characters a URI may carry (unreserved, reserved, percent).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
# RFC 8141: urn:<NID>:<NSS>, NID 2..32 characters, letters, digits and inner hyphens.
_URN = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9\-]{0,30}[A-Za-z0-9]:\S+$", re.IGNORECASE)
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9\-]{1,63}(?<!-)$")
MAX_CN_LENGTH = 64  # X.520 ub-common-name
# The longest ApplicationUri certmgr accepts. OPC UA's String has no small limit, but the URI travels in
# the SAN of the certificate every OpenSecureChannel carries in its asymmetric security header, which must
# fit one message chunk, and a stack may offer only the 8192-byte minimum buffer of Part 6's Hello message,
# shared with the rest of the certificate (~1.4 kB with a 4096-bit key), the chain and the signature.
# The database column is String(1024) (PostgreSQL enforces it, SQLite does not): 1024 is what every stack
# can carry and every database holds.
MAX_URI_LENGTH = 1024


def validate_application_uri(uri: str) -> str:
    """An ApplicationUri is an RFC 3986 URL or an RFC 8141 URN (OPC UA Part 6 §6.2.2)."""
    example = "e.g. urn:plant1:historian or http://example.com/app"
    if not uri or not uri.strip():
        raise ProfileError(f"the application URI is empty; give one, {example}")
    if len(uri) > MAX_URI_LENGTH:
        raise ProfileError(
            f"application URI {uri[:40]!r}... is {len(uri)} characters, more than the {MAX_URI_LENGTH} an OPC UA "
            f"certificate and stack can carry; use a shorter URI, {example}"
        )
    if uri != uri.strip() or not _URI_CHARS.match(uri):
        raise ProfileError(f"application URI {uri!r} contains characters a URI may not hold (spaces?); {example}")
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if not scheme or not _SCHEME.match(scheme):
        raise ProfileError(f"application URI {uri!r} has no scheme; {example}")
    if scheme.lower() == "urn":
        if not _URN.match(uri):
            raise ProfileError(f"application URI {uri!r} is not a valid URN (urn:<namespace>:<name>); {example}")
        return uri
    parts = urlsplit(uri)
    if not (parts.netloc or parts.path.strip("/")):
        raise ProfileError(f"application URI {uri!r} has nothing after its scheme; {example}")
    return uri


def validate_dns_name(name: str) -> str:
    """A host name for the SAN: RFC 1123 labels, at most 253 characters, no wildcard."""
    if not name or len(name) > 253 or name.endswith("."):
        raise ProfileError(f"DNS name {name!r} is not a host name; use letters, digits, '-' and '.' only")
    if not all(_DNS_LABEL.match(label) for label in name.split(".")):
        raise ProfileError(
            f"DNS name {name!r} is not a host name (no spaces, '_', '*' or empty labels); e.g. plc01.plant.local"
        )
    return name.lower()


def validate_ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ProfileError(f"{text!r} is not an IPv4 or IPv6 address; e.g. 192.168.10.20 or fd00::20") from None
    if getattr(address, "scope_id", None):
        # a SAN iPAddress is 16 bytes: the zone (%eth0) names an interface of one host, not part of the address
        bare = str(address).split("%", 1)[0]
        raise ProfileError(
            f"IP address {text!r} carries a zone (%{address.scope_id}) that a certificate cannot hold; "
            f"give {bare} without it, or better a global or fd00:: address (a link-local one is per interface)"
        )
    return address


def _control_characters(value: str) -> list[str]:
    """Control characters (C0, DEL, C1) and line/paragraph separators: they break file names, logs,
    certmgr.toml and the display of a subject in every stack's UI."""
    return [f"U+{ord(c):04X}" for c in dict.fromkeys(value) if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


def _check_attribute(label: str, value: str, max_length: int = 64) -> str:
    controls = _control_characters(value)
    if controls:
        raise ProfileError(
            f"subject {label} {value!r} contains control character(s) {', '.join(controls)}; "
            "use printable characters only (no tabs or line breaks)"
        )
    if not value.strip() or len(value) > max_length:
        raise ProfileError(f"subject {label} {value!r} must be 1..{max_length} printable characters")
    return value


@dataclass(frozen=True)
class SubjectFields:
    """The subject distinguished name of an application certificate (CN required, O since OPC UA 1.05)."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    country: str | None = None
    domain_components: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _check_attribute("CN", self.common_name, MAX_CN_LENGTH)
        for label, value in (
            ("O", self.organization),
            ("OU", self.organizational_unit),
            ("L", self.locality),
            ("ST", self.state),
        ):
            if value is not None:
                _check_attribute(label, value)
        if self.country is not None and not re.fullmatch(r"[A-Z]{2}", self.country):
            raise ProfileError(f"subject C {self.country!r} must be a two-letter ISO 3166 code such as DE")
        for dc in self.domain_components:
            validate_dns_name(dc)

    def to_name(self) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, dc) for dc in self.domain_components]
        for oid, value in (
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        ):
            if value is not None:
                attributes.append(x509.NameAttribute(oid, value))
        return x509.Name(attributes)


@dataclass(frozen=True)
class ApplicationIdentity:
    """What an application certificate asserts: its ApplicationUri, subject, and host names/addresses."""

    app_uri: str
    subject: SubjectFields
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_application_uri(self.app_uri)
        object.__setattr__(self, "dns_names", tuple(dict.fromkeys(validate_dns_name(d) for d in self.dns_names)))
        object.__setattr__(
            self, "ip_addresses", tuple(dict.fromkeys(str(validate_ip_address(i)) for i in self.ip_addresses))
        )

    def subject_alternative_name(self) -> x509.SubjectAlternativeName:
        general_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(self.app_uri)]
        general_names += [x509.DNSName(name) for name in self.dns_names]
        general_names += [x509.IPAddress(validate_ip_address(ip)) for ip in self.ip_addresses]
        return x509.SubjectAlternativeName(general_names)
