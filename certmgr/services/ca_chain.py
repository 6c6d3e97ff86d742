"""A home whose CA is an issuing CA under a root: the root certificate and the root's current CRL kept beside
the CA certificate in the home, and placed in every store beside the issuing CA.

Where each part goes in a store (docs/ca-hierarchy.md): the root in trusted/certs with its CRL in trusted/crl
(trust comes from trusted/, node-opcua grants none from issuers/); the issuing CA in issuer/certs (ua-net) or
issuers/certs (node-opcua) with its CRL in issuer(s)/crl, where stacks look for intermediates. Every CA of
the chain then has a current CRL, which UA-.NETStandard and node-opcua require.
A home without ``ca/root.der`` is a one-level CA, handled as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pki
from pki import CERT_MODE, atomic_write

from ..errors import InputError
from ..home import Home

# node-opcua 2.186 refuses a leaf with BadCertificateUntrusted when its issuing CA sits only in issuers/certs,
# even with the root in trusted/certs (measured: tests/test_ca_chain.py); it needs the issuing CA trusted too.
TRUSTS_INTERMEDIATE_ONLY_IN_TRUSTED = ("node-opcua",)
ROOT_CERT_NAME = "root.der"
ROOT_CRL_NAME = "root.crl"


def root_cert_path(home: Home) -> Path:
    return home.ca_cert_path.parent / ROOT_CERT_NAME


def root_crl_path(home: Home) -> Path:
    return home.ca_cert_path.parent / ROOT_CRL_NAME


@dataclass(frozen=True)
class CaChain:
    """The root above the home's issuing CA and the root's current CRL."""

    root: x509.Certificate
    root_crl: x509.CertificateRevocationList
    root_crl_der: bytes

    @property
    def root_crl_number(self) -> int:
        return pki.crl_number(self.root_crl) or 0


def load_chain(home: Home) -> CaChain | None:
    """The home's root and root CRL, or None for a home whose CA is its own root."""
    path = root_cert_path(home)
    if not path.exists():
        return None
    crl_der = root_crl_path(home).read_bytes()
    crl = pki.parse_crl(crl_der)
    return CaChain(pki.parse_certificate(path.read_bytes()), crl, crl.public_bytes(serialization.Encoding.DER))


def root_summary(home: Home) -> dict | None:
    """What `ca show` says of the root above an issuing CA (None for a CA that is its own root)."""
    chain = load_chain(home)
    if chain is None:
        return None
    return {
        "subject": chain.root.subject.rfc4514_string(),
        "thumbprint": pki.thumbprint(chain.root),
        "not_after": chain.root.not_valid_after_utc.isoformat(),
        "certificate_file": str(root_cert_path(home)),
        "crl_number": chain.root_crl_number,
        "crl_next_update": chain.root_crl.next_update_utc.isoformat(),
    }


def check_signed_chain(ca_cert: x509.Certificate, root: x509.Certificate, root_crl: x509.CertificateRevocationList,
                       *, now: datetime) -> None:
    """Refuse an issuing CA the root did not sign, a root that is not a self-signed CA, a CRL the root did not
    sign or that is not current, or a root CRL that lists the issuing CA."""
    if not _is_ca(root) or root.issuer != root.subject or not pki.cert_signed_by(root, root):
        raise InputError(f"{root.subject.rfc4514_string()} is not a self-signed root CA", "give the root CA certificate with --root")
    if not _is_ca(ca_cert):
        raise InputError(f"{ca_cert.subject.rfc4514_string()} is not a CA certificate (CA:TRUE, keyCertSign, cRLSign)",
                         "have the root sign the CSR as a CA (e.g. `certmgr ca root sign-csr`)")
    if ca_cert.issuer != root.subject or not pki.cert_signed_by(ca_cert, root):
        raise InputError(f"the root {root.subject.rfc4514_string()} did not sign {ca_cert.subject.rfc4514_string()}",
                         "give the root that signed the issuing CA with --root")
    if root_crl.issuer != root.subject or not pki.crl_signed_by(root_crl, root):
        raise InputError("the root CRL is not signed by the root", "give the CRL published by that root with --root-crl")
    if root_crl.next_update_utc is None or not root_crl.last_update_utc <= now < root_crl.next_update_utc:
        raise InputError("the root CRL is not current", "renew it where the root is (`certmgr ca root sign-crl`)")
    if root_crl.get_revoked_certificate_by_serial_number(ca_cert.serial_number) is not None:
        raise InputError("the root CRL lists this issuing CA as revoked", "have the root sign a new issuing CA")


def _is_ca(cert: x509.Certificate) -> bool:
    """A CA that may sign certificates and CRLs (basicConstraints CA:TRUE with keyCertSign and cRLSign)."""
    if not pki.is_ca(cert):
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage.key_cert_sign and usage.crl_sign


def write_chain_files(home: Home, root: x509.Certificate, root_crl_der: bytes) -> None:
    """The root and its CRL in the home (before the CA certificate: ca.der present means the chain is there)."""
    atomic_write(root_cert_path(home), root.public_bytes(serialization.Encoding.DER), CERT_MODE)
    atomic_write(root_crl_path(home), root_crl_der, CERT_MODE)


def install_chain(store: pki.ApplicationStore, ca_cert: x509.Certificate, chain: CaChain) -> None:
    """The root and its CRL in trusted/, the issuing CA in issuer(s)/certs, and for node-opcua in trusted/certs
    as well (its CRL is placed by the caller with publish_crl_where_held, which finds it in both)."""
    store.add_certificate(chain.root, pki.TRUSTED)
    store.publish_crl(chain.root_crl_der, chain.root, chain.root_crl_number, pki.TRUSTED)
    store.add_certificate(ca_cert, pki.ISSUER)
    if store.layout.name in TRUSTS_INTERMEDIATE_ONLY_IN_TRUSTED:
        store.add_certificate(ca_cert, pki.TRUSTED)


def accept_root_crl(home: Home, crl: x509.CertificateRevocationList) -> CaChain | None:
    """A CRL of the home's root: checked (signature, newer number) and kept in the home; None if not the root's."""
    chain = load_chain(home)
    if chain is None or crl.issuer != chain.root.subject:
        return None
    if not pki.crl_signed_by(crl, chain.root):
        raise InputError("the CRL names the root but its signature does not verify with the root",
                         "give the CRL signed where the root is (`certmgr ca root sign-crl`)")
    number = pki.crl_number(crl) or 0
    if number < chain.root_crl_number:
        raise InputError(f"the home holds a newer root CRL (number {chain.root_crl_number}, not {number})",
                         "give the newest root.crl")
    der = crl.public_bytes(serialization.Encoding.DER)
    atomic_write(root_crl_path(home), der, CERT_MODE)
    return CaChain(chain.root, crl, der)
