"""certmgr's certificate authority: keys, OPC UA profiles, issuing, CRLs and conformance checks.

Objects and bytes in, objects and bytes out; the current time is always a parameter. Imports only
``cryptography`` and the standard library (and ``python-pkcs11`` in ``ca.pkcs11``, imported on use).
"""

from .conformance import Finding, check_application_certificate, check_ca_certificate, errors_only
from .crl import REASONS, RevokedEntry, build_crl, crl_validity, reason_flag
from .errors import CAError, PassphraseError, ProfileError, TokenError
from .hierarchy import (
    DEFAULT_ISSUING_CA_DAYS,
    DEFAULT_ROOT_CRL_DAYS,
    DEFAULT_ROOT_DAYS,
    ROOT_PATH_LENGTH,
    build_ca_csr,
    build_issuing_ca,
    next_generation_name,
    next_generation_subject,
    sign_ca_csr,
)
from .keys import (
    RSA_KEY_SIZES,
    check_key_size,
    encrypted_private_key_pem,
    generate_rsa_key,
    key_matches_certificate,
    load_private_key_pem,
    private_key_pem,
)
from .pkcs8 import DEFAULT_KEY_ENCRYPTION, KeyEncryption
from .names import ApplicationIdentity, SubjectFields, validate_application_uri, validate_dns_name, validate_ip_address
from .profile import (
    DEFAULT_APP_DAYS,
    DEFAULT_CA_DAYS,
    DEFAULT_CA_KEY_SIZE,
    Issuer,
    build_application_certificate,
    build_root_ca,
    csr_application_uris,
    sign_csr,
)

__all__ = [
    "DEFAULT_ISSUING_CA_DAYS",
    "DEFAULT_KEY_ENCRYPTION",
    "DEFAULT_ROOT_CRL_DAYS",
    "DEFAULT_ROOT_DAYS",
    "ROOT_PATH_LENGTH",
    "KeyEncryption",
    "build_ca_csr",
    "build_issuing_ca",
    "next_generation_name",
    "next_generation_subject",
    "sign_ca_csr",
    "DEFAULT_APP_DAYS",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CA_KEY_SIZE",
    "REASONS",
    "RSA_KEY_SIZES",
    "ApplicationIdentity",
    "CAError",
    "Finding",
    "Issuer",
    "PassphraseError",
    "ProfileError",
    "TokenError",
    "RevokedEntry",
    "SubjectFields",
    "build_application_certificate",
    "build_crl",
    "build_root_ca",
    "check_application_certificate",
    "check_ca_certificate",
    "check_key_size",
    "crl_validity",
    "csr_application_uris",
    "encrypted_private_key_pem",
    "errors_only",
    "generate_rsa_key",
    "key_matches_certificate",
    "load_private_key_pem",
    "private_key_pem",
    "reason_flag",
    "sign_csr",
    "validate_application_uri",
    "validate_dns_name",
    "validate_ip_address",
]
