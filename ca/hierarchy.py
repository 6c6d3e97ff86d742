"""A CA hierarchy: an (offline) root above issuing CAs, and the names of successive CA generations.

OPC UA stacks find an issuer by name and AKI key id (UA-.NETStandard adds the serial when the AKI carries
one; node-opcua-pki files CRLs under the issuer's subject name), so every CA certificate here carries an
AKI with the key id only and each CA generation gets a subject name of its own ("Plant 1 CA G2").
The profile, never a CSR, decides a CA certificate's extensions. The current time is always passed in.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ProfileError
from .names import MAX_CN_LENGTH, SubjectFields
from .profile import CA_KEY_USAGE, Issuer, _check_public_key, certificate_builder, validity_window

DEFAULT_ROOT_DAYS = 7300
DEFAULT_ISSUING_CA_DAYS = 1825
DEFAULT_ROOT_CRL_DAYS = 365
ROOT_PATH_LENGTH = 1  # root -> issuing CA -> applications

_GENERATION = re.compile(r"^(?P<base>.*\S) G(?P<n>[0-9]+)$")


def next_generation_name(common_name: str) -> str:
    """The CN of the CA generation after ``common_name``: "Plant 1 CA" -> "Plant 1 CA G2" -> "Plant 1 CA G3"."""
    match = _GENERATION.match(common_name)
    base, number = (match["base"], int(match["n"]) + 1) if match else (common_name, 2)
    name = f"{base} G{number}"
    if len(name) > MAX_CN_LENGTH:
        raise ProfileError(
            f"the next generation's CA name {name!r} is longer than {MAX_CN_LENGTH} characters; choose a shorter CA name"
        )
    return name


def next_generation_subject(subject: SubjectFields) -> SubjectFields:
    """``subject`` with the next generation's CN, every other attribute kept."""
    return dataclasses.replace(subject, common_name=next_generation_name(subject.common_name))


def _path_length_below(root: x509.Certificate) -> int | None:
    """The largest pathLen a CA under ``root`` may carry (None: unlimited); refuses a root that cannot sign CAs."""
    try:
        basic = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ProfileError(
            f"{root.subject.rfc4514_string()} lacks basicConstraints or keyUsage; it cannot sign CA certificates"
        ) from None
    if not basic.ca or not usage.key_cert_sign:
        raise ProfileError(f"{root.subject.rfc4514_string()} is not a CA allowed to sign certificates (CA:TRUE, keyCertSign)")
    if basic.path_length is None:
        return None
    if basic.path_length < 1:
        raise ProfileError(
            f"{root.subject.rfc4514_string()} has pathLen {basic.path_length}: it may sign only applications, not an "
            "issuing CA; create the root with `certmgr ca root create`"
        )
    return basic.path_length - 1


def build_issuing_ca(
    public_key: object,
    subject: SubjectFields | x509.Name,
    root: Issuer,
    *,
    now: datetime,
    days: int = DEFAULT_ISSUING_CA_DAYS,
    path_length: int = 0,
    serial: int | None = None,
) -> x509.Certificate:
    """An issuing CA for ``public_key`` signed by ``root``: CA:TRUE + pathLen and keyCertSign + cRLSign (both
    critical), SKI, AKI with the root's key id only, notAfter never beyond the root's."""
    key = _check_public_key(public_key)
    name = subject.to_name() if isinstance(subject, SubjectFields) else subject
    if name == root.certificate.subject:
        raise ProfileError(
            f"the issuing CA would have its root's name {name.rfc4514_string()}; stacks then confuse them, choose another CN"
        )
    if not name.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        raise ProfileError("the issuing CA's subject has no CN; give one, e.g. 'Plant 1 Issuing CA'")
    limit = _path_length_below(root.certificate)
    if isinstance(path_length, bool) or not isinstance(path_length, int) or path_length < 0:
        raise ProfileError(f"pathLen {path_length!r} is not allowed; give a whole number >= 0")
    if limit is not None and path_length > limit:
        raise ProfileError(f"the root allows pathLen at most {limit} below it, not {path_length}")
    not_before, not_after = validity_window(now, days, root.certificate.not_valid_after_utc)
    builder = (
        certificate_builder(name, root.certificate.subject, key, serial, max(not_before, root.certificate.not_valid_before_utc),
                            not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(root.authority_key_identifier(), critical=False)
    )
    return builder.sign(root.private_key, hashes.SHA256())


def build_ca_csr(private_key: rsa.RSAPrivateKey, subject: SubjectFields) -> x509.CertificateSigningRequest:
    """A CSR for an issuing CA, for an enterprise root or `certmgr ca root sign-csr`.

    It requests CA:TRUE/pathLen 0 and keyCertSign + cRLSign so an enterprise CA's template can see what is
    asked; certmgr's own root ignores the requested extensions (``sign_ca_csr``).
    """
    _check_public_key(private_key.public_key())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject.to_name())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(private_key, hashes.SHA256())
    )


def sign_ca_csr(
    csr: x509.CertificateSigningRequest,
    root: Issuer,
    *,
    now: datetime,
    days: int = DEFAULT_ISSUING_CA_DAYS,
    path_length: int = 0,
) -> x509.Certificate:
    """An issuing CA certificate for the key and subject in ``csr``; extensions come from the profile only."""
    if not csr.is_signature_valid:
        raise ProfileError("the CSR's signature does not verify: it was not made with the key it carries")
    return build_issuing_ca(csr.public_key(), csr.subject, root, now=now, days=days, path_length=path_length)
