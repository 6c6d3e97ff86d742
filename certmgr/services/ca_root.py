"""The offline root CA: a folder holding the root certificate, its CRL, its encrypted key and a state file.

The root never needs certmgr's home or database: it lives on a machine (or a USB stick) that is offline
except when it renews its CRL or signs the next issuing CA. Its key is encrypted with its own passphrase,
never the CA passphrase. The state file (root-state.json) keeps the next CRL number, the issuing CAs the
root signed and the ones it revoked; it is written BEFORE the CRL or certificate it describes, so a crash
in between skips a CRL number instead of reusing one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ..errors import InputError, OperationFailed

ENV_ROOT_PASSPHRASE = "CERTMGR_ROOT_PASSPHRASE"
DEFAULT_ROOT_NAME = "certmgr Root CA"
STATE_VERSION = 1


@dataclass(frozen=True)
class RootDir:
    """Where each file of an offline root lives inside its folder."""

    path: Path

    @property
    def cert_der(self) -> Path:
        return self.path / "root.der"

    @property
    def cert_pem(self) -> Path:
        return self.path / "root.pem"

    @property
    def crl(self) -> Path:
        return self.path / "root.crl"

    @property
    def private_dir(self) -> Path:
        return self.path / "private"

    @property
    def key(self) -> Path:
        return self.private_dir / "root-key.pem"

    @property
    def state(self) -> Path:
        return self.path / "root-state.json"

    def files(self) -> list[Path]:
        return [self.cert_der, self.cert_pem, self.crl, self.key, self.state]


def read_root_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> bytes:
    """The root's passphrase: --root-passphrase-file (0600) or CERTMGR_ROOT_PASSPHRASE; never the CA's."""
    from ..passphrase import ENV_PASSPHRASE, read_secret

    value = read_secret(passphrase_file, env=ENV_ROOT_PASSPHRASE, what="root passphrase",
                        option="--root-passphrase-file", confirm=confirm)
    if os.environ.get(ENV_PASSPHRASE) is not None and os.environ[ENV_PASSPHRASE].encode("utf-8") == value:
        raise InputError("the root passphrase is the CA passphrase", "give the offline root a passphrase of its own")
    return value


def parse_serial(text: str) -> int:
    """A serial as certmgr prints it (hex), with or without 0x or colons."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InputError(f"serial {text!r} is not a hexadecimal number", "give it as printed, e.g. 5f3a9c01") from None
    if value <= 0:
        raise InputError(f"serial {text!r} is not positive", "give the issuing CA's serial in hex")
    return value


def _write_state(root: RootDir, state: dict) -> None:
    from pki import CERT_MODE, atomic_write

    atomic_write(root.state, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), CERT_MODE)


def _cert_files(cert) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER), cert.public_bytes(Encoding.PEM)


def _crl_summary(root: RootDir, crl, number: int) -> dict:
    return {"crl": str(root.crl), "crl_number": number, "crl_next_update": crl.next_update_utc.isoformat(),
            "crl_revoked": len(crl)}


