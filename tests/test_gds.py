"""certmgr as a Part 12 GDS: the vendored NodeSet and its data types, then `certmgr gds serve` run as an operator
runs it (a child process) with real asyncua and node-opcua clients: enrolment with approval, self-renewal,
the trust list, revocation, and each refusal with its status code."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

import ca
import pki
from certmgr.opcua import gds_model
from tests.helpers import free_port

VENDORED_SHA256 = "1c807b5a689cc51b0575fe16f0eb1efc45233598be3e0e49ee4b7113026abc88"


def test_vendored_nodeset_is_the_recorded_file():
    assert hashlib.sha256(gds_model.NODESET.read_bytes()).hexdigest() == VENDORED_SHA256


def test_gds_nodeset_loads_and_names_every_directory_method():
    from asyncua import Server, ua
    from asyncua.ua.ua_binary import extensionobject_to_binary

    async def run():
        server = Server()
        await server.init()
        idx = await gds_model.load_gds_model(server)
        directory = server.get_node(ua.NodeId(gds_model.DIRECTORY, idx))
        names = {}
        for child in await directory.get_children():
            names[(await child.read_browse_name()).Name] = child.nodeid.Identifier
        record = ua.ApplicationRecordDataType(ApplicationUri="urn:test:app", ApplicationType=ua.ApplicationType.Server)
        sdef = await server.get_node(ua.NodeId(1, idx)).read_data_type_definition()
        return idx, (await directory.read_browse_name()).Name, names, record, sdef

    idx, name, names, record, sdef = asyncio.run(run())
    assert idx > 0 and name == "Directory"
    # the importer left this null (the NodeSet writes HasEncoding on the encoding node): "Default Binary" is i=134
    assert sdef.DefaultEncodingId == ua.NodeId(134, idx)
    assert ua.typeid_by_extension_objects[type(record)] == ua.NodeId(134, idx)
    for method, number in gds_model.METHODS.items():
        assert names.get(method) == number, method
    assert record.ApplicationUri == "urn:test:app"
    assert len(extensionobject_to_binary(record)) > 20  # a body, not an empty ExtensionObject


def test_asyncua_internals_the_gds_workarounds_rely_on_are_there():
    from certmgr.opcua.gds_server import check_gds_internals

    assert check_gds_internals() == []


def test_gds_settings_are_typed_and_strict(tmp_path):
    from certmgr.config import parse_settings, render_settings, Settings
    from certmgr.errors import InputError

    parsed = parse_settings(render_settings(Settings()), tmp_path / "certmgr.toml").gds
    assert parsed.listen == "opc.tcp://127.0.0.1:4845" and not parsed.serve
    assert not parsed.auto_approve_new and not parsed.auto_approve_renewals
    for text, words in (('[gds]\nlisten = "127.0.0.1:4845"', "is not opc.tcp://HOST:PORT"),
                        ('[gds]\nauto_approve_new = "yes"', "must be a bool"),
                        ('[gds]\ndns_names = [1]', "list of strings"),
                        ('[gds]\nauto_aprove_renewals = true', "did you mean `auto_approve_renewals`")):
        with pytest.raises(InputError) as error:
            parse_settings(text, tmp_path / "certmgr.toml")
        assert words in error.value.one_line() and "(line 2)" in error.value.one_line()


# --- certmgr gds serve: a real server (the CLI in a child process) and real clients ---------------------------

APP_URI = "urn:plant1:gateway"
PASSWORD = "correct horse battery"


def _password_file(tmp_path, name: str, text: str = PASSWORD):
    path = tmp_path / f"{name}.pw"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    return path


@contextmanager
def gds_server(cm, port: int):
    """`certmgr gds serve` in a child process, as an operator starts it; stopped (SIGTERM) at the end."""
    url = f"opc.tcp://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "certmgr", "gds", "serve", "--listen", url], env=cm.subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert "certmgr GDS on" in line, line + (process.stderr.read() if process.poll() is not None else "")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def _client_identity(cm, tmp_path, uri: str, name: str):
    """A CA-issued client certificate and key (a store certmgr writes), for an administrator's tool."""
    store = tmp_path / name
    cm("issue", "--app-uri", uri, "--store", str(store), "--role", "client")
    pair = pki.ApplicationStore(store, "ua-net").own()
    key = ca.load_private_key_pem(pki.ApplicationStore(store, "ua-net").read_own_key(pair))
    return pair.certificate, key


def _csr(key, uri: str, extra_dns: str = "evil.example.com") -> bytes:
    """A CSR asking for more than the registration gives (a CA:TRUE basic constraint, another DNS name)."""
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asked-for-name")]))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName(extra_dns)]), False)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), True))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


async def _connect(url: str, cert, key, *, user: tuple[str, str] | None = None, policy: str = "Basic256Sha256",
                   mode: str = "SignAndEncrypt"):
    from asyncua import Client, ua

    from certmgr.opcua.channel import policy_class

    client = Client(url, timeout=10)
    client.application_uri = "urn:test:gds-client"
    if user:
        client.set_user(user[0])
        client.set_password(user[1])
    endpoints = await client.connect_and_get_server_endpoints()
    server_cert = x509.load_der_x509_certificate(endpoints[0].ServerCertificate)
    client.security_policy = policy_class(policy)(server_cert, cert, key, getattr(ua.MessageSecurityMode, mode), host_cert_chain=[])
    client.uaclient.set_security(client.security_policy)
    await client.connect()
    await client.load_data_type_definitions()
    return client


