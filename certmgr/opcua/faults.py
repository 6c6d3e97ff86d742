"""Turning asyncua failures into OPC UA status codes, and status codes into fixes.

asyncua 2.1.0 loses the status of a ServiceFault sent in answer to OpenSecureChannel: the response
future resolves with the fault's body and ``open_secure_channel`` then fails a bare
``assert isinstance(..., OpenSecureChannelResponse)``. ``install_service_fault_decoding`` wraps that one
method so the fault is decoded and raised as the matching ``UaStatusCodeError``.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)
_installed = False

FIXES = {
    "BadCertificateUntrusted": "the refusing side does not trust the peer's certificate or its CA: add the CA (or the certificate) to its trusted store",
    "BadCertificateChainIncomplete": "the refusing side lacks the peer's CA: add certmgr's CA certificate to its trusted store",
    "BadSecurityChecksFailed": "the refusing side does not trust the peer (node-opcua and others say only this): look at its log and rejected folder, then trust the CA or certificate there",
    "BadSecureChannelClosed": "the server closed the channel, usually because it does not trust the client's certificate: trust it on the server",
    "BadCertificateRevoked": "the certificate is on its CA's CRL: issue a new one (`certmgr renew --force --app-uri ...`)",
    "BadCertificateIssuerRevoked": "an issuer in the chain is revoked: replace that CA",
    "BadCertificateRevocationUnknown": "the refusing side has the CA but no current CRL from it: publish the CA's CRL to that store (`certmgr crl refresh`)",
    "BadCertificateIssuerRevocationUnknown": "an intermediate CA has no current CRL in the refusing store: publish that CA's CRL",
    "BadCertificateTimeInvalid": "the certificate is expired or not yet valid: renew it, and check both hosts' clocks",
    "BadCertificateIssuerTimeInvalid": "the CA certificate is expired or not yet valid: renew the CA and reissue",
    "BadCertificateUriInvalid": "the certificate's SAN URI is not the application's ApplicationUri: reissue with the right --app-uri",
    "BadCertificateHostNameInvalid": "the endpoint's host is not in the certificate's SAN: reissue with --dns/--ip for that host",
    "BadCertificateUseNotAllowed": "keyUsage or extendedKeyUsage is wrong for OPC UA: reissue it from certmgr's profile",
    "BadCertificateIssuerUseNotAllowed": "the issuer is not a CA with keyCertSign and cRLSign: use a proper CA",
    "BadCertificatePolicyCheckFailed": "the key is under 2048 bits or the signature uses SHA-1: reissue with RSA 2048+ and SHA-256",
    "BadCertificateInvalid": "the certificate cannot be parsed or lacks required extensions: reissue it",
    "BadSecurityModeRejected": "the server refuses this security mode: use SignAndEncrypt",
    "BadSecurityModeInsufficient": "the operation needs a SignAndEncrypt channel",
    "BadSecurityPolicyRejected": "the server does not offer this security policy: pick one from its endpoints",
    "BadIdentityTokenInvalid": "the server does not accept this user token (anonymous disabled, or wrong token type): give --user/--password-file",
    "BadIdentityTokenRejected": "the user name or password is wrong: check the credentials and the server's user configuration",
    "BadUserAccessDenied": "the user is not allowed: check the user's roles on the server",
    "BadTimeout": "no answer in time: check that the server runs and the port is reachable",
    "BadConnectionRejected": "TCP connection refused: is the server running on that host and port?",
    "BadTcpEndpointUrlInvalid": "the endpoint URL is wrong: check host, port and path",
}


def fix_for(status: str) -> str:
    return FIXES.get(status, "see the refusing side's log")


def install_service_fault_decoding() -> None:
    """Patch ``UASocketProtocol.open_secure_channel`` once per process (see module docstring)."""
    global _installed
    if _installed:
        return
    from asyncua import ua
    from asyncua.client import ua_client
    from asyncua.common.utils import wait_for
    from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

    async def open_secure_channel(self, params):
        request = ua.OpenSecureChannelRequest()
        request.Parameters = params
        if self._open_secure_channel_exchange is not None:
            raise ua.UaError("Two Open Secure Channel requests can not happen too close to each other.")
        self._open_secure_channel_exchange = params
        data = await wait_for(self._send_request(request, message_type=ua.MessageType.SecureOpen), self.timeout)
        if not isinstance(self._open_secure_channel_exchange, ua.OpenSecureChannelResponse):
            self._open_secure_channel_exchange = None
            raise ua.UaStatusCodeError(service_fault_status(data, nodeid_from_binary, struct_from_binary))
        result = self._open_secure_channel_exchange.Parameters
        self._open_secure_channel_exchange = None
        return result

    ua_client.UASocketProtocol.open_secure_channel = open_secure_channel
    _installed = True


def service_fault_status(data, nodeid_from_binary, struct_from_binary) -> int:
    from asyncua import ua

    try:
        buffer = data.copy()
        typeid = nodeid_from_binary(buffer)
        header = struct_from_binary(ua.ResponseHeader, buffer)
    except Exception:
        return ua.StatusCodes.BadSecurityChecksFailed
    if typeid == ua.FourByteNodeId(ua.ObjectIds.ServiceFault_Encoding_DefaultBinary) or header.ServiceResult.is_bad():
        return header.ServiceResult.value
    return ua.StatusCodes.BadSecurityChecksFailed


def status_name(code: int) -> str:
    from asyncua import ua

    try:
        return ua.StatusCode(code).name
    except Exception:
        return f"0x{code:08X}"


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(status code name, one-line description) for anything a connect attempt can raise."""
    from asyncua import ua
    from asyncua.common.utils import ServiceError

    if isinstance(exc, ua.UaStatusCodeError):
        name = status_name(exc.code)
        return name, f"{name}: {fix_for(name)}"
    if isinstance(exc, ServiceError):
        name = status_name(exc.code)
        return name, f"{name}: {fix_for(name)}"
    if isinstance(exc, ConnectionRefusedError):
        return "BadConnectionRejected", f"connection refused: {fix_for('BadConnectionRejected')}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "BadTimeout", "no answer in time (a server that drops a channel it refuses looks like this too)"
    if isinstance(exc, ConnectionError | OSError):
        return "BadSecureChannelClosed", f"the peer closed the connection ({exc or type(exc).__name__}): {fix_for('BadSecureChannelClosed')}"
    if isinstance(exc, ua.UaError):
        return "BadUnexpectedError", f"{exc}"
    return "BadUnexpectedError", f"{type(exc).__name__}: {exc}"