def create_root(
    out: Path,
    passphrase: bytes,
    *,
    now: datetime,
    name: str | None = None,
    organization: str | None = None,
    days: int | None = None,
    key_size: int = 4096,
    crl_days: int | None = None,
) -> dict:
    """Create an offline root in ``out``: certificate (DER + PEM), CRL number 1, encrypted key, state."""
    from cryptography.hazmat.primitives.serialization import Encoding

    import ca
    import pki
    from pki import CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, atomic_write, ensure_dir

    root = RootDir(Path(out))
    existing = [p for p in root.files() if p.exists()]
    if existing:
        raise InputError(f"{root.path} already holds an offline root ({existing[0].name})",
                         "choose an empty folder with --out; a root is never overwritten")
    if root.path.exists() and not root.path.is_dir():
        raise InputError(f"{root.path} exists and is not a folder", "choose a folder path with --out")
    subject = ca.SubjectFields(DEFAULT_ROOT_NAME if name is None else name, organization)
    ca.check_key_size(key_size)
    root_days = days if days is not None else ca.DEFAULT_ROOT_DAYS
    this_update, next_update = ca.crl_validity(now, crl_days if crl_days is not None else ca.DEFAULT_ROOT_CRL_DAYS)
    ca.profile.validity_window(now, root_days)  # a bad --days is refused before the key is generated

    key = ca.generate_rsa_key(key_size)
    cert = ca.build_root_ca(key, subject, now=now, days=root_days, path_length=ca.ROOT_PATH_LENGTH)
    issuer = ca.Issuer(cert, key)
    crl = ca.build_crl(issuer, number=1, this_update=this_update, next_update=next_update)
    key_pem = ca.encrypted_private_key_pem(key, passphrase)

    ensure_dir(root.path)
    ensure_dir(root.private_dir, PRIVATE_DIR_MODE)
    atomic_write(root.key, key_pem, KEY_MODE)
    _write_state(root, {"version": STATE_VERSION, "next_crl_number": 2, "issued": [], "revoked": []})
    der, pem = _cert_files(cert)
    atomic_write(root.cert_der, der, CERT_MODE)
    atomic_write(root.cert_pem, pem, CERT_MODE)
    atomic_write(root.crl, crl.public_bytes(Encoding.DER), CERT_MODE)
    return {
        "root_dir": str(root.path),
        "subject": cert.subject.rfc4514_string(),
        "thumbprint": pki.thumbprint(cert),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "certificate": str(root.cert_der),
        "key": str(root.key),
        "key_encryption": ca.DEFAULT_KEY_ENCRYPTION.describe(),
        **_crl_summary(root, crl, 1),
    }


