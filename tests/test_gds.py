"""The GDS information model: the vendored Part 12 NodeSet loads into a real asyncua server and exposes the
Directory methods certmgr's GDS will serve, with the GDS data types usable on the wire side."""

from __future__ import annotations

import asyncio
import hashlib

from certmgr.opcua import gds_model

VENDORED_SHA256 = "1c807b5a689cc51b0575fe16f0eb1efc45233598be3e0e49ee4b7113026abc88"


def test_vendored_nodeset_is_the_recorded_file():
    assert hashlib.sha256(gds_model.NODESET.read_bytes()).hexdigest() == VENDORED_SHA256


def test_gds_nodeset_loads_and_names_every_directory_method():
    from asyncua import Server, ua

    async def run():
        server = Server()
        await server.init()
        idx = await gds_model.load_gds_model(server)
        directory = server.get_node(ua.NodeId(gds_model.DIRECTORY, idx))
        names = {}
        for child in await directory.get_children():
            names[(await child.read_browse_name()).Name] = child.nodeid.Identifier
        record = ua.ApplicationRecordDataType(ApplicationUri="urn:test:app", ApplicationType=ua.ApplicationType.Server)
        return idx, (await directory.read_browse_name()).Name, names, record

    idx, name, names, record = asyncio.run(run())
    assert idx > 0 and name == "Directory"
    for method, number in gds_model.METHODS.items():
        assert names.get(method) == number, method
    assert record.ApplicationUri == "urn:test:app"


# --- certmgr gds serve: a real server (the CLI in a child process) and a real asyncua client ---------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

import ca  # noqa: E402
import pki  # noqa: E402
from tests.helpers import free_port  # noqa: E402

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
    import asyncio

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
            finally:
                await enrol_client.disconnect()
            return (app_id, again, record, found, refused_role, wrong_uri, waiting, pending, request_id, certificate,
                    private_key, issuers, groups, trust_list_id, update_required)

        (app_id, again, record, found, refused_role, wrong_uri, waiting, pending, request_id, certificate, private_key,
         issuers, groups, trust_list_id, update_required) = asyncio.run(run())

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
    listed = {row["app_uri"]: row for row in cm.json("list")}
    assert listed[APP_URI]["thumbprint"] == pki.thumbprint(cert)
    actions = [row[0] for row in cm.sql("SELECT action FROM audit_events WHERE action LIKE 'gds.%' OR action = 'certificate.pull' ORDER BY id")]
    for expected in ("gds.register", "gds.refused", "gds.request", "gds.approve", "certificate.pull"):
        assert expected in actions, actions
