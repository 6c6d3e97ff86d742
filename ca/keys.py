"""RSA key generation and (de)serialisation of private keys.

OPC UA's RSA security policies (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) take
2048 to 4096 bit keys; smaller keys are refused by current stacks, larger ones are not in the profile.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import PassphraseError, ProfileError
from .pkcs8 import DEFAULT_KEY_ENCRYPTION, KeyEncryption, encrypt_pkcs8_pem

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


def encrypted_private_key_pem(
    key: rsa.RSAPrivateKey, passphrase: bytes, encryption: KeyEncryption = DEFAULT_KEY_ENCRYPTION
) -> bytes:
    """PKCS#8 PEM under PBES2 with a strong KDF (scrypt by default; see ca.pkcs8), AES-256-CBC."""
    return encrypt_pkcs8_pem(key, passphrase, encryption)


# One fixed message signed at load time when the caller vouches for the public key (see load_private_key_pem).
_SELF_TEST_MESSAGE = b"certmgr CA key self-test"


def load_private_key_pem(
    data: bytes, passphrase: bytes | None = None, *, trusted_public_key: rsa.RSAPublicKey | None = None
) -> rsa.RSAPrivateKey:
    """Load a PEM private key; a wrong or missing passphrase raises ``PassphraseError``.

    With ``trusted_public_key`` (the CA certificate's key) OpenSSL's RSA consistency check is skipped:
    about 0.2 s for a 4096-bit key, mostly primality tests of p and q, paid by every CLI call. Skipping it is
    safe for a key certmgr wrote and whose certificate it holds, because what the check protects against is
    a faulty key producing bad signatures (a wrong CRT signature leaks the factors: the Bellcore attack).
    Instead the key must carry the certificate's public numbers and one PKCS#1 v1.5 signature made with it
    must verify under the certificate's key. OpenSSL checks every CRT result against e and recomputes it with
    d when it is wrong, so a damaged CRT value alone never yields a bad signature; a wrong d as well makes
    the self-test signature fail (tests/test_ca_hierarchy.py damages both). Non-prime p or q with a correct
    n and d would only weaken a key the CA generated itself, which anyone able to write the key file could do
    anyway. A ``ProfileError`` is raised when the key does not belong to ``trusted_public_key`` or is damaged.
    """
    skip = trusted_public_key is not None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase, unsafe_skip_rsa_key_validation=skip)
    except TypeError as exc:  # encrypted key without passphrase, or passphrase for a plain key
        raise PassphraseError(f"the private key's encryption does not match the passphrase given: {exc}") from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise PassphraseError("wrong CA passphrase: the CA private key could not be decrypted") from exc
        raise ProfileError(f"not a readable PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProfileError(f"only RSA keys are supported, got {type(key).__name__}")
    if trusted_public_key is not None:
        _check_against(key, trusted_public_key)
    return key


def _check_against(key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey) -> None:
    if not key_matches_certificate(key, public_key):
        raise ProfileError("the private key does not belong to the certificate; restore the matching pair from backup")
    signature = key.sign(_SELF_TEST_MESSAGE, asym_padding.PKCS1v15(), hashes.SHA256())
    try:
        public_key.verify(signature, _SELF_TEST_MESSAGE, asym_padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ProfileError("the private key is damaged (its signature does not verify); restore it from backup") from None


def key_matches_certificate(key: rsa.RSAPrivateKey, public_key: object) -> bool:
    """True when ``key`` is the private half of ``public_key`` (compared by public numbers)."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        return False
    return key.public_key().public_numbers() == public_key.public_numbers()
