"""OPC UA Part 12 pull, client side: the calls an application (certmgr agent) makes to a GDS.

Every call either returns its outputs or raises ``GdsCallError`` with the GDS's status code, so the agent can
tell "pending" (BadNothingToDo) from a refusal. Node ids are in the GDS namespace (gds_model).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from . import gds_model
from .channel import Identity, policy_class

PREFERENCE = ("Aes256_Sha256_RsaPss", "Basic256Sha256", "Aes128_Sha256_RsaOaep")


class GdsCallError(Exception):
    def __init__(self, step: str, status: str) -> None:
        super().__init__(f"{step}: {status}")
        self.step, self.status = step, status


@dataclass
class Endpoint:
    certificate: x509.Certificate
    policies: list[str]


async def read_endpoint(url: str, timeout: float = 10.0) -> Endpoint:
    """The GDS's certificate and SignAndEncrypt policies (GetEndpoints on a None channel, as every client does)."""
    from .probe import read_endpoint as probe_endpoint

    read = await probe_endpoint(url, timeout)
    return Endpoint(read.certificate, list(read.secure_policies))


class GdsClient:
    """One SignAndEncrypt session with a GDS, as ``identity`` (its channel certificate), optionally with a user
    name token (an enrolment token: user = the ApplicationUri, password = the token)."""

    def __init__(self, url: str, identity: Identity, server_certificate: x509.Certificate, policies: list[str], *,
                 user: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
        self.url, self.identity, self.server_certificate = url, identity, server_certificate
        self.policy = next((p for p in PREFERENCE if p in policies), "Basic256Sha256")
        self.user, self.timeout = user, timeout
        self.client = None
        self.idx: int | None = None

    async def __aenter__(self) -> GdsClient:
        from asyncua import Client, ua

        client = Client(self.url, timeout=self.timeout)
        client.application_uri = self.identity.app_uri
        if self.user:
            client.set_user(self.user[0])
            client.set_password(self.user[1])
        client.security_policy = policy_class(self.policy)(
            self.server_certificate, self.identity.certificate, self.identity.private_key,
            ua.MessageSecurityMode.SignAndEncrypt, host_cert_chain=[])
        client.uaclient.set_security(client.security_policy)
        try:
            await client.connect()
        except Exception as exc:  # refused (a status code) or dropped: the agent reports the status, not a traceback
            from .faults import describe_failure

            raise GdsCallError("session", describe_failure(exc)[0]) from None
        self.client = client
        self.idx = await client.get_namespace_index(gds_model.GDS_NAMESPACE)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            try:
                await self.client.disconnect()
            except Exception:  # the GDS may have dropped the channel already; nothing to clean up then
                pass
            self.client = None

    async def call(self, step: str, obj: int, method: int, args: list) -> list:
        from asyncua import ua

        from .faults import describe_failure, status_name

        request = ua.CallMethodRequest()
        request.ObjectId, request.MethodId = ua.NodeId(obj, self.idx), ua.NodeId(method, self.idx)
        request.InputArguments = args
        try:
            result = (await self.client.uaclient.call([request]))[0]
        except Exception as exc:  # a timeout or a dropped channel (an overloaded GDS): a status, as for a refusal
            raise GdsCallError(step, describe_failure(exc)[0]) from None
        if not result.StatusCode.is_good():
            raise GdsCallError(step, status_name(result.StatusCode.value))
        return [v.Value for v in result.OutputArguments or []]

    async def directory(self, method: str, *args) -> list:
        return await self.call(method, gds_model.DIRECTORY, gds_model.METHODS[method], list(args))

    async def find_application_id(self, app_uri: str):
        """The registration's ApplicationId (a NodeId) for ``app_uri``, or None."""
        from asyncua import ua

        await self.client.load_data_type_definitions()  # ApplicationRecordDataType, to read the id out of it
        records = (await self.directory("FindApplications", ua.Variant(app_uri, ua.VariantType.String)))[0] or []
        return records[0].ApplicationId if records else None

    async def start_signing_request(self, app_id, csr_der: bytes):
        from asyncua import ua

        outputs = await self.directory("StartSigningRequest", ua.Variant(app_id, ua.VariantType.NodeId),
                                       ua.Variant(ua.NodeId(), ua.VariantType.NodeId), ua.Variant(ua.NodeId(), ua.VariantType.NodeId),
                                       ua.Variant(csr_der, ua.VariantType.ByteString))
        return outputs[0]

    async def finish_request(self, app_id, request_id) -> tuple[bytes, list[bytes]]:
        """(certificate, issuer certificates); GdsCallError BadNothingToDo while the request waits for approval."""
        from asyncua import ua

        certificate, _key, issuers = await self.directory("FinishRequest", ua.Variant(app_id, ua.VariantType.NodeId),
                                                          ua.Variant(request_id, ua.VariantType.NodeId))
        return certificate, list(issuers or [])

    async def update_required(self, app_id) -> bool:
        from asyncua import ua

        return bool((await self.directory("GetCertificateStatus", ua.Variant(app_id, ua.VariantType.NodeId),
                                           ua.Variant(ua.NodeId(), ua.VariantType.NodeId),
                                           ua.Variant(ua.NodeId(), ua.VariantType.NodeId)))[0])

    async def read_trust_list(self, app_id):
        """GetTrustList, then the TrustList file read whole (Open mode 1, Read until empty, Close): the
        TrustListDataType with the CA certificate(s) and CRL(s)."""
        from asyncua import ua
        from asyncua.common.utils import Buffer
        from asyncua.ua.ua_binary import struct_from_binary

        await self.directory("GetTrustList", ua.Variant(app_id, ua.VariantType.NodeId),
                             ua.Variant(ua.NodeId(gds_model.DEFAULT_APPLICATION_GROUP, self.idx), ua.VariantType.NodeId))
        tl, methods = gds_model.TRUST_LIST, gds_model.TRUST_LIST_METHODS
        handle = (await self.call("TrustList.Open", tl, methods["Open"], [ua.Variant(1, ua.VariantType.Byte)]))[0]
        data = b""
        while True:  # a failed Read leaves the handle to the GDS (no Close on a channel that is likely gone)
            chunk = (await self.call("TrustList.Read", tl, methods["Read"],
                                     [ua.Variant(handle, ua.VariantType.UInt32), ua.Variant(65536, ua.VariantType.Int32)]))[0]
            if not chunk:
                break
            data += chunk
        await self.call("TrustList.Close", tl, methods["Close"], [ua.Variant(handle, ua.VariantType.UInt32)])
        return struct_from_binary(ua.TrustListDataType, Buffer(data))


def node_id_text(node_id) -> str:
    return node_id.to_string()


def node_id_from_text(text: str):
    from asyncua import ua

    return ua.NodeId.from_string(text)