class Gds:
    """The Directory methods as a client calls them."""

    def __init__(self, client) -> None:
        from asyncua import ua

        self.client, self.ua = client, ua

    async def idx(self) -> int:
        return await self.client.get_namespace_index(gds_model.GDS_NAMESPACE)

    async def call(self, method: str, *args):
        idx = await self.idx()
        directory = self.client.get_node(self.ua.NodeId(gds_model.DIRECTORY, idx))
        return await directory.call_method(self.ua.NodeId(gds_model.METHODS[method], idx), *args)

    async def status_of(self, method: str, *args) -> str:
        from asyncua.ua.uaerrors import UaStatusCodeError

        try:
            await self.call(method, *args)
        except UaStatusCodeError as exc:
            return self.ua.StatusCode(exc.code).name
        return "Good"

    async def register(self, uri: str = APP_URI, urls=("opc.tcp://gw1.plant1.local:4840",)):
        ua = self.ua
        record = ua.ApplicationRecordDataType(
            ApplicationUri=uri, ApplicationType=ua.ApplicationType.ClientAndServer,
            ApplicationNames=[ua.LocalizedText("gateway")], ProductUri="urn:vendor:gateway", DiscoveryUrls=list(urls))
        return await self.call("RegisterApplication", record)

    async def start(self, app_id, csr: bytes):
        ua = self.ua
        return await self.call("StartSigningRequest", app_id, ua.NodeId(), ua.NodeId(),
                               ua.Variant(csr, ua.VariantType.ByteString))


@pytest.fixture
def gds_home(initialised, tmp_path):
    initialised("gds", "user", "add", "registrar", "--role", "DiscoveryAdmin",
                "--password-file", str(_password_file(tmp_path, "registrar")))
    initialised("gds", "user", "add", "enrol", "--role", "CertificateAuthorityAdmin",
                "--password-file", str(_password_file(tmp_path, "enrol")))
    return initialised


def test_pull_enrolment_waits_for_the_operator_and_the_certificate_is_the_registrations(gds_home, tmp_path, pooled_keys):
    """Register (DiscoveryAdmin), CSR (CertificateAuthorityAdmin), BadNothingToDo until `certmgr gds approve`,
    then a certificate that chains to the CA and holds the registration, none of the CSR's extras; recorded
    like any other (list), audited; a renewal by the application itself with its new certificate."""
    cm = gds_home
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    app_key = pooled_keys.get(2048)
    port = free_port()


    with gds_server(cm, port) as url:
        async def run():
            registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                gds = Gds(registrar)
                app_id = await gds.register()
                again = await gds.register()  # the same application: the same id
                record = await gds.call("GetApplication", app_id)
                found = await gds.call("FindApplications", APP_URI)
                # a DiscoveryAdmin registers but may not ask for certificates
                refused_role = await gds.status_of("StartSigningRequest", app_id, gds.ua.NodeId(), gds.ua.NodeId(),
                                                   gds.ua.Variant(_csr(app_key, APP_URI), gds.ua.VariantType.ByteString))
            finally:
                await registrar.disconnect()
            enrol_client = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD), policy="Aes256_Sha256_RsaPss")
            try:
                gds = Gds(enrol_client)
                wrong_uri = await gds.status_of("StartSigningRequest", app_id, gds.ua.NodeId(), gds.ua.NodeId(),
                                                gds.ua.Variant(_csr(app_key, "urn:plant1:other"), gds.ua.VariantType.ByteString))
                request_id = await gds.start(app_id, _csr(app_key, APP_URI))
                waiting = await gds.status_of("FinishRequest", app_id, request_id)
                pending = cm.json("gds", "pending")
                cm("gds", "approve", str(request_id.Identifier))
                certificate, private_key, issuers = await gds.call("FinishRequest", app_id, request_id)
                groups = await gds.call("GetCertificateGroups", app_id)
                trust_list_id = await gds.call("GetTrustList", app_id, groups[0])
                update_required = await gds.call("GetCertificateStatus", app_id, groups[0], gds.ua.NodeId())
                current = await gds.call("GetCertificates", app_id, gds.ua.NodeId())
            finally:
                await enrol_client.disconnect()
            registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                gds = Gds(registrar)
                ua = gds.ua
                moved = ua.ApplicationRecordDataType(
                    ApplicationId=app_id, ApplicationUri=APP_URI, ApplicationType=ua.ApplicationType.ClientAndServer,
                    ApplicationNames=[ua.LocalizedText("gateway")], DiscoveryUrls=["opc.tcp://10.0.0.7:4840"])
                await gds.call("UpdateApplication", moved)
                revoke_refused = await gds.status_of("RevokeCertificate", app_id, ua.Variant(certificate, ua.VariantType.ByteString))
            finally:
                await registrar.disconnect()
            listed = {row["app_uri"]: row for row in cm.json("list")}
            fleet = {row["app_uri"]: row for row in cm("fleet", "status", "--json", code=None).json()}
            enrol_client = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD))
            try:
                gds = Gds(enrol_client)
                await gds.call("RevokeCertificate", app_id, gds.ua.Variant(certificate, gds.ua.VariantType.ByteString))
                after_revoke = await gds.call("GetCertificateStatus", app_id, groups[0], gds.ua.NodeId())
            finally:
                await enrol_client.disconnect()
            current = (current, revoke_refused, after_revoke, listed, fleet)
            return (app_id, again, record, found, refused_role, wrong_uri, waiting, pending, request_id, certificate,
                    private_key, issuers, groups, trust_list_id, update_required, current)

        (app_id, again, record, found, refused_role, wrong_uri, waiting, pending, request_id, certificate, private_key,
         issuers, groups, trust_list_id, update_required, current) = asyncio.run(run())

    assert again == app_id and record.ApplicationUri == APP_URI and [r.ApplicationUri for r in found] == [APP_URI]
    assert refused_role == "BadUserAccessDenied"
    assert wrong_uri == "BadCertificateUriInvalid"
    assert waiting == "BadNothingToDo"
    assert [(p["id"], p["app_uri"]) for p in pending] == [(request_id.Identifier, APP_URI)]
    cert = x509.load_der_x509_certificate(certificate)
    ca_cert = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    assert pki.cert_signed_by(cert, ca_cert) and [x509.load_der_x509_certificate(d).subject for d in issuers] == [ca_cert.subject]
    assert private_key is None  # the key stayed with the application
    assert cert.public_key().public_numbers() == app_key.public_key().public_numbers()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [APP_URI]
    assert san.get_values_for_type(x509.DNSName) == ["gw1.plant1.local"]  # from the registration, not evil.example.com
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gateway"
    assert update_required is False
    from asyncua import ua

    (types, ders), revoke_refused, after_revoke, listed, fleet = current
    assert ders == [certificate] and types == [ua.NodeId(12560)]
    assert listed[APP_URI]["thumbprint"] == pki.thumbprint(cert)  # in `certmgr list` like any other, while active
    assert fleet[APP_URI]["kind"] == "pull" and fleet[APP_URI]["thumbprint"] == pki.thumbprint(cert)
    assert revoke_refused == "BadUserAccessDenied" and after_revoke is True  # revoked: it needs a new one
    (dns, ips, status), = cm.sql("SELECT a.dns_names, a.ip_addresses, c.status FROM applications a JOIN certificates c "
                                 "ON c.application_id = a.id WHERE a.app_uri = :uri", uri=APP_URI)
    def listed(value):  # a JSON column: text on SQLite, already a list through psycopg on PostgreSQL
        return json.loads(value) if isinstance(value, str) else value

    assert (listed(dns), listed(ips), status) == ([], ["10.0.0.7"], "revoked")
    actions = [row[0] for row in cm.sql("SELECT action FROM audit_events WHERE action LIKE 'gds.%' OR action = 'certificate.pull' ORDER BY id")]
    for expected in ("gds.register", "gds.refused", "gds.request", "gds.approve", "certificate.pull"):
        assert expected in actions, actions


