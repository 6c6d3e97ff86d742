"""PKCS#8 EncryptedPrivateKeyInfo with a strong KDF (PBES2: scrypt or PBKDF2-HMAC-SHA256, AES-256-CBC).

Workaround for a cryptography limitation, kept in this one module: ``BestAvailableEncryption`` writes
PBKDF2-HMAC-SHA256 at 2048 iterations and ``PrivateFormat.PKCS8.encryption_builder()`` is refused
("only supported with PrivateFormat.OpenSSH and PrivateFormat.PKCS12", cryptography 50). So the
EncryptedPrivateKeyInfo of RFC 5958 is encoded here from cryptography's own primitives; reading goes
through ``load_pem_private_key``, and ``openssl pkey`` reads the same file.

Default: scrypt (RFC 7914 §7, memory-hard) with N=2**14, r=8, p=5: OWASP's row equivalent to N=2**17, r=8,
p=1. N=2**15 with r=8 would need more than 32 MiB, which OpenSSL refuses when it decrypts PKCS#8
("scrypt_alg: memory limit exceeded"), so the strength comes from p. PBKDF2-HMAC-SHA256 at 600,000
iterations (OWASP 2023) is offered for sites whose OpenSSL lacks scrypt (FIPS providers).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import PassphraseError

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_AES256_CBC = "2.16.840.1.101.3.4.1.42"


@dataclass(frozen=True)
class KeyEncryption:
    """How a CA key file is protected; ``describe()`` is what the docs and ``ca show`` state."""

    kdf: str = "scrypt"  # or "pbkdf2"
    scrypt_n: int = 2**14
    scrypt_r: int = 8
    scrypt_p: int = 5
    pbkdf2_iterations: int = 600_000

    def describe(self) -> str:
        if self.kdf == "scrypt":
            return f"PBES2 scrypt N={self.scrypt_n} r={self.scrypt_r} p={self.scrypt_p}, AES-256-CBC"
        return f"PBES2 PBKDF2-HMAC-SHA256 {self.pbkdf2_iterations} iterations, AES-256-CBC"


DEFAULT_KEY_ENCRYPTION = KeyEncryption()


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _kdf(spec: KeyEncryption, salt: bytes):
    if spec.kdf == "scrypt":
        params = _seq(_octets(salt), _int(spec.scrypt_n), _int(spec.scrypt_r), _int(spec.scrypt_p), _int(32))
        return Scrypt(salt=salt, length=32, n=spec.scrypt_n, r=spec.scrypt_r, p=spec.scrypt_p), _seq(_oid(_SCRYPT), params)
    if spec.kdf == "pbkdf2":
        prf = _seq(_oid(_HMAC_SHA256), b"\x05\x00")
        params = _seq(_octets(salt), _int(spec.pbkdf2_iterations), _int(32), prf)
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=spec.pbkdf2_iterations)
        return kdf, _seq(_oid(_PBKDF2), params)
    raise ValueError(f"unknown KDF {spec.kdf!r}; use 'scrypt' or 'pbkdf2'")


def encrypt_pkcs8_pem(private_key, passphrase: bytes, spec: KeyEncryption = DEFAULT_KEY_ENCRYPTION) -> bytes:
    """``private_key`` as an ENCRYPTED PRIVATE KEY PEM under ``spec``."""
    if not passphrase:
        raise PassphraseError("an empty passphrase would leave the CA key unprotected; choose a non-empty one")
    plain = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, iv = os.urandom(16), os.urandom(16)
    kdf, kdf_algorithm = _kdf(spec, salt)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(kdf.derive(passphrase)), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    scheme = _seq(_oid(_AES256_CBC), _octets(iv))
    der = _seq(_seq(_oid(_PBES2), _seq(kdf_algorithm, scheme)), _octets(encrypted))
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + b"\n".join(lines) + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
