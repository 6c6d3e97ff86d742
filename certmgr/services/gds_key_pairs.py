"""GDS StartNewKeyPairRequest (Part 12 §7.9.4): the one path where certmgr's GDS makes an application's private key,
for an application that cannot make its own. Every other path (StartSigningRequest, `certmgr agent`) leaves the key
on the application's host.

The key is made at the request, encrypted at once with the request's PrivateKeyPassword (PEM: PKCS#8 under PBES2
with PBKDF2-HMAC-SHA256 at 600,000 iterations, which OpenSSL, .NET and node-opcua all read; PFX: PKCS#12 with
AES-256 and the same KDF), and kept only in a 0600 file of the GDS home (``gds/keys/<request id>.pem|pfx``),
never in the database. FinishRequest hands it over once, after the operator's approval, and the file is then
destroyed (pki.destroy_secret). The password itself is never stored.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

import ca
import pki
from pki import KEY_MODE, PRIVATE_DIR_MODE

from ..context import AppContext
from .gds import CERTIFICATE_ROLES, SELF_ADMIN, Caller, GdsRefused, live_application, require
from .gds_tokens import ENROL_TOKEN

FORMATS = ("PEM", "PFX")
KEY_ENCRYPTION = ca.KeyEncryption(kdf="pbkdf2")  # interoperable: .NET reads no scrypt PKCS#8
MIN_PASSWORD = 8


def keys_dir(ctx: AppContext) -> Path:
    return ctx.home.root / "gds" / "keys"


def key_path(ctx: AppContext, request_id: int, key_format: str) -> Path:
    return keys_dir(ctx) / f"{request_id}.{key_format.lower()}"


def start_new_key_pair(ctx: AppContext, caller: Caller, app_id: int, key_format: str, password: str) -> int:
    """A request whose key the GDS makes; its id. Refused before any key exists when the caller may not ask, the
    format is not PEM or PFX, or the password is missing or short (the key travels encrypted with it)."""
    from .gds_requests import start_signing_request

    require(caller, (*CERTIFICATE_ROLES, SELF_ADMIN, ENROL_TOKEN), app_id)
    wanted = (key_format or "").upper()
    if wanted not in FORMATS:
        raise GdsRefused("BadInvalidArgument", f"PrivateKeyFormat {key_format!r} is not served: give PEM or PFX")
    if not password or len(password) < MIN_PASSWORD:
        raise GdsRefused("BadInvalidArgument", f"a PrivateKeyPassword of at least {MIN_PASSWORD} characters is required: "
                                               "the key travels encrypted with it")
    with ctx.database().read() as session:
        app = live_application(session, app_id)
        uri, name, bits = app.app_uri, app.name or app.app_uri, app.key_size or 2048
    key = ca.generate_rsa_key(bits)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
           .sign(key, hashes.SHA256()))
    blob = _encrypt(key, wanted, password.encode("utf-8"), name)
    # the request first, then its key: a GDS stopped in between leaves a request without a key, which
    # FinishRequest denies instead of signing a certificate nobody holds the key of
    request_id = start_signing_request(ctx, caller, app_id, csr.public_bytes(serialization.Encoding.DER), new_key_format=wanted)
    pki.ensure_dir(keys_dir(ctx), PRIVATE_DIR_MODE)
    pki.atomic_write(key_path(ctx, request_id, wanted), blob, KEY_MODE)
    return request_id


def _encrypt(key, key_format: str, password: bytes, name: str) -> bytes:
    if key_format == "PEM":
        return ca.encrypted_private_key_pem(key, password, KEY_ENCRYPTION)
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(KEY_ENCRYPTION.pbkdf2_iterations)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256())
                  .build(password))
    return pkcs12.serialize_key_and_certificates(name.encode("utf-8")[:64], key, None, None, encryption)


def waiting_key(ctx: AppContext, request_id: int, key_format: str | None) -> bytes | None:
    """The encrypted key a request still has to hand over, or None (not a key-pair request, or handed over)."""
    if key_format is None:
        return None
    try:
        return key_path(ctx, request_id, key_format).read_bytes()
    except FileNotFoundError:
        return None


def handed_over(ctx: AppContext, request_id: int, key_format: str) -> None:
    """FinishRequest delivered the key: no copy stays on the GDS host."""
    pki.destroy_secret(key_path(ctx, request_id, key_format))
