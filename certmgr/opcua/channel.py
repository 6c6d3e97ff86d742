"""Opening real OPC UA secure channels with asyncua: policies, identities, server and client set-up.

asyncua has no public way to change a running server's certificate, so ``LoopbackServer.use`` swaps it
in the server's internals; all such knowledge of asyncua internals lives in this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .validator import StoreValidator

log = logging.getLogger(__name__)

# The RSA policies current stacks accept, strongest last. Basic128Rsa15 and Basic256 (SHA-1) are
# deprecated and never used by certmgr.
POLICY_NAMES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
DEPRECATED_POLICIES = ("Basic128Rsa15", "Basic256")
DEFAULT_CHANNEL_TIMEOUT = 10.0


def policy_class(name: str):
    from asyncua.crypto import security_policies as sp

    return {
        "Basic256Sha256": sp.SecurityPolicyBasic256Sha256,
        "Aes128_Sha256_RsaOaep": sp.SecurityPolicyAes128Sha256RsaOaep,
        "Aes256_Sha256_RsaPss": sp.SecurityPolicyAes256Sha256RsaPss,
        "Basic256": sp.SecurityPolicyBasic256,
        "Basic128Rsa15": sp.SecurityPolicyBasic128Rsa15,
        "None": sp.SecurityPolicyNone,
    }[name]


def policy_name(uri: str) -> str:
    return uri.rsplit("#", 1)[-1] if "#" in uri else uri


def server_policy_type(name: str):
    from asyncua import ua

    return {
        "Basic256Sha256": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        "Aes128_Sha256_RsaOaep": ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
        "Aes256_Sha256_RsaPss": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    }[name]


@dataclass
class Identity:
    """One side of a channel: who it is and how it validates its peer."""

    app_uri: str
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    validator: StoreValidator | None = None

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def private_key_der(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


_open_validation_installed = False


def check_asyncua_internals() -> list[str]:
    """What the two overrides of asyncua internals rely on (``_install_open_validation`` here, and
    ``faults.install_service_fault_decoding``); a list of what is missing, empty when asyncua still has it all.
    tests/test_lifecycle.py fails with this list when an asyncua upgrade changes them."""
    import inspect

    from asyncua import ua
    from asyncua.client.ua_client import UASocketProtocol
    from asyncua.server.uaprocessor import UaProcessor

    problems = []
    expected = {
        (UaProcessor, "open_secure_channel"): ["algohdr", "seqhdr", "body"],
        (UaProcessor, "send_response"): ["requesthandle", "seqhdr", "response", "msgtype"],
        (UASocketProtocol, "open_secure_channel"): ["params"],
        (UASocketProtocol, "_send_request"): ["request"],
    }
    for (cls, name), parameters in expected.items():
        function = getattr(cls, name, None)
        if function is None:
            problems.append(f"{cls.__name__}.{name} is gone")
            continue
        found = list(inspect.signature(function).parameters)[1:]
        if found[: len(parameters)] != parameters:
            problems.append(f"{cls.__name__}.{name}{tuple(found)} no longer takes {tuple(parameters)}")
    source = inspect.getsource(UaProcessor)
    for attribute in ("self._connection", "self._transport", "self.iserver"):
        if attribute not in source:
            problems.append(f"UaProcessor no longer uses {attribute}")
    if "_open_secure_channel_exchange" not in inspect.getsource(UASocketProtocol):
        problems.append("UASocketProtocol no longer keeps _open_secure_channel_exchange")
    for name in ("ServiceFault", "OpenSecureChannelRequest", "OpenSecureChannelResponse"):
        if not hasattr(ua, name):
            problems.append(f"asyncua.ua.{name} is gone")
    return problems


def _install_open_validation() -> None:
    """Let a server refuse a client certificate at OpenSecureChannel, as UA-.NETStandard and node-opcua do.

    asyncua's server checks the client certificate only at CreateSession. A server whose iserver carries
    ``certmgr_open_check`` validates at OpenSecureChannel instead and answers a refusal with a ServiceFault
    (secured with the requested policy), then closes the connection. Other servers are unaffected.
    """
    global _open_validation_installed
    if _open_validation_installed:
        return
    from asyncua import ua
    from asyncua.server.uaprocessor import UaProcessor
    from asyncua.ua.ua_binary import struct_from_binary

    original = UaProcessor.open_secure_channel

    def open_secure_channel(self, algohdr, seqhdr, body):
        check = getattr(self.iserver, "certmgr_open_check", None)
        if check is None or self._connection.is_open() or not algohdr.SenderCertificate:
            return original(self, algohdr, seqhdr, body)
        from asyncua.crypto import uacrypto

        refusal = check(uacrypto.x509_from_der(algohdr.SenderCertificate))
        if refusal is None:
            return original(self, algohdr, seqhdr, body)
        request = struct_from_binary(ua.OpenSecureChannelRequest, body.copy())
        self._connection.select_policy(algohdr.SecurityPolicyURI, algohdr.SenderCertificate, request.Parameters.SecurityMode)
        fault = ua.ServiceFault()
        fault.ResponseHeader.ServiceResult = ua.StatusCode(getattr(ua.StatusCodes, refusal, ua.StatusCodes.BadSecurityChecksFailed))
        self.send_response(request.RequestHeader.RequestHandle, seqhdr, fault, ua.MessageType.SecureOpen)
        self._transport.close()

    UaProcessor.open_secure_channel = open_secure_channel
    _open_validation_installed = True


class LoopbackServer:
    """An asyncua server on 127.0.0.1 (ephemeral port) offering SignAndEncrypt with ``policies``.

    Initialising an asyncua server costs about two seconds (it builds the standard address space), so
    one server serves many proofs: ``use`` switches its identity between them.
    """

    def __init__(self, policies: Sequence[str] = POLICY_NAMES, validate_at_open: bool = True) -> None:
        self.policies = tuple(policies)
        self.validate_at_open = validate_at_open
        self._server = None
        self.identity: Identity | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def start(self, identity: Identity) -> LoopbackServer:
        from asyncua import Server

        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/")
        server.set_server_name("certmgr loopback proof")
        server.set_security_policy([server_policy_type(p) for p in self.policies])
        await server.set_application_uri(identity.app_uri)
        await server.load_certificate(identity.certificate_der)
        await server.load_private_key(identity.private_key_der)
        server.set_certificate_validator(self._validate_client)
        if self.validate_at_open:
            _install_open_validation()
            server.iserver.certmgr_open_check = self._open_check
        await server.start()
        self._server = server
        self.port = server.bserver.port
        for endpoint in server.iserver.endpoints:  # the endpoints were described before the port was known
            endpoint.EndpointUrl = self.url
        self.identity = identity
        return self

    def _open_check(self, cert) -> str | None:
        """At OpenSecureChannel the ApplicationUri is not known yet; it is checked at CreateSession."""
        validator = self.identity.validator if self.identity else None
        if validator is None:
            return None
        result = validator.check(cert, None)
        return None if result.ok else result.status

    async def _validate_client(self, cert, app_description) -> None:
        if self.identity is not None and self.identity.validator is not None:
            await self.identity.validator(cert, app_description)

    async def use(self, identity: Identity) -> None:
        """Serve with another certificate, key and ApplicationUri from the next channel on."""
        server = self._server
        server.iserver.certificate = identity.certificate
        server.iserver.private_key = identity.private_key
        for factory in server._policies:
            factory.certificate = identity.certificate
            factory.private_key = identity.private_key
        for endpoint in server.iserver.endpoints:
            endpoint.ServerCertificate = identity.certificate_der
            endpoint.Server.ApplicationUri = identity.app_uri
        await server.set_application_uri(identity.app_uri)
        self.identity = identity

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> LoopbackServer:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


@dataclass
class ChannelResult:
    policy: str
    ok: bool
    status: str = "Good"
    side: str | None = None  # "client" or "server": who refused
    message: str = ""
    seconds: float = 0.0
    server_thumbprint: str | None = None

    def as_dict(self) -> dict:
        return {
            "policy": self.policy,
            "ok": self.ok,
            "status": self.status,
            "side": self.side,
            "message": self.message,
            "seconds": round(self.seconds, 3),
        }


async def open_session(
    url: str,
    client: Identity,
    policy: str,
    *,
    server_certificate: bytes | None,
    timeout: float = DEFAULT_CHANNEL_TIMEOUT,
    user: tuple[str, str] | None = None,
):
    """A connected asyncua Client (channel + session) as ``client``; the caller disconnects it."""
    from asyncua import Client, ua

    from .faults import install_service_fault_decoding

    install_service_fault_decoding()
    ua_client = Client(url, timeout=timeout)
    ua_client.application_uri = client.app_uri
    ua_client.name = "certmgr"
    if user is not None:
        ua_client.set_user(user[0])
        ua_client.set_password(user[1])
    if server_certificate is None:
        raise ValueError("the server certificate is needed (discover it with GetEndpoints first)")
    # Client.set_security re-parses the private key from bytes on every call, and cryptography's RSA key
    # check makes that ~70 ms per channel; hand asyncua the parsed objects, as _set_security would.
    server_cert = x509.load_der_x509_certificate(server_certificate) if isinstance(server_certificate, bytes) else server_certificate
    ua_client.security_policy = policy_class(policy)(
        server_cert, client.certificate, client.private_key, ua.MessageSecurityMode.SignAndEncrypt, host_cert_chain=[]
    )
    ua_client.uaclient.set_security(ua_client.security_policy)
    if client.validator is not None:
        ua_client.certificate_validator = client.validator
    await asyncio.wait_for(ua_client.connect(), timeout)
    return ua_client


async def try_channel(
    url: str,
    client: Identity,
    policy: str,
    *,
    server_certificate: bytes | None,
    server_validator: StoreValidator | None = None,
    timeout: float = DEFAULT_CHANNEL_TIMEOUT,
    user: tuple[str, str] | None = None,
) -> ChannelResult:
    """Open a SignAndEncrypt channel and session, read the server state, close; report who refused."""
    from .faults import describe_failure

    started = time.perf_counter()
    client_thumb = _thumb(client.certificate)
    if client.validator is not None:
        client.validator.forget()
    if server_validator is not None:
        server_validator.forget(client_thumb)
    try:
        ua_client = await open_session(url, client, policy, server_certificate=server_certificate, timeout=timeout, user=user)
    except Exception as exc:  # every failure becomes a result with its status code
        status, message = describe_failure(exc)
        side = "server"
        refusal = client.validator.refusal_for(None) if client.validator else None
        if refusal is not None and refusal.status == status:
            side, message = "client", f"{client.app_uri} refused the server: {refusal.message}"
        elif server_validator is not None:
            server_refusal = server_validator.refusal_for(client_thumb)
            if server_refusal is not None:
                message = f"the server refused {client.app_uri}: {server_refusal.message}"
        return ChannelResult(policy, False, status, side, message, time.perf_counter() - started)
    try:
        from asyncua import ua

        await ua_client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
        peer = ua_client.security_policy.peer_certificate
    finally:
        await _quiet_disconnect(ua_client)
    thumb = _thumb(x509.load_der_x509_certificate(peer)) if peer else None
    return ChannelResult(policy, True, "Good", None, "", time.perf_counter() - started, thumb)


def _thumb(cert: x509.Certificate) -> str:
    import pki

    return pki.thumbprint(cert)


async def _quiet_disconnect(ua_client) -> None:
    try:
        await asyncio.wait_for(ua_client.disconnect(), 5)
    except Exception as exc:  # the channel is gone either way
        log.debug("disconnect: %s", exc)


async def prove_pair(
    server: Identity,
    client: Identity,
    policies: Sequence[str] = POLICY_NAMES,
    *,
    loopback: LoopbackServer | None = None,
    timeout: float = DEFAULT_CHANNEL_TIMEOUT,
) -> list[ChannelResult]:
    """Open a channel per policy between ``server`` (on a loopback server) and ``client``."""
    owned = loopback is None
    if loopback is None:
        loopback = await LoopbackServer(policies).start(server)
    else:
        await loopback.use(server)
    try:
        results = []
        for policy in policies:
            results.append(
                await try_channel(
                    loopback.url,
                    client,
                    policy,
                    server_certificate=server.certificate_der,
                    server_validator=server.validator,
                    timeout=timeout,
                )
            )
        return results
    finally:
        if owned:
            await loopback.stop()