async def _enrol(url, admin_cert, admin_key, app_key, cm, uri: str = APP_URI):
    """Register and get a first certificate (operator approval in between); returns (app_id, certificate DER)."""
    registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
    try:
        app_id = await Gds(registrar).register(uri)
    finally:
        await registrar.disconnect()
    client = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD))
    try:
        gds = Gds(client)
        request_id = await gds.start(app_id, _csr(app_key, uri))
        cm("gds", "approve", str(request_id.Identifier))
        certificate, _, _ = await gds.call("FinishRequest", app_id, request_id)
    finally:
        await client.disconnect()
    return app_id, certificate


async def _read_trust_list(client):
    from asyncua import ua
    from asyncua.ua.ua_binary import struct_from_binary

    idx = await client.get_namespace_index(gds_model.GDS_NAMESPACE)
    trust_list = client.get_node(ua.NodeId(gds_model.TRUST_LIST, idx))
    method = {name: ua.NodeId(number, idx) for name, number in gds_model.TRUST_LIST_METHODS.items()}
    handle = await trust_list.call_method(method["Open"], ua.Variant(1, ua.VariantType.Byte))
    data = b""
    while True:
        chunk = await trust_list.call_method(method["Read"], ua.Variant(handle, ua.VariantType.UInt32),
                                             ua.Variant(700, ua.VariantType.Int32))
        if not chunk:
            break
        data += chunk
    await trust_list.call_method(method["Close"], ua.Variant(handle, ua.VariantType.UInt32))
    from asyncua.common.utils import Buffer

    return struct_from_binary(ua.TrustListDataType, Buffer(data))


