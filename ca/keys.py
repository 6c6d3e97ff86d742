"""RSA key generation and (de)serialisation of private keys.

OPC UA's RSA security policies (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) take
2048 to 4096 bit keys; smaller keys are refused by current stacks, larger ones are not in the profile.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import PassphraseError, ProfileError

RSA_KEY_SIZES = (2048, 3072, 4096)
PUBLIC_EXPONENT = 65537


def check_key_size(bits: int) -> int:
    if bits not in RSA_KEY_SIZES:
        allowed = ", ".join(str(b) for b in RSA_KEY_SIZES)
        raise ProfileError(f"RSA key size {bits} is not allowed by the OPC UA profile; use one of {allowed}")
    return bits


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=check_key_size(bits))


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, the form OPC UA stacks read from ``own/private``."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encrypted_private_key_pem(key: rsa.RSAPrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 PEM encrypted with the best algorithm cryptography offers (PBES2, AES-256)."""
    if not passphrase:
        raise PassphraseError("an empty passphrase would leave the CA key unprotected; choose a non-empty one")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def load_private_key_pem(data: bytes, passphrase: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load a PEM private key; a wrong or missing passphrase raises ``PassphraseError``."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # encrypted key without passphrase, or passphrase for a plain key
        raise PassphraseError(f"the private key's encryption does not match the passphrase given: {exc}") from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise PassphraseError("wrong CA passphrase: the CA private key could not be decrypted") from exc
        raise ProfileError(f"not a readable PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProfileError(f"only RSA keys are supported, got {type(key).__name__}")
    return key


def key_matches_certificate(key: rsa.RSAPrivateKey, public_key: object) -> bool:
    """True when ``key`` is the private half of ``public_key`` (compared by public numbers)."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    return key.public_key().public_numbers() == public_key.public_numbers()
