"""The CA's signing key, wherever it is kept. ``open_ca_signer`` is the one way every command gets it.

Two custodies, chosen by the home's ``[ca]`` section:
- a key file (``key_file``): PKCS#8 under scrypt (ca/pkcs8.py), decrypted with the CA passphrase
  (``CERTMGR_CA_PASSPHRASE``, ``--passphrase-file`` or a hidden prompt);
- a PKCS#11 token (``key_uri`` + ``pkcs11_module``): the key never leaves the token, which signs after a
  login with its user PIN (``CERTMGR_PKCS11_PIN``, ``--pin-file`` or a hidden prompt; never an argument).

Callers ask for "the CA secret" (``read_ca_secret``) without knowing which one it is; only this module turns
the errors of either custody into one line and an exit code. The PIN is never logged nor put in a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, OperationFailed
from .passphrase import read_passphrase, read_secret

log = logging.getLogger(__name__)

ENV_PIN = "CERTMGR_PKCS11_PIN"
PIN_HINT = f"give the token's user PIN ({ENV_PIN} or --pin-file FILE)"


@dataclass(frozen=True)
class Custody:
    """Where a home's CA key is: ``uri`` and ``module`` for a token, else ``key_file``."""

    key_file: Path
    uri: str | None = None
    module: str | None = None

    @property
    def on_token(self) -> bool:
        return self.uri is not None

    def describe(self) -> str:
        return f"{self.uri} via {self.module}" if self.on_token else str(self.key_file)


def custody(home, settings=None) -> Custody:
    ca_settings = (settings or home.settings).ca
    if ca_settings.key_uri:
        return Custody(home.ca_key_path, ca_settings.key_uri, ca_settings.pkcs11_module)
    return Custody(home.ca_key_path)


def read_pin(pin_file: Path | None) -> bytes:
    return read_secret(pin_file, env=ENV_PIN, what="PKCS#11 PIN", option="--pin-file")


def read_ca_secret(where: Custody, passphrase_file: Path | None, pin_file: Path | None, *, confirm: bool = False) -> bytes:
    """The secret that unlocks ``where``: the token's PIN, or the key file's passphrase. A secret file given
    for the other custody is refused, so an operator never believes a PIN protects a key file (or back)."""
    if where.on_token:
        if passphrase_file is not None:
            raise InputError(f"the CA key is on a PKCS#11 token ({where.uri}); a CA passphrase file does not apply",
                             f"drop --passphrase-file; {PIN_HINT}")
        return read_pin(pin_file)
    if pin_file is not None:
        raise InputError(f"the CA key is the file {where.key_file}, not on a PKCS#11 token; a PIN file does not apply",
                         "drop --pin-file; give the CA passphrase (CERTMGR_CA_PASSPHRASE or --passphrase-file)")
    return read_passphrase(passphrase_file, confirm=confirm)


def open_ca_signer(where: Custody, secret: bytes, *, certificate=None, create_bits: int | None = None, key=None,
                   wrong_secret_hint: str | None = None):
    """The CA private key of ``where``, able to sign (a ``cryptography`` RSA private key in both custodies).

    ``certificate``: the CA certificate; the key must be its private half (checked by public numbers, and for a
    file key with one signature instead of OpenSSL's RSA consistency check: see ca.load_private_key_pem).
    ``create_bits``: `certmgr init` only; a missing key is created (generated on the token, sensitive and not
    extractable; or ``key`` / a new key written encrypted to the key file, 0600 from its first byte).
    """
    if where.on_token:
        key = _token_key(where, secret, create_bits, wrong_secret_hint)
        if certificate is not None and not _matches(key, certificate):
            key.close()
            raise OperationFailed(f"the key {where.uri} on the token is not the key of the CA certificate",
                                  "point [ca] key_uri at the CA's key (object=LABEL of the key init created)")
        return key
    return _file_key(where.key_file, secret, certificate, create_bits, key, wrong_secret_hint)


def close_signer(key) -> None:
    """End a token key's session (a file key has nothing to close)."""
    close = getattr(key, "close", None)
    if close is not None:
        close()


def _matches(key, certificate) -> bool:
    import ca

    return ca.key_matches_certificate(key, certificate.public_key())


def _token_key(where: Custody, pin: bytes, create_bits: int | None, hint: str | None):
    import ca

    module = Path(where.module or "")
    if not where.module or not module.is_file():
        raise InputError(f"the PKCS#11 module {where.module} does not exist",
                         "install the token's module (Debian: apt install softhsm2 for SoftHSM2) or fix [ca] pkcs11_module / --pkcs11-module")
    try:
        from ca.pkcs11 import open_token_key

        import pkcs11  # noqa: F401  (the optional extra: a clear line instead of a traceback when it is missing)
    except ImportError:
        raise InputError("the CA key is on a PKCS#11 token but python-pkcs11 is not installed",
                         "pip install 'certmgr[pkcs11]'") from None
    try:
        key = open_token_key(str(module), where.uri, pin, generate_bits=create_bits)
    except ca.PassphraseError as exc:
        raise InputError(str(exc), hint or PIN_HINT) from None
    except ca.TokenError as exc:
        raise InputError(str(exc)) from None
    log.debug("CA key %s opened on its token", where.uri)
    return key


def _file_key(path: Path, passphrase: bytes, certificate, create_bits: int | None, key, hint: str | None):
    import ca
    from pki import KEY_MODE, atomic_write

    if create_bits is not None and not path.exists():
        new_key = key if key is not None else ca.generate_rsa_key(create_bits)
        atomic_write(path, ca.encrypted_private_key_pem(new_key, passphrase), KEY_MODE)
        return new_key
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise OperationFailed(f"cannot read the CA key {path}: {exc.strerror}",
                              "check [ca] key_file in certmgr.toml and the file's permissions") from None
    trusted = certificate.public_key() if certificate is not None else None
    try:
        # The certificate vouches for the key: a pair check + one signature replace OpenSSL's 0.2 s RSA check.
        return ca.load_private_key_pem(pem, passphrase, trusted_public_key=trusted)
    except ca.PassphraseError as exc:
        raise InputError(str(exc), hint or "give the passphrase used at `certmgr init`") from None
    except ca.ProfileError as exc:
        raise OperationFailed(f"CA key {path}: {exc}") from None