def test_the_application_renews_itself_reads_the_trust_list_and_a_revoked_one_is_refused(gds_home, tmp_path, pooled_keys):
    """ApplicationSelfAdmin: the channel certificate is the application's current one (no user token). With
    [gds] auto_approve_renewals the renewal needs no operator; the TrustList file holds the CA and its CRL;
    after `certmgr revoke` the old certificate can no longer open a session and CheckRevocationStatus says so."""
    from asyncua import ua

    from tests.helpers import configure

    cm = gds_home
    configure(cm, "[gds]\nauto_approve_renewals = true")
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    other_cert, other_key = _client_identity(cm, tmp_path, "urn:test:other", "other-store")
    first_key, second_key = pooled_keys.get(2048), pooled_keys.get(2048)

    with gds_server(cm, free_port()) as url:
        async def run():
            app_id, first = await _enrol(url, admin_cert, admin_key, first_key, cm)
            me = await _connect(url, x509.load_der_x509_certificate(first), first_key)  # anonymous, own certificate
            try:
                gds = Gds(me)
                record = await gds.call("GetApplication", app_id)
                trust = await _read_trust_list(me)
                request_id = await gds.start(app_id, _csr(second_key, APP_URI))
                second, _, _ = await gds.call("FinishRequest", app_id, request_id)
                # its channel certificate is superseded now: ApplicationSelfAdmin needs the current one
                after = await gds.status_of("GetApplication", app_id)
                good = await gds.call("CheckRevocationStatus", ua.Variant(second, ua.VariantType.ByteString))
            finally:
                await me.disconnect()
            stranger = await _connect(url, other_cert, other_key)  # a CA-issued certificate of another application
            try:
                foreign = await Gds(stranger).status_of("GetApplication", app_id)
                foreign_csr = await Gds(stranger).status_of("StartSigningRequest", app_id, ua.NodeId(), ua.NodeId(),
                                                            ua.Variant(_csr(other_key, APP_URI), ua.VariantType.ByteString))
            finally:
                await stranger.disconnect()
            cm("revoke", pki.thumbprint(x509.load_der_x509_certificate(second)), "--reason", "keyCompromise", "--yes", "--no-probe")
            try:
                revoked_session = await _connect(url, x509.load_der_x509_certificate(second), second_key)
                await revoked_session.disconnect()
                revoked_refused = "connected"
            except Exception as exc:  # noqa: BLE001 - the refusal is what is asserted
                revoked_refused = type(exc).__name__ + str(exc)
            admin = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD))
            try:
                revoked = await Gds(admin).call("CheckRevocationStatus", ua.Variant(second, ua.VariantType.ByteString))
                old_ok = await Gds(admin).status_of("GetCertificateStatus", app_id, ua.NodeId(), ua.NodeId())
            finally:
                await admin.disconnect()
            return (record, first, second, trust, after, good, foreign, foreign_csr, revoked_refused, revoked, old_ok)

        record, first, second, trust, after, good, foreign, foreign_csr, revoked_refused, revoked, old_ok = asyncio.run(run())

    assert record.ApplicationUri == APP_URI
    assert pki.thumbprint(x509.load_der_x509_certificate(first)) != pki.thumbprint(x509.load_der_x509_certificate(second))
    statuses = dict(cm.sql("SELECT thumbprint, status FROM certificates"))
    assert statuses[pki.thumbprint(x509.load_der_x509_certificate(first))] == "superseded"
    assert statuses[pki.thumbprint(x509.load_der_x509_certificate(second))] == "revoked"
    ca_der = (cm.home / "ca" / "ca.der").read_bytes()
    assert trust.TrustedCertificates == [ca_der] and len(trust.TrustedCrls) == 1
    assert x509.load_der_x509_crl(trust.TrustedCrls[0]).issuer == x509.load_der_x509_certificate(ca_der).subject
    assert good[0].is_good() and after == "BadUserAccessDenied"
    assert foreign == "BadUserAccessDenied" and foreign_csr == "BadUserAccessDenied"
    assert "BadCertificateRevoked" in revoked_refused, revoked_refused
    assert ua.StatusCode(revoked[0].value).name == "BadCertificateRevoked"
    assert old_ok == "Good"
    requests = cm.sql("SELECT state, self_renewal, decided_by FROM gds_requests ORDER BY id")
    assert requests[0][0] == "issued" and not requests[0][1]
    assert requests[1][0] == "issued" and requests[1][1] and "auto_approve_renewals" in requests[1][2]