def _load(root_dir: Path, passphrase: bytes):
    """The root's Issuer and state; refuses a folder that is not a complete offline root."""
    import ca
    import pki

    root = RootDir(Path(root_dir))
    missing = [p for p in (root.cert_der, root.key, root.state) if not p.is_file()]
    if missing:
        raise InputError(f"{root.path} is not an offline root: {missing[0]} is missing",
                         "give the folder made by `certmgr ca root create` with --root-dir")
    try:
        state = json.loads(root.state.read_text(encoding="utf-8"))
        int(state["next_crl_number"]), list(state["issued"]), list(state["revoked"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OperationFailed(f"the root state file {root.state} is damaged ({exc})", "restore it from the root's backup") from None
    cert = pki.parse_certificate(root.cert_der.read_bytes())
    try:
        key = ca.load_private_key_pem(root.key.read_bytes(), passphrase, trusted_public_key=cert.public_key())
    except ca.PassphraseError:
        raise InputError("wrong root passphrase: the root key could not be decrypted",
                         f"give the passphrase chosen at `certmgr ca root create` ({ENV_ROOT_PASSPHRASE} or --root-passphrase-file)") from None
    return root, ca.Issuer(cert, key), state


def sign_root_crl(
    root_dir: Path,
    passphrase: bytes,
    *,
    now: datetime,
    revoke: Sequence[str] = (),
    reason: str = "keyCompromise",
    crl_days: int | None = None,
) -> dict:
    """A new root CRL (number + 1) listing every issuing CA revoked so far plus ``revoke`` (hex serials)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    import ca
    from pki import CERT_MODE, atomic_write

    ca.reason_flag(reason)
    this_update, next_update = ca.crl_validity(now, crl_days if crl_days is not None else ca.DEFAULT_ROOT_CRL_DAYS)
    serials = [parse_serial(text) for text in revoke]
    root, issuer, state = _load(root_dir, passphrase)
    issued = {int(item["serial"], 16) for item in state["issued"]}
    unknown = [f"{s:x}" for s in serials if s not in issued]
    if unknown:
        known = ", ".join(item["serial"] for item in state["issued"]) or "none yet"
        raise InputError(f"serial {unknown[0]} was not issued by this root", f"revoke one of its issuing CAs ({known})")
    already = {int(item["serial"], 16) for item in state["revoked"]}
    for serial in serials:
        if serial not in already:
            state["revoked"].append({"serial": f"{serial:x}", "revoked_at": now.isoformat(), "reason": reason})
            already.add(serial)
    entries = [ca.RevokedEntry(int(r["serial"], 16), datetime.fromisoformat(r["revoked_at"]), r["reason"]) for r in state["revoked"]]
    number = int(state["next_crl_number"])
    crl = ca.build_crl(issuer, number=number, this_update=this_update, next_update=next_update, revoked=entries)
    state["next_crl_number"] = number + 1
    _write_state(root, state)  # the number is spent before the CRL exists: never two CRLs with one number
    atomic_write(root.crl, crl.public_bytes(Encoding.DER), CERT_MODE)
    return {"root_dir": str(root.path), **_crl_summary(root, crl, number),
            "revoked_serials": [r["serial"] for r in state["revoked"]]}


def _read_csr(csr_path: Path):
    from cryptography import x509

    try:
        data = Path(csr_path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read CSR {csr_path}: {exc.strerror}", "check the path") from None
    try:
        return x509.load_pem_x509_csr(data) if data.lstrip().startswith(b"-----BEGIN") else x509.load_der_x509_csr(data)
    except ValueError:
        raise InputError(f"{csr_path} is not a certificate signing request (PEM or DER)",
                         "give the CSR written by `certmgr init --issuing-ca --csr-out`") from None


@dataclass(frozen=True)
class SignedByRoot:
    """An issuing CA certificate with what stores need beside it: the root and its current CRL."""

    certificate: object  # x509.Certificate
    root_certificate: object  # x509.Certificate
    root_crl: object  # x509.CertificateRevocationList
    root_crl_path: Path


def issue_from_root(
    root_dir: Path, passphrase: bytes, request, *, now: datetime, days: int | None = None
) -> SignedByRoot:
    """Sign an issuing CA with the offline root and record it in the root's state.

    ``request`` is a CSR, or a ``(public_key, ca.SubjectFields)`` pair when the issuing CA's key is made in
    the same step (``certmgr init --issuing-ca --root-dir DIR``). Extensions come from ca.hierarchy's profile.
    """
    import ca
    import pki

    root, issuer, state = _load(root_dir, passphrase)
    lifetime = days if days is not None else ca.DEFAULT_ISSUING_CA_DAYS
    if isinstance(request, tuple):
        public_key, subject = request
        cert = ca.build_issuing_ca(public_key, subject, issuer, now=now, days=lifetime)
    else:
        cert = ca.sign_ca_csr(request, issuer, now=now, days=lifetime)
    try:
        root_crl = pki.parse_crl(root.crl.read_bytes())
    except (OSError, ValueError):
        raise OperationFailed(f"the root CRL {root.crl} is missing or unreadable", "renew it with `certmgr ca root sign-crl`") from None
    state["issued"].append({"serial": f"{cert.serial_number:x}", "subject": cert.subject.rfc4514_string(),
                            "not_after": cert.not_valid_after_utc.isoformat(), "thumbprint": pki.thumbprint(cert)})
    _write_state(root, state)
    return SignedByRoot(cert, issuer.certificate, root_crl, root.crl)


def sign_issuing_csr(
    csr_path: Path, root_dir: Path, out: Path, passphrase: bytes, *, now: datetime, days: int | None = None
) -> dict:
    """Sign the issuing CA requested in ``csr_path`` with the offline root; writes ``out`` (PEM for *.pem)."""
    import pki
    from pki import CERT_MODE, atomic_write

    out = Path(out)
    if out.exists():
        raise InputError(f"{out} exists", "choose a new file with --out; certmgr does not overwrite certificates")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", "create it or choose another --out")
    signed = issue_from_root(root_dir, passphrase, _read_csr(csr_path), now=now, days=days)
    cert = signed.certificate
    der, pem = _cert_files(cert)
    atomic_write(out, pem if out.suffix.lower() == ".pem" else der, CERT_MODE)
    return {"certificate": str(out), "subject": cert.subject.rfc4514_string(), "serial": f"{cert.serial_number:x}",
            "thumbprint": pki.thumbprint(cert), "not_after": cert.not_valid_after_utc.isoformat(),
            "issuer": signed.root_certificate.subject.rfc4514_string(), "root_crl": str(signed.root_crl_path)}
