"""certmgr as an OPC UA Global Discovery Server (Part 12 pull): the OPC UA conversation.

An asyncua server with the GDS NodeSet, SignAndEncrypt endpoints only, certmgr's CA-issued certificate, user
name tokens checked against the GDS users, and the Directory / CertificateDirectory methods answered by
certmgr/services/gds.py and gds_requests.py. A refusal reaches the client as its Part 12 status code.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass

from cryptography import x509

from ..context import AppContext
from ..services import gds, gds_key_pairs, gds_requests
from ..services.gds import Caller, GdsRefused
from . import gds_model
from .channel import POLICY_NAMES, server_policy_type

log = logging.getLogger(__name__)

# The processor (connection + session) serving the current request; see install_caller_context.
_PROCESSOR: contextvars.ContextVar = contextvars.ContextVar("certmgr_gds_processor", default=None)
_caller_context_installed = False


def install_caller_context() -> None:
    """asyncua 2.1.0 workaround (the one place): method callbacks get only (parent, *args), not the session's user
    or the channel's certificate. UaProcessor.process_message handles each request of one connection and awaits
    the method callback in the same task, so a contextvar set around it tells the callback who calls."""
    global _caller_context_installed
    if _caller_context_installed:
        return
    from asyncua.server.uaprocessor import UaProcessor

    original = UaProcessor.process_message

    async def process_message(self, seqhdr, body):
        token = _PROCESSOR.set(self)
        try:
            return await original(self, seqhdr, body)
        finally:
            _PROCESSOR.reset(token)

    UaProcessor.process_message = process_message
    _caller_context_installed = True


def check_gds_internals() -> list[str]:
    """What install_caller_context and install_policy_refusal rely on in asyncua; empty when it is all there
    (tests/test_gds.py fails with this list when an asyncua upgrade changes it)."""
    import inspect

    from asyncua.server.uaprocessor import UaProcessor

    problems = []
    for name, parameters in (("process_message", ["seqhdr", "body"]), ("process", ["header", "body"])):
        function = getattr(UaProcessor, name, None)
        if function is None or not inspect.iscoroutinefunction(function):
            problems.append(f"UaProcessor.{name} is gone or no longer a coroutine")
        elif list(inspect.signature(function).parameters)[1:3] != parameters:
            problems.append(f"UaProcessor.{name} no longer takes {tuple(parameters)}")
    source = inspect.getsource(UaProcessor)
    for attribute in ("self._connection.security_policy", "self.session", "self._transport", "await self.session.call("):
        if attribute not in source:
            problems.append(f"UaProcessor no longer uses {attribute}")
    return problems


_policy_refusal_installed = False


def install_policy_refusal() -> None:
    """asyncua 2.1.0 workaround (the one place): an OpenSecureChannel asking for a policy or mode the server does
    not offer (a Sign-only channel here) raises inside the server and is never answered, so the client hangs until
    its timeout. On a GDS server (``iserver.certmgr_gds``) it is answered with a Part 6 ERR message,
    BadSecurityModeRejected, and the connection is closed, as UA-.NETStandard does."""
    global _policy_refusal_installed
    if _policy_refusal_installed:
        return
    from asyncua import ua
    from asyncua.server.uaprocessor import UaProcessor
    from asyncua.ua.ua_binary import uatcp_to_binary

    original = UaProcessor.process

    async def process(self, header, body):
        try:
            return await original(self, header, body)
        except ua.UaError as exc:
            if not getattr(self.iserver, "certmgr_gds", False) or "No matching policy" not in str(exc):
                raise
            log.info("refused a channel the GDS does not offer: %s", exc)
            error = ua.ErrorMessage(ua.StatusCode(ua.StatusCodes.BadSecurityModeRejected), "SignAndEncrypt only")
            self._transport.write(uatcp_to_binary(ua.MessageType.Error, error))
            return False

    UaProcessor.process = process
    _policy_refusal_installed = True


def _current_caller() -> Caller:
    from asyncua import ua

    processor = _PROCESSOR.get()
    if processor is None:  # a call from inside the server (none are made): no rights
        return Caller()
    policy = processor._connection.security_policy
    peer = getattr(policy, "peer_certificate", None)
    user = processor.session.user if processor.session is not None else None
    return Caller(
        user=getattr(user, "name", None), role=getattr(user, "gds_role", None),
        token_id=getattr(user, "token_id", None), token_app_id=getattr(user, "token_app_id", None),
        certificate=x509.load_der_x509_certificate(peer) if peer else None,
        secure=getattr(policy, "Mode", None) == ua.MessageSecurityMode.SignAndEncrypt,
        address=str(getattr(processor, "name", "") or ""),
    )


def _user_manager(ctx: AppContext):
    from asyncua.crypto.permission_rules import User, UserRole

    @dataclass
    class GdsUser(User):
        gds_role: str | None = None
        token_id: int | None = None
        token_app_id: int | None = None

    class GdsUserManager:
        """User name tokens are checked here (session activation); anonymous sessions get no GDS role (they may
        still act as ApplicationSelfAdmin through their channel certificate). A wrong password: BadUserAccessDenied.
        asyncua opens sessions on a SecurityPolicy None channel even when no None endpoint is offered: such a
        channel has no client certificate, and its session is refused here."""

        def get_user(self, iserver, username=None, password=None, certificate=None):
            from asyncua import ua
            from asyncua.common.utils import ServiceError

            from ..services.gds_users import authenticate

            if certificate is None:
                raise ServiceError(ua.StatusCodes.BadSecurityModeInsufficient)
            if username is None:
                return GdsUser(role=UserRole.User, name=None)
            if ":" in username:  # an ApplicationUri (GDS user names have no colon): an enrolment token
                from ..services.gds_tokens import ENROL_TOKEN, authenticate as token_valid

                found = token_valid(ctx, username, password or "")
                return None if found is None else GdsUser(role=UserRole.User, name=username, gds_role=ENROL_TOKEN,
                                                          token_id=found[0], token_app_id=found[1])
            role = authenticate(ctx, username, password or "")
            return None if role is None else GdsUser(role=UserRole.User, name=username, gds_role=role)

    return GdsUserManager()


class GdsServer:
    def __init__(self, ctx: AppContext, listen: str, identity) -> None:
        self.ctx, self.listen, self.identity = ctx, listen, identity
        self.server = None
        self.idx = 0
        self._files: dict[int, list] = {}  # TrustList file handles: [bytes, position]
        self._next_handle = 1

    async def start(self) -> None:
        from asyncua import Server, ua

        install_caller_context()
        install_policy_refusal()
        import ca
        from cryptography.hazmat.primitives import serialization

        pair = self.identity.store.own()
        key = ca.load_private_key_pem(self.identity.store.read_own_key(pair))
        server = Server(user_manager=_user_manager(self.ctx))
        await server.init()
        server.set_endpoint(self.listen)
        server.set_server_name("certmgr GDS")
        server.set_security_policy([server_policy_type(p) for p in POLICY_NAMES])
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        await server.set_application_uri(self.identity.app_uri)
        await server.load_certificate(pair.certificate.public_bytes(serialization.Encoding.DER))
        await server.load_private_key(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        server.set_certificate_validator(self._validate_client)
        server.iserver.certmgr_gds = True
        self.idx = await gds_model.load_gds_model(server)
        self._link(server)
        await server.start()
        self.server = server

    async def _validate_client(self, cert, app_description) -> None:
        """CreateSession: a certificate from certmgr's CA must be valid and not revoked; any other one (a new
        application's self-signed certificate) gets a session whose rights come from its user token only."""
        from asyncua import ua
        from asyncua.common.utils import ServiceError
        from cryptography.hazmat.primitives import serialization

        status, _ = gds_requests.revocation_status(self.ctx, cert.public_bytes(serialization.Encoding.DER))
        if status in ("BadCertificateRevoked", "BadCertificateTimeInvalid"):
            raise ServiceError(getattr(ua.StatusCodes, status))

    def _link(self, server) -> None:
        from asyncua import ua

        handlers = {
            "RegisterApplication": self._register, "GetApplication": self._get, "FindApplications": self._find,
            "UnregisterApplication": self._unregister, "StartSigningRequest": self._start_signing,
            "FinishRequest": self._finish, "GetCertificateGroups": self._groups, "GetTrustList": self._trust_list,
            "GetCertificateStatus": self._status, "CheckRevocationStatus": self._revocation,
            "UpdateApplication": self._update, "GetCertificates": self._certificates, "RevokeCertificate": self._revoke,
            "StartNewKeyPairRequest": self._start_new_key_pair, "QueryApplications": self._query,
        }
        for name, number in gds_model.METHODS.items():
            handler = handlers.get(name, self._not_implemented)
            server.link_method(server.get_node(ua.NodeId(number, self.idx)), self._guarded(name, handler))
        files = {"Open": self._open, "Read": self._read, "Close": self._close, "GetPosition": self._get_position,
                 "SetPosition": self._set_position}
        for name, number in gds_model.TRUST_LIST_METHODS.items():
            server.link_method(server.get_node(ua.NodeId(number, self.idx)), self._guarded(f"TrustList.{name}", files[name]))

    def _guarded(self, name: str, handler):
        """asyncua turns an exception in a callback into BadUnexpectedError: refusals are returned as a
        ua.StatusCode instead (the client sees BadUserAccessDenied, BadNothingToDo...)."""
        from asyncua import ua

        async def callback(parent, *args):
            caller = _current_caller()
            try:
                gds.resolve(self.ctx, caller)
                values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
                return handler(caller, *values)
            except GdsRefused as refused:
                log.info("%s refused for %s: %s %s", name, caller.label, refused.status, refused.message)
                try:
                    gds.audit_refusal(self.ctx, caller, name, refused)
                except Exception:  # the refusal must still reach the client
                    log.exception("cannot audit a refusal")
                return ua.StatusCode(getattr(ua.StatusCodes, refused.status))
            except Exception:
                log.exception("%s failed", name)
                return ua.StatusCode(ua.StatusCodes.BadInternalError)

        return callback

    # --- arguments ---
    def _app_id(self, node_id) -> int:
        from asyncua import ua

        if not isinstance(node_id, ua.NodeId) or node_id.NamespaceIndex != self.idx or not isinstance(node_id.Identifier, int):
            raise GdsRefused("BadNotFound", f"{node_id} is not an ApplicationId of this GDS")
        return node_id.Identifier

    def _node(self, number: int):
        from asyncua import ua

        return ua.Variant(ua.NodeId(number, self.idx), ua.VariantType.NodeId)

    def _record(self, record: gds.Record):
        from asyncua import ua

        value = ua.ApplicationRecordDataType(
            ApplicationId=ua.NodeId(record.application_id, self.idx), ApplicationUri=record.app_uri,
            ApplicationType=ua.ApplicationType(record.application_type),
            ApplicationNames=[ua.LocalizedText(n) for n in record.names], ProductUri=record.product_uri,
            DiscoveryUrls=record.discovery_urls, ServerCapabilities=record.server_capabilities)
        return value

    # --- Directory ---
    def _to_record(self, application) -> gds.Record:
        from asyncua import ua

        if not isinstance(application, ua.ApplicationRecordDataType):
            raise GdsRefused("BadDecodingError", "the Application argument is not an ApplicationRecordDataType")
        record = gds.Record(application.ApplicationUri or "", int(application.ApplicationType),
                            [n.Text for n in application.ApplicationNames or [] if n.Text], application.ProductUri or "",
                            list(application.DiscoveryUrls or []), list(application.ServerCapabilities or []))
        if not record.app_uri:
            raise GdsRefused("BadInvalidArgument", "the ApplicationUri is empty")
        return record

    def _register(self, caller, application):
        return [self._node(gds.register_application(self.ctx, caller, self._to_record(application)))]

    def _update(self, caller, application):
        record = self._to_record(application)
        record.application_id = self._app_id(application.ApplicationId)
        gds.update_application(self.ctx, caller, record)
        return []

    def _get(self, caller, application_id):
        from asyncua import ua

        record = gds.get_application(self.ctx, caller, self._app_id(application_id))
        return [ua.Variant(self._record(record), ua.VariantType.ExtensionObject)]

    def _find(self, caller, application_uri):
        from asyncua import ua

        records = gds.find_applications(self.ctx, caller, application_uri or "")
        return [ua.Variant([self._record(r) for r in records], ua.VariantType.ExtensionObject, is_array=True)]

    def _query(self, caller, start, limit, name, uri, app_type, product_uri, capabilities):
        from asyncua import ua

        reset, next_id, records = gds.query_applications(
            self.ctx, caller, start=int(start or 0), limit=int(limit or 0), name=name or "", uri=uri or "",
            app_type=int(app_type or 0), product_uri=product_uri or "", capabilities=list(capabilities or []))
        found = [ua.ApplicationDescription(ApplicationUri=r.app_uri, ProductUri=r.product_uri,
                                           ApplicationName=ua.LocalizedText(r.names[0] if r.names else ""),
                                           ApplicationType=ua.ApplicationType(r.application_type), DiscoveryUrls=r.discovery_urls)
                 for r in records]
        return [ua.Variant(reset, ua.VariantType.DateTime), ua.Variant(next_id, ua.VariantType.UInt32),
                ua.Variant(found, ua.VariantType.ExtensionObject, is_array=True)]

    def _unregister(self, caller, application_id):
        gds.unregister_application(self.ctx, caller, self._app_id(application_id))
        return []

    # --- CertificateDirectory ---
    def _check_group(self, group_id) -> None:
        from asyncua import ua

        if group_id is not None and not group_id.is_null() and group_id != ua.NodeId(gds_model.DEFAULT_APPLICATION_GROUP, self.idx):
            raise GdsRefused("BadInvalidArgument", f"certificate group {group_id} is not served (DefaultApplicationGroup only)")

    def _check_type(self, type_id) -> None:
        from asyncua import ua

        if type_id is not None and not type_id.is_null() and type_id != ua.NodeId(gds_model.RSA_SHA256_APPLICATION_CERTIFICATE_TYPE):
            raise GdsRefused("BadInvalidArgument", f"certificate type {type_id} is not served (RsaSha256ApplicationCertificateType)")

    def _start_signing(self, caller, application_id, group_id, type_id, request):
        app_id = self._app_id(application_id)
        self._check_group(group_id)
        self._check_type(type_id)
        request_id = gds_requests.start_signing_request(self.ctx, caller, app_id, bytes(request or b""))
        return [self._node(request_id)]

    def _start_new_key_pair(self, caller, application_id, group_id, type_id, subject_name, domain_names, key_format, password):
        # SubjectName and DomainNames are not taken: the certificate holds the registration, as for a CSR
        app_id = self._app_id(application_id)
        self._check_group(group_id)
        self._check_type(type_id)
        return [self._node(gds_key_pairs.start_new_key_pair(self.ctx, caller, app_id, key_format, password))]

    def _finish(self, caller, application_id, request_id):
        from asyncua import ua

        app_id = self._app_id(application_id)
        if not isinstance(request_id, ua.NodeId) or not isinstance(request_id.Identifier, int) or request_id.NamespaceIndex != self.idx:
            raise GdsRefused("BadInvalidArgument", f"{request_id} is not a RequestId of this GDS")
        done = gds_requests.finish_request(self.ctx, caller, app_id, request_id.Identifier)
        gds.note_pull(self.ctx, caller, app_id, "gds.finish")  # fleet status: when the agent last pulled
        return [ua.Variant(done.certificate_der, ua.VariantType.ByteString),
                ua.Variant(done.private_key, ua.VariantType.ByteString),
                ua.Variant(done.issuer_ders, ua.VariantType.ByteString, is_array=True)]

    def _certificates(self, caller, application_id, group_id):
        from asyncua import ua

        self._check_group(group_id)
        ders = gds_requests.current_certificates(self.ctx, caller, self._app_id(application_id))
        types = [ua.NodeId(gds_model.RSA_SHA256_APPLICATION_CERTIFICATE_TYPE)] * len(ders)
        return [ua.Variant(types, ua.VariantType.NodeId, is_array=True), ua.Variant(ders, ua.VariantType.ByteString, is_array=True)]

    def _revoke(self, caller, application_id, certificate):
        gds_requests.revoke_certificate(self.ctx, caller, self._app_id(application_id), bytes(certificate or b""))
        return []

    def _groups(self, caller, application_id):
        from asyncua import ua

        gds.get_application(self.ctx, caller, self._app_id(application_id))
        return [ua.Variant([ua.NodeId(gds_model.DEFAULT_APPLICATION_GROUP, self.idx)], ua.VariantType.NodeId, is_array=True)]

    def _trust_list(self, caller, application_id, group_id):
        self._check_group(group_id)
        gds.get_application(self.ctx, caller, self._app_id(application_id))
        gds.note_pull(self.ctx, caller, self._app_id(application_id), "gds.trust_list")
        return [self._node(gds_model.TRUST_LIST)]

    def _status(self, caller, application_id, group_id, type_id):
        from asyncua import ua

        self._check_group(group_id)
        self._check_type(type_id)
        required = gds_requests.update_required(self.ctx, caller, self._app_id(application_id))
        return [ua.Variant(required, ua.VariantType.Boolean)]

    def _revocation(self, caller, certificate):
        from asyncua import ua

        status, until = gds_requests.revocation_status(self.ctx, bytes(certificate or b""))
        # no validity for a bad status: the OPC UA null DateTime (asyncua cannot encode None as a DateTime)
        return [ua.Variant(ua.StatusCode(getattr(ua.StatusCodes, status)), ua.VariantType.StatusCode),
                ua.Variant(until or ua.get_win_epoch(), ua.VariantType.DateTime)]

    def _not_implemented(self, caller, *args):
        raise GdsRefused("BadNotImplemented", "certmgr's GDS does not serve this method yet")

    # --- TrustList (FileType, read only) ---
    def _open(self, caller, mode):
        from asyncua import ua
        from asyncua.ua.ua_binary import struct_to_binary

        if caller.role is None and caller.self_app_id is None:  # (a token session has the role EnrolmentToken)
            raise GdsRefused("BadUserAccessDenied", "reading the trust list needs a GDS user or a registered application")
        if int(mode) != 1:  # Part 5 FileType: 1 = Read; the GDS's trust list is written by certmgr only
            raise GdsRefused("BadNotWritable", "the trust list is read only (open it with mode 1)")
        lists = gds_requests.trust_lists(self.ctx)
        data = struct_to_binary(ua.TrustListDataType(SpecifiedLists=15, **lists))
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        self._files[handle] = [data, 0, caller.certificate]
        return [ua.Variant(handle, ua.VariantType.UInt32)]

    def _file(self, caller, handle) -> list:
        entry = self._files.get(int(handle))
        if entry is None or entry[2] != caller.certificate:
            raise GdsRefused("BadInvalidArgument", f"file handle {handle} is not open on this channel")
        return entry

    def _read(self, caller, handle, length):
        from asyncua import ua

        entry = self._file(caller, handle)
        data, position = entry[0], entry[1]
        chunk = data[position:position + max(0, int(length))]
        entry[1] = position + len(chunk)
        return [ua.Variant(chunk, ua.VariantType.ByteString)]

    def _close(self, caller, handle):
        self._file(caller, handle)
        self._files.pop(int(handle), None)
        return []

    def _get_position(self, caller, handle):
        from asyncua import ua

        return [ua.Variant(self._file(caller, handle)[1], ua.VariantType.UInt64)]

    def _set_position(self, caller, handle, position):
        entry = self._file(caller, handle)
        entry[1] = min(int(position), len(entry[0]))
        return []

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


async def serve(ctx: AppContext, listen: str, identity, ready=None) -> None:
    """Run until cancelled (Ctrl-C / SIGTERM)."""
    server = GdsServer(ctx, listen, identity)
    await server.start()
    if ready is not None:
        ready(server)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await server.stop()


class GdsThread:
    """The GDS in a thread with its own event loop, for `certmgr daemon` ([gds] serve = true)."""

    def __init__(self, ctx: AppContext, listen: str, identity) -> None:
        import threading

        self.ctx, self.listen, self.identity = ctx, listen, identity
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop = None
        self._stop = None
        self._thread = threading.Thread(target=self._run, name="certmgr-gds", daemon=True)

    def _run(self) -> None:
        async def main():
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            server = GdsServer(self.ctx, self.listen, self.identity)
            try:
                await server.start()
            except BaseException as exc:  # reported to start() in the daemon's thread
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop()

        asyncio.run(main())

    def start(self, timeout: float = 60) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the GDS did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