def test_refusals_carry_their_part12_status_codes(gds_home, tmp_path, pooled_keys):
    """Wrong password, anonymous registration, Sign-only and None channels, an unregistered application."""
    from asyncua import ua

    cm = gds_home
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    app_key = pooled_keys.get(2048)

    async def failure(coroutine) -> str:
        try:
            client = await coroutine
        except Exception as exc:  # noqa: BLE001 - the refusal is what is asserted
            code = getattr(exc, "code", None)
            return ua.StatusCode(code).name if code is not None else type(exc).__name__
        await client.disconnect()
        return "connected"

    with gds_server(cm, free_port()) as url:
        async def run():
            wrong_password = await failure(_connect(url, admin_cert, admin_key, user=("enrol", "not the password")))
            no_user = await failure(_connect(url, admin_cert, admin_key, user=("nobody", PASSWORD)))
            sign_only = await failure(_connect(url, admin_cert, admin_key, user=("registrar", PASSWORD), mode="Sign"))
            anonymous = await _connect(url, admin_cert, admin_key)
            try:
                anonymous_register = await Gds(anonymous).status_of(
                    "RegisterApplication", ua.ApplicationRecordDataType(ApplicationUri=APP_URI, ApplicationType=ua.ApplicationType.Client))
            finally:
                await anonymous.disconnect()
            from asyncua import Client

            from unittest import mock

            plain = Client(url, timeout=10)  # SecurityPolicy None; asyncua's client would refuse it itself, so its
            try:  # endpoint check is bypassed to see what the server says
                with mock.patch.object(Client, "find_endpoint", staticmethod(lambda endpoints, mode, uri: endpoints[0])):
                    await plain.connect()
                await plain.load_data_type_definitions()
                none_channel = await Gds(plain).status_of(
                    "RegisterApplication", ua.ApplicationRecordDataType(ApplicationUri=APP_URI, ApplicationType=ua.ApplicationType.Client))
                await plain.disconnect()
            except Exception as exc:  # noqa: BLE001 - refusing the session itself is as good
                plain.disconnect_socket()
                none_channel = getattr(exc, "code", None) and ua.StatusCode(exc.code).name or f"{type(exc).__name__}: {exc}"
            app_id, _ = await _enrol(url, admin_cert, admin_key, app_key, cm)
            registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                gds = Gds(registrar)
                not_implemented = await gds.status_of("QueryServers", ua.Variant(0, ua.VariantType.UInt32),
                                                      ua.Variant(10, ua.VariantType.UInt32), "", "", "",
                                                      ua.Variant([], ua.VariantType.String))
                await gds.call("UnregisterApplication", app_id)
                gone = await gds.status_of("GetApplication", app_id)
            finally:
                await registrar.disconnect()
            enrol = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD))
            try:
                unregistered_csr = await Gds(enrol).status_of("StartSigningRequest", app_id, ua.NodeId(), ua.NodeId(),
                                                              ua.Variant(_csr(app_key, APP_URI), ua.VariantType.ByteString))
            finally:
                await enrol.disconnect()
            return wrong_password, no_user, sign_only, anonymous_register, none_channel, not_implemented, gone, unregistered_csr

        results = asyncio.run(run())

    wrong_password, no_user, sign_only, anonymous_register, none_channel, not_implemented, gone, unregistered_csr = results
    assert wrong_password == "BadUserAccessDenied" and no_user == "BadUserAccessDenied"
    assert sign_only == "BadSecurityModeRejected", sign_only
    assert anonymous_register == "BadUserAccessDenied"
    assert none_channel == "BadSecurityModeInsufficient", none_channel
    assert not_implemented == "BadNotImplemented"
    assert gone == "BadNotFound" and unregistered_csr == "BadNotFound"
    # unregistering revoked the application's certificate and a new CRL lists it
    (status, reason, serial), = cm.sql("SELECT c.status, c.revocation_reason, c.serial_hex FROM certificates c "
                                       "JOIN applications a ON a.id = c.application_id WHERE a.app_uri = :uri", uri=APP_URI)
    assert (status, reason) == ("revoked", "cessationOfOperation")
    crl = x509.load_der_x509_crl(cm.sql("SELECT der FROM crls ORDER BY number DESC LIMIT 1")[0][0])
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    failed = cm.sql("SELECT target FROM audit_events WHERE action = 'gds.login_failed'")
    assert {row[0] for row in failed} == {"enrol", "nobody"}


def test_operator_commands_refuse_bad_input_and_a_denied_request_is_refused(gds_home, tmp_path, pooled_keys):
    """gds user add / approve / deny and app add --deploy pull check their input (exit 2, nothing written);
    renew refuses a pull application; a denied request's FinishRequest is BadRequestNotAllowed."""
    cm = gds_home
    short = _password_file(tmp_path, "short", "short")
    assert "shorter than" in cm("gds", "user", "add", "x", "--role", "DiscoveryAdmin", "--password-file", str(short), code=2).stderr
    assert "is not one of" in cm("gds", "user", "add", "x", "--role", "SecurityAdmin", "--password-file", str(short), code=2).stderr
    assert "exists" in cm("gds", "user", "add", "enrol", "--role", "DiscoveryAdmin",
                          "--password-file", str(_password_file(tmp_path, "again")), code=2).stderr
    assert [u["name"] for u in cm.json("gds", "user", "list")] == ["enrol", "registrar"]
    hashes = [row[0] for row in cm.sql("SELECT password_hash FROM gds_users")]
    assert all(h.startswith("scrypt$") and PASSWORD not in h for h in hashes)
    assert "no GDS request 99" in cm("gds", "approve", "99", code=2).stderr
    added = cm.json("app", "add", "--app-uri", "urn:plant1:hmi", "--deploy", "pull", "--dns", "hmi.plant1.local", "--role", "both")
    assert added["deploy"] == "pull"
    assert "for push" in cm("app", "add", "--app-uri", "urn:plant1:x", "--deploy", "pull", "--endpoint", "opc.tcp://x:4840", code=2).stderr
    assert "pulls its certificates" in cm("renew", "--app-uri", "urn:plant1:hmi", code=2).stderr
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    key = pooled_keys.get(2048)

    with gds_server(cm, free_port()) as url:
        async def run():
            from asyncua import ua

            client = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD), policy="Aes128_Sha256_RsaOaep")
            try:
                gds = Gds(client)
                found = await gds.call("FindApplications", "urn:plant1:hmi")  # registered by the operator
                app_id = found[0].ApplicationId
                request_id = await gds.start(app_id, _csr(key, "urn:plant1:hmi"))
                cm("gds", "deny", str(request_id.Identifier), "--reason", "not expected")
                denied = await gds.status_of("FinishRequest", app_id, request_id)
                twice = cm("gds", "approve", str(request_id.Identifier), code=2).stderr
                unknown = await gds.status_of("FinishRequest", app_id, ua.NodeId(999999, request_id.NamespaceIndex))
            finally:
                await client.disconnect()
            return found, denied, twice, unknown

        found, denied, twice, unknown = asyncio.run(run())

    assert found[0].ApplicationUri == "urn:plant1:hmi"
    assert denied == "BadRequestNotAllowed" and "is denied" in twice and unknown == "BadInvalidArgument"
    assert cm.sql("SELECT count(*) FROM certificates c JOIN applications a ON a.id = c.application_id "
                  "WHERE a.app_uri = 'urn:plant1:hmi'")[0][0] == 0
    assert cm.sql("SELECT action FROM audit_events WHERE action = 'gds.deny'")


