"""OPC UA file-based certificate stores: layouts, atomic writes, and validation at a given time.

Imports only ``cryptography`` and the standard library.
"""

from .crl_audit import MISSING, MULTIPLE, NOT_YET_VALID, OK, STALE, CaCrlState, CrlAudit, CrlFile, audit_crls
from .errors import StoreError, UnsafeNameError
from .files import CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, atomic_write, destroy_secret, ensure_dir
from .layout import DEFAULT_LAYOUT, LAYOUTS, Layout, common_name, detect_layout, get_layout, safe_stem, thumbprint
from .readers import CERT_SUFFIXES, Loaded, list_files, parse_certificate, parse_crl, read_certificate_file
from .store import REJECTED, ApplicationStore, InstallResult, OwnPair
from .store_crls import ISSUER, TRUSTED, PublishResult
from .x509_facts import cert_signed_by, crl_number, crl_signed_by, is_ca
from .validation import GOOD, Refused, TrustCache, TrustMaterial, Validation, build_chain, load_trust_material, validate

__all__ = [
    "CERT_MODE",
    "CERT_SUFFIXES",
    "KEY_MODE",
    "PRIVATE_DIR_MODE",
    "atomic_write",
    "crl_number",
    "cert_signed_by",
    "crl_signed_by",
    "destroy_secret",
    "ensure_dir",
    "is_ca",
    "DEFAULT_LAYOUT",
    "GOOD",
    "ISSUER",
    "LAYOUTS",
    "MISSING",
    "MULTIPLE",
    "NOT_YET_VALID",
    "OK",
    "REJECTED",
    "STALE",
    "TRUSTED",
    "ApplicationStore",
    "CaCrlState",
    "CrlAudit",
    "CrlFile",
    "InstallResult",
    "Layout",
    "Loaded",
    "OwnPair",
    "PublishResult",
    "Refused",
    "StoreError",
    "TrustCache",
    "TrustMaterial",
    "UnsafeNameError",
    "Validation",
    "audit_crls",
    "build_chain",
    "common_name",
    "detect_layout",
    "get_layout",
    "load_trust_material",
    "parse_certificate",
    "parse_crl",
    "list_files",
    "read_certificate_file",
    "safe_stem",
    "thumbprint",
    "validate",
]
