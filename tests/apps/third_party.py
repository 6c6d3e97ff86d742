"""A third-party OPC UA server for trust-triage tests: plain asyncua, a self-signed certificate, its own
store, asyncua's stock certificate validator, user name + password only. Not managed by certmgr."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

URI = "urn:vendor:historian"


def self_signed(key: rsa.RSAPrivateKey, cn: str = "Vendor Historian", uri: str = URI, days: float = 365) -> x509.Certificate:
    """What vendor servers generate for themselves: self-signed, CA:FALSE, keyCertSign (Part 6)."""
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Vendor")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, True, True, False, True, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        ]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


class _Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class ThirdPartyServer:
    """Stores: <root>/own, <root>/trusted/certs, <root>/rejected/certs (UA-.NETStandard-like)."""

    def __init__(self, root: Path, key: rsa.RSAPrivateKey, users: dict[str, str], days: float = 365) -> None:
        self.root = root
        self.key = key
        self.certificate = self_signed(key, days=days)
        self.users = users
        self.server = None
        self.port = None
        for part in ("own/certs", "trusted/certs", "trusted/crl", "rejected/certs"):
            (root / part).mkdir(parents=True, exist_ok=True)
        (root / "own" / "certs" / "Vendor Historian.der").write_bytes(self.certificate.public_bytes(serialization.Encoding.DER))

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def _validate(self, cert: x509.Certificate, description) -> None:
        from asyncua import ua
        from asyncua.common.utils import ServiceError
        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

        try:
            if not any((self.root / "trusted" / "certs").iterdir()):
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)  # asyncua's Store() refuses an empty list
            store = TrustStore([self.root / "trusted" / "certs"], [self.root / "trusted" / "crl"])
            await store.load()  # re-read on every connection, like stacks that watch their folders
            validator = CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
            )
            await validator.validate(cert, description)
        except Exception:
            thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            (self.root / "rejected" / "certs" / f"{cn} [{thumb}].der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
            raise

    async def start(self, port: int = 0) -> ThirdPartyServer:
        from asyncua import Server, ua

        server = Server(user_manager=_Users(self.users))
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
        server.set_server_name("Vendor Historian")
        await server.set_application_uri(URI)
        server.set_security_policy([
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
        ])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.load_certificate(self.certificate.public_bytes(serialization.Encoding.DER))
        await server.load_private_key(
            self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        server.set_certificate_validator(self._validate)
        await server.start()
        self.server, self.port = server, server.bserver.port
        for endpoint in server.iserver.endpoints:
            endpoint.EndpointUrl = self.url
        return self

    async def regenerate(self, key: rsa.RSAPrivateKey, days: float = 365) -> None:
        """What vendor stacks do when their certificate nears its end: a new self-signed one, served after a
        restart on the same port."""
        await self.stop()
        self.key, self.certificate = key, self_signed(key, days=days)
        (self.root / "own" / "certs" / "Vendor Historian.der").write_bytes(self.certificate.public_bytes(serialization.Encoding.DER))
        await self.start(self.port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