def test_a_node_opcua_client_pulls_a_certificate_that_openssl_validates(gds_home, tmp_path, pooled_keys):
    """An independent stack with a self-signed certificate: node-opcua registers (RegistrationAuthorityAdmin), sends
    the CSR with a one-time enrolment token, polls FinishRequest while the operator decides, and reads the TrustList
    file; openssl validates the certificate against the CA and its CRL; the token is spent."""
    import shutil

    from asyncua import ua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary

    from tests.helpers import NODE_PUSH_DIR, npm_installed

    cm = gds_home
    npm_installed(NODE_PUSH_DIR, "node-opcua")
    uri = "urn:plant1:node-gateway"
    pki_dir, out = tmp_path / "node-pki", tmp_path / "out"
    (pki_dir / "trusted" / "certs").mkdir(parents=True)
    (pki_dir / "trusted" / "crl").mkdir(parents=True)
    out.mkdir()
    shutil.copy(cm.home / "ca" / "ca.der", pki_dir / "trusted" / "certs" / "ca.der")  # the client trusts the GDS's CA
    crl_der = cm.sql("SELECT der FROM crls ORDER BY number DESC LIMIT 1")[0][0]
    (pki_dir / "trusted" / "crl" / "ca.crl").write_bytes(crl_der)
    key = pooled_keys.get(2048)
    (tmp_path / "csr.der").write_bytes(_csr(key, uri))
    # the operator registers it and hands its host a one-time token; node-opcua's own certificate is self-signed
    cm("gds", "user", "add", "ra", "--role", "RegistrationAuthorityAdmin", "--password-file", str(_password_file(tmp_path, "ra")))
    cm("app", "add", "--app-uri", uri, "--deploy", "pull", "--dns", "node-gw.plant1.local", "--role", "both")
    token = cm.json("gds", "enrol-token", "--app-uri", uri, "--valid", "1h")["token"]
    env = {**os.environ, "REGISTRAR_USER": "ra", "REGISTRAR_PASSWORD": PASSWORD, "ENROL_USER": uri, "ENROL_PASSWORD": token}

    with gds_server(cm, free_port()) as url:
        node = subprocess.Popen(["node", str(NODE_PUSH_DIR / "gds_client.js"), url, str(pki_dir), uri, str(tmp_path / "csr.der"), str(out)],
                                cwd=NODE_PUSH_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        try:
            for line in node.stdout:
                lines.append(line.rstrip())
                if line.startswith("PENDING "):
                    cm("gds", "approve", line.split()[1])
                if line.startswith(("DONE", "FAILED")):
                    break
            node.wait(60)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            node.stdout.close()
    assert lines and lines[-1] == "DONE", "\n".join(lines[-30:])
    assert any(line.startswith("PENDING ") for line in lines)  # BadNothingToDo until the operator approved

    cert = x509.load_der_x509_certificate((out / "certificate.der").read_bytes())
    pem = tmp_path / "pem"
    pem.mkdir()
    (pem / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_cert = x509.load_der_x509_certificate((out / "issuer0.der").read_bytes())
    (pem / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    crl = x509.load_der_x509_crl(crl_der)
    (pem / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    verified = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(pem / "ca.pem"), "-CRLfile", str(pem / "crl.pem"),
                               str(pem / "cert.pem")], capture_output=True, text=True)
    assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stdout + verified.stderr
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert san.get_values_for_type(x509.DNSName) == ["node-gw.plant1.local"]
    assert cm.sql("SELECT used_at IS NOT NULL FROM gds_enrol_tokens") == [(1,)]
    trust = struct_from_binary(ua.TrustListDataType, Buffer((out / "trustlist.bin").read_bytes()))
    assert trust.TrustedCertificates == [(cm.home / "ca" / "ca.der").read_bytes()] and len(trust.TrustedCrls) == 1


def test_gds_serve_refuses_a_bad_listen_url_and_a_taken_port(gds_home):
    import socket

    assert "is not opc.tcp://HOST:PORT" in gds_home("gds", "serve", "--listen", "127.0.0.1:4845", code=2).stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "certmgr", "gds", "serve", "--listen", f"opc.tcp://127.0.0.1:{port}"],
                              env=gds_home.subprocess_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"cannot listen on opc.tcp://127.0.0.1:{port}" in done.stderr, done.stderr


def _self_signed(key, uri: str) -> x509.Certificate:
    """What a new application makes itself before it has a certificate from the GDS."""
    from datetime import datetime, timedelta, timezone

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "new app")])
    now = datetime.now(timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(key, hashes.SHA256()))


