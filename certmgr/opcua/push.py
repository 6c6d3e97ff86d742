"""OPC UA Part 12 push certificate management, client side: ServerConfiguration and its TrustList.

Every call returns the server's status code instead of raising, so each step can be reported with it.
Node ids are namespace 0 (Part 12): ServerConfiguration i=12637, DefaultApplicationGroup i=14156,
RsaSha256ApplicationCertificateType i=12560, the group's TrustList i=12642.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SERVER_CONFIGURATION = 12637
CREATE_SIGNING_REQUEST = 12737
UPDATE_CERTIFICATE = 13737
APPLY_CHANGES = 12740
GET_REJECTED_LIST = 12777
DEFAULT_APPLICATION_GROUP = 14156
RSA_SHA256_APPLICATION_CERTIFICATE = 12560
TRUST_LIST = 12642
TL_OPEN, TL_CLOSE, TL_READ, TL_WRITE, TL_CLOSE_AND_UPDATE, TL_ADD_CERTIFICATE = 12647, 12650, 12652, 12655, 12666, 12668
READ, WRITE_ERASE_EXISTING = 1, 6  # TrustList Open modes (Part 5 FileType): Read; Write | EraseExisting
ALL_LISTS = 15  # TrustListMasks: TrustedCertificates | TrustedCrls | IssuerCertificates | IssuerCrls

FIXES = {
    "BadUserAccessDenied": "the user lacks the SecurityAdmin role on the server (or is anonymous): give a SecurityAdmin user "
                           "with `certmgr app update --admin-user NAME --admin-password-file FILE`",
    "BadSecurityModeInsufficient": "Part 12 methods need a SignAndEncrypt channel; the server refused Sign",
    "BadInvalidArgument": "the server rejected an argument (certificate group or type, nonce, format)",
    "BadSecurityChecksFailed": "the server refused the certificate: it does not match the server's key, or its dates are off",
    "BadCertificateInvalid": "the server could not parse the certificate",
    "BadNothingToDo": "the server had no pending change to apply",
}


def fix_for(status: str) -> str:
    """What to do about a status from a Part 12 session or call: the push-specific advice, else the general one."""
    from .faults import fix_for as general

    return FIXES.get(status) or general(status)


class PushError(Exception):
    def __init__(self, step: str, status: str, detail: str = "") -> None:
        self.step, self.status = step, status
        fix = fix_for(status)
        super().__init__(f"{step}: {status}{': ' + detail if detail else ''}; {fix}")


@dataclass
class TrustList:
    trusted: list[bytes]
    trusted_crls: list[bytes]
    issuers: list[bytes]
    issuer_crls: list[bytes]


class PushClient:
    """Part 12 calls over an open asyncua session (SignAndEncrypt, SecurityAdmin)."""

    def __init__(self, client) -> None:
        self.client = client

    async def call(self, step: str, obj: int, method: int, args: list) -> list:
        from asyncua import ua

        from .faults import status_name

        request = ua.CallMethodRequest()
        request.ObjectId, request.MethodId, request.InputArguments = ua.NodeId(obj), ua.NodeId(method), args
        result = (await self.client.uaclient.call([request]))[0]
        if not result.StatusCode.is_good():
            raise PushError(step, status_name(result.StatusCode.value))
        return [v.Value for v in result.OutputArguments or []]

    async def create_signing_request(self, regenerate_key: bool) -> bytes:
        from asyncua import ua

        # node-opcua 2.157 wants subjectName as a String (Null is BadTypeMismatch) and "" keeps the current
        # subject; certmgr ignores the requested subject anyway. A 32-byte nonce always (Part 12 minimum).
        args = [
            ua.Variant(ua.NodeId(DEFAULT_APPLICATION_GROUP), ua.VariantType.NodeId),
            ua.Variant(ua.NodeId(RSA_SHA256_APPLICATION_CERTIFICATE), ua.VariantType.NodeId),
            ua.Variant("", ua.VariantType.String),
            ua.Variant(regenerate_key, ua.VariantType.Boolean),
            ua.Variant(os.urandom(32), ua.VariantType.ByteString),
        ]
        return (await self.call("CreateSigningRequest", SERVER_CONFIGURATION, CREATE_SIGNING_REQUEST, args))[0]

    async def update_certificate(self, certificate: bytes, issuers: list[bytes]) -> bool:
        from asyncua import ua

        args = [
            ua.Variant(ua.NodeId(DEFAULT_APPLICATION_GROUP), ua.VariantType.NodeId),
            ua.Variant(ua.NodeId(RSA_SHA256_APPLICATION_CERTIFICATE), ua.VariantType.NodeId),
            ua.Variant(certificate, ua.VariantType.ByteString),
            ua.Variant(issuers, ua.VariantType.ByteString, is_array=True),
            ua.Variant("", ua.VariantType.String),
            ua.Variant(b"", ua.VariantType.ByteString),
        ]
        outputs = await self.call("UpdateCertificate", SERVER_CONFIGURATION, UPDATE_CERTIFICATE, args)
        return bool(outputs[0]) if outputs else True

    async def apply_changes(self) -> None:
        await self.call("ApplyChanges", SERVER_CONFIGURATION, APPLY_CHANGES, [])

    async def rejected_list(self) -> list[bytes]:
        return (await self.call("GetRejectedList", SERVER_CONFIGURATION, GET_REJECTED_LIST, []))[0] or []

    async def read_trust_list(self) -> TrustList:
        from asyncua import ua
        from asyncua.common.utils import Buffer
        from asyncua.ua.ua_binary import struct_from_binary

        handle = (await self.call("TrustList.Open", TRUST_LIST, TL_OPEN, [ua.Variant(READ, ua.VariantType.Byte)]))[0]
        data = b""
        try:
            while True:
                chunk = (await self.call("TrustList.Read", TRUST_LIST, TL_READ,
                                         [ua.Variant(handle, ua.VariantType.UInt32), ua.Variant(65536, ua.VariantType.Int32)]))[0]
                if not chunk:
                    break
                data += chunk
        finally:
            await self.call("TrustList.Close", TRUST_LIST, TL_CLOSE, [ua.Variant(handle, ua.VariantType.UInt32)])
        value = struct_from_binary(ua.TrustListDataType, Buffer(data))
        return TrustList(list(value.TrustedCertificates or []), list(value.TrustedCrls or []),
                         list(value.IssuerCertificates or []), list(value.IssuerCrls or []))

    async def add_certificate(self, certificate: bytes, trusted: bool = True) -> None:
        from asyncua import ua

        await self.call("TrustList.AddCertificate", TRUST_LIST, TL_ADD_CERTIFICATE,
                        [ua.Variant(certificate, ua.VariantType.ByteString), ua.Variant(trusted, ua.VariantType.Boolean)])

    async def write_trust_list(self, lists: TrustList) -> bool:
        """Replace the whole trust list (Open Write|EraseExisting, Write, CloseAndUpdate); returns
        applyChangesRequired (False when the server returns no output, as node-opcua 2.157 does)."""
        from asyncua import ua
        from asyncua.ua.ua_binary import struct_to_binary

        value = ua.TrustListDataType()
        value.SpecifiedLists = ALL_LISTS
        value.TrustedCertificates, value.TrustedCrls = lists.trusted, lists.trusted_crls
        value.IssuerCertificates, value.IssuerCrls = lists.issuers, lists.issuer_crls
        handle = (await self.call("TrustList.Open", TRUST_LIST, TL_OPEN, [ua.Variant(WRITE_ERASE_EXISTING, ua.VariantType.Byte)]))[0]
        await self.call("TrustList.Write", TRUST_LIST, TL_WRITE,
                        [ua.Variant(handle, ua.VariantType.UInt32), ua.Variant(struct_to_binary(value), ua.VariantType.ByteString)])
        outputs = await self.call("TrustList.CloseAndUpdate", TRUST_LIST, TL_CLOSE_AND_UPDATE, [ua.Variant(handle, ua.VariantType.UInt32)])
        return bool(outputs[0]) if outputs else False