def test_an_enrolment_token_is_for_one_application_and_is_spent_by_its_certificate(gds_home, tmp_path, pooled_keys):
    """A self-signed client certificate may only enrol: with a DiscoveryAdmin it is BadCertificateUntrusted; with
    its token it asks for its own application only, and once its certificate is handed out the token is spent."""
    from asyncua import ua

    cm = gds_home
    a, b = "urn:plant1:line-a", "urn:plant1:line-b"
    for uri in (a, b):
        cm("app", "add", "--app-uri", uri, "--deploy", "pull", "--role", "client")
    assert "is not registered to pull" in cm("gds", "enrol-token", "--app-uri", "urn:plant1:nope", code=2).stderr
    token_file = tmp_path / "a.token"
    shown = cm.json("gds", "enrol-token", "--app-uri", a, "--valid", "1h", "--token-file", str(token_file))
    assert shown["token"] is None and oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text()
    assert cm.sql("SELECT count(*) FROM gds_enrol_tokens WHERE token_hash = :t", t=token)[0][0] == 0  # only a hash
    key = pooled_keys.get(2048)
    mine = _self_signed(key, a)

    async def status(coroutine) -> str:
        try:
            client = await coroutine
        except Exception as exc:  # noqa: BLE001 - the refusal is what is asserted
            return ua.StatusCode(exc.code).name if getattr(exc, "code", None) is not None else repr(exc)
        await client.disconnect()
        return "connected"

    with gds_server(cm, free_port()) as url:
        async def run():
            admin = await _connect(url, mine, key, user=("registrar", PASSWORD))
            try:
                untrusted = await Gds(admin).status_of("FindApplications", a)
            finally:
                await admin.disconnect()
            client = await _connect(url, mine, key, user=(a, token))
            try:
                gds = Gds(client)
                app_a = (await gds.call("FindApplications", a))[0].ApplicationId
                other = await gds.status_of("FindApplications", b)
                request_id = await gds.start(app_a, _csr(key, a))
                cm("gds", "approve", str(request_id.Identifier))
                certificate, _, _ = await gds.call("FinishRequest", app_a, request_id)
            finally:
                await client.disconnect()
            spent = await status(_connect(url, mine, key, user=(a, token)))
            wrong = await status(_connect(url, mine, key, user=(b, token)))
            return untrusted, other, certificate, spent, wrong

        untrusted, other, certificate, spent, wrong = asyncio.run(run())

    assert untrusted == "BadCertificateUntrusted"
    assert other == "BadUserAccessDenied"
    cert = x509.load_der_x509_certificate(certificate)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [a]
    assert spent == "BadUserAccessDenied" and wrong == "BadUserAccessDenied"
    assert cm.sql("SELECT count(*) FROM audit_events WHERE action = 'gds.token_add'")[0][0] == 1


def test_the_daemon_serves_the_gds_when_gds_serve_is_set(gds_home, tmp_path):
    """[gds] serve = true: `certmgr daemon` answers GDS calls on [gds] listen, and stops it on SIGTERM."""
    from tests.helpers import configure

    cm = gds_home
    port = free_port()
    configure(cm, f'[gds]\nserve = true\nlisten = "opc.tcp://127.0.0.1:{port}"')
    configure(cm, '[daemon]\nmetrics_listen = ""')
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    cm("app", "add", "--app-uri", APP_URI, "--deploy", "pull")
    daemon = subprocess.Popen([sys.executable, "-m", "certmgr", "daemon"], env=cm.subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in daemon.stderr:
            seen.append(line)
            if "daemon started" in line:
                break
        assert any(f"GDS on opc.tcp://127.0.0.1:{port}" in line for line in seen), "".join(seen)

        async def run():
            client = await _connect(f"opc.tcp://127.0.0.1:{port}", admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                return await Gds(client).call("FindApplications", APP_URI)
            finally:
                await client.disconnect()

        found = asyncio.run(run())
        daemon.terminate()
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        daemon.stderr.close()
    assert [r.ApplicationUri for r in found] == [APP_URI]


KEY_PASSWORD = "the request's own password"


def test_a_key_pair_the_gds_makes_is_handed_over_once_encrypted_and_never_stored(gds_home, tmp_path):
    """StartNewKeyPairRequest, the one path where the GDS makes a key: PEM and PFX, each encrypted with the
    request's password, handed over by the first FinishRequest after approval and then gone from the GDS host;
    the certificate holds the registration, not the request's SubjectName or DomainNames. Refused: a
    DiscoveryAdmin, no password, an unknown format."""
    from asyncua import ua
    from cryptography.hazmat.primitives.serialization import pkcs12

    cm = gds_home
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")
    keys = cm.home / "gds" / "keys"

    def ask(key_format: str, password: str):
        return (ua.NodeId(), ua.NodeId(), ua.Variant("CN=asked-for", ua.VariantType.String),
                ua.Variant(["evil.example.com"], ua.VariantType.String, is_array=True),
                ua.Variant(key_format, ua.VariantType.String), ua.Variant(password, ua.VariantType.String))

    with gds_server(cm, free_port()) as url:
        async def run():
            registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                gds = Gds(registrar)
                app_id = await gds.register()
                wrong_role = await gds.status_of("StartNewKeyPairRequest", app_id, *ask("PEM", KEY_PASSWORD))
            finally:
                await registrar.disconnect()
            client = await _connect(url, admin_cert, admin_key, user=("enrol", PASSWORD))
            try:
                gds = Gds(client)
                no_password = await gds.status_of("StartNewKeyPairRequest", app_id, *ask("PEM", ""))
                bad_format = await gds.status_of("StartNewKeyPairRequest", app_id, *ask("JKS", KEY_PASSWORD))
                refused_left_nothing = not keys.exists() or list(keys.iterdir()) == []
                out = {}
                for key_format in ("PEM", "PFX"):
                    request_id = await gds.call("StartNewKeyPairRequest", app_id, *ask(key_format, KEY_PASSWORD))
                    waiting = await gds.status_of("FinishRequest", app_id, request_id)
                    files = [(p.name, p.stat().st_mode & 0o777) for p in keys.iterdir()]
                    cm("gds", "approve", str(request_id.Identifier))
                    first = await gds.call("FinishRequest", app_id, request_id)
                    second = await gds.call("FinishRequest", app_id, request_id)
                    out[key_format] = (waiting, files, first, second, list(keys.iterdir()))
            finally:
                await client.disconnect()
            return wrong_role, no_password, bad_format, refused_left_nothing, out

        wrong_role, no_password, bad_format, refused_left_nothing, out = asyncio.run(run())

    assert (wrong_role, no_password, bad_format) == ("BadUserAccessDenied", "BadInvalidArgument", "BadInvalidArgument")
    assert refused_left_nothing  # no key was made for a refused request
    for key_format, (waiting, files, first, second, left) in out.items():
        assert waiting == "BadNothingToDo"
        assert [mode for _, mode in files] == [0o600] and files[0][0].endswith("." + key_format.lower())
        certificate_der, blob, _ = first
        cert = x509.load_der_x509_certificate(certificate_der)
        if key_format == "PEM":
            assert b"ENCRYPTED PRIVATE KEY" in blob
            key = serialization.load_pem_private_key(blob, KEY_PASSWORD.encode())
            with pytest.raises(ValueError):
                serialization.load_pem_private_key(blob, b"not the password")
        else:
            key, _, _ = pkcs12.load_key_and_certificates(blob, KEY_PASSWORD.encode())
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [APP_URI]
        assert "evil.example.com" not in san.get_values_for_type(x509.DNSName)
        assert second[0] == certificate_der and second[1] is None  # handed over once
        assert left == []  # and gone from the GDS host
        plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        if cm.db_url is None or cm.db_url.startswith("sqlite"):
            assert plain not in (cm.home / "certmgr.db").read_bytes() and blob not in (cm.home / "certmgr.db").read_bytes()
    assert [row[0] for row in cm.sql("SELECT new_key_format FROM gds_requests ORDER BY id")] == ["PEM", "PFX"]


def test_query_applications_filters_and_pages_the_directory(gds_home, tmp_path):
    """QueryApplications (administrators): URI and name patterns (Part 4 LIKE), the type filter (a ClientAndServer
    application is both), paging by NextRecordId; refused for an anonymous session."""
    from asyncua import ua

    cm = gds_home
    admin_cert, admin_key = _client_identity(cm, tmp_path, "urn:test:gds-admin", "admin-store")

    def query(start=0, limit=0, name="", uri="", app_type=0):
        return (ua.Variant(start, ua.VariantType.UInt32), ua.Variant(limit, ua.VariantType.UInt32),
                ua.Variant(name, ua.VariantType.String), ua.Variant(uri, ua.VariantType.String),
                ua.Variant(app_type, ua.VariantType.UInt32), ua.Variant("", ua.VariantType.String),
                ua.Variant([], ua.VariantType.String, is_array=True))

    with gds_server(cm, free_port()) as url:
        async def run():
            registrar = await _connect(url, admin_cert, admin_key, user=("registrar", PASSWORD))
            try:
                gds = Gds(registrar)
                for uri, kind, name in (("urn:plant1:gateway", ua.ApplicationType.ClientAndServer, "gateway"),
                                        ("urn:plant1:hmi", ua.ApplicationType.Client, "hmi"),
                                        ("urn:plant2:historian", ua.ApplicationType.Server, "historian")):
                    await gds.call("RegisterApplication", ua.ApplicationRecordDataType(
                        ApplicationUri=uri, ApplicationType=kind, ApplicationNames=[ua.LocalizedText(name)],
                        DiscoveryUrls=[f"opc.tcp://{name}.plant.local:4840"]))
                everything = await gds.call("QueryApplications", *query())
                plant1 = await gds.call("QueryApplications", *query(uri="urn:plant1:%"))
                clients = await gds.call("QueryApplications", *query(app_type=2))
                servers = await gds.call("QueryApplications", *query(app_type=1))
                named = await gds.call("QueryApplications", *query(name="h_storian"))
                first_page = await gds.call("QueryApplications", *query(limit=2))
                second_page = await gds.call("QueryApplications", *query(start=first_page[1], limit=2))
                bad_type = await gds.status_of("QueryApplications", *query(app_type=7))
            finally:
                await registrar.disconnect()
            anonymous = await _connect(url, admin_cert, admin_key)
            try:
                refused = await Gds(anonymous).status_of("QueryApplications", *query())
            finally:
                await anonymous.disconnect()
            return everything, plant1, clients, servers, named, first_page, second_page, bad_type, refused

        everything, plant1, clients, servers, named, first_page, second_page, bad_type, refused = asyncio.run(run())

    def uris(result):
        return [d.ApplicationUri for d in result[2]]

    assert uris(everything) == ["urn:plant1:gateway", "urn:plant1:hmi", "urn:plant2:historian"] and everything[1] == 0
    assert everything[2][0].DiscoveryUrls == ["opc.tcp://gateway.plant.local:4840"]
    assert uris(plant1) == ["urn:plant1:gateway", "urn:plant1:hmi"]
    assert uris(clients) == ["urn:plant1:gateway", "urn:plant1:hmi"] and uris(servers) == ["urn:plant1:gateway", "urn:plant2:historian"]
    assert uris(named) == ["urn:plant2:historian"]
    assert uris(first_page) == ["urn:plant1:gateway", "urn:plant1:hmi"] and first_page[1] != 0
    assert uris(second_page) == ["urn:plant2:historian"] and second_page[1] == 0
    assert (bad_type, refused) == ("BadInvalidArgument", "BadUserAccessDenied")
