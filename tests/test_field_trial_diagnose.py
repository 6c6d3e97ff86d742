"""Issue 12, items 2, 8, 9 and 11: diagnose blames the side that can fix it, one rule for secret files,
one-line usage errors and output paths checked first, trust-exchange says which file goes where.
Real asyncua servers and a real node-opcua server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import pki
from tests.apps.third_party import ThirdPartyServer
from tests.conftest import Certmgr
from tests.helpers import legacy_certificate
from tests.test_push import NodeServer, node_push_installed  # noqa: F401  (the fixture installs node-opcua)
from tests.test_triage import run_with_server

CLIENT = "urn:plant:connector"


@pytest.fixture
def client_app(initialised: Certmgr, tmp_path) -> Path:
    initialised("issue", "--app-uri", CLIENT, "--store", str(tmp_path / "connector"), "--role", "client")
    return tmp_path / "connector"


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


# --- item 2: diagnose -------------------------------------------------------------------------------------

def test_a_revoked_identity_is_told_to_renew_whatever_the_server_says(initialised: Certmgr, client_app, tmp_path, key_pool):
    password = private(tmp_path / "password", "s3cret\n")
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    thumb = pki.ApplicationStore(client_app).own().thumbprint
    initialised("revoke", thumb, "--reason", "superseded", "--yes")  # keyCompromise would destroy the key: see below

    def steps():
        args = ["diagnose", server.url, "--app-uri", CLIENT, "--user", "operator", "--password-file", str(password)]
        return initialised(*args, "--json", code=1).json(), initialised(*args, code=1)

    report, text = run_with_server(server, steps)
    assert report["fix"] == f"our certificate is revoked: renew it (`certmgr renew --app-uri {CLIENT} --force`)"
    assert report["identity"]["revoked"].startswith("revoked by certmgr on") and "superseded" in report["identity"]["revoked"]
    assert any(f["severity"] == "error" and "our certificate is revoked" in f["message"] for f in report["findings"])
    assert "trust it on the server" not in text.stdout and "rejected folder" not in text.stdout
    assert text.stdout.count("fix: ") == 1
    # revoked for keyCompromise, the key is destroyed at once: diagnose still says what to do, without connecting
    initialised("renew", "--app-uri", CLIENT, "--force", "--no-verify")
    initialised("revoke", "--app-uri", CLIENT, "--reason", "keyCompromise", "--yes")
    gone = initialised("--json", "diagnose", server.url, "--app-uri", CLIENT, code=1).json()
    assert gone["fix"] == f"our certificate is revoked (its key is gone): renew it (`certmgr renew --app-uri {CLIENT} --force`)"


def test_an_expired_identity_is_told_to_renew_before_anything_else(initialised: Certmgr, client_app):
    from datetime import timedelta

    from certmgr.context import AppContext
    from certmgr.services.diagnose import diagnose

    own = pki.ApplicationStore(client_app).own().certificate
    later = own.not_valid_after_utc + timedelta(days=1)
    ctx = AppContext(initialised.home, db_url=initialised.db_url, clock=lambda: later)
    try:
        report = diagnose(ctx, "opc.tcp://127.0.0.1:9/", app_uri=CLIENT, timeout=2)
    finally:
        ctx.close()
    assert not report.ok and report.connection["failed_stage"] == "tcp"
    assert report.fix == (f"our certificate is expired on {own.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: "
                          f"renew it (`certmgr renew --app-uri {CLIENT} --force`)")
    assert any(f["severity"] == "error" and f["message"].startswith("our certificate: expired on") for f in report.findings)


def test_a_server_announcing_another_uri_is_a_server_fix_and_nothing_is_filed_as_rejected(initialised: Certmgr, client_app, tmp_path):
    """Our own CA-issued server certificate, served with a different ApplicationUri."""
    from asyncua import Server, ua

    initialised("issue", "--app-uri", "urn:plant:historian", "--store", str(tmp_path / "historian"), "--role", "server",
                "--dns", "localhost", "--ip", "127.0.0.1")
    own = pki.ApplicationStore(tmp_path / "historian").own()
    key = serialization.load_pem_private_key(pki.ApplicationStore(tmp_path / "historian").read_own_key(own), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    async def scenario():
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/")
        await server.set_application_uri("urn:plant:historian-typo")
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.load_certificate(own.certificate.public_bytes(serialization.Encoding.DER))
        await server.load_private_key(key)
        await server.start()
        url = f"opc.tcp://127.0.0.1:{server.bserver.port}/"
        try:
            return await asyncio.to_thread(lambda: initialised("diagnose", url, "--app-uri", CLIENT, "--json", code=1).json())
        finally:
            await server.stop()

    report = asyncio.run(scenario())
    assert report["connection"]["status"] == "BadCertificateUriInvalid" and report["connection"]["refused_by"] == "client"
    assert "configuration fix on the server" in report["fix"] and "set the server's ApplicationUri to urn:plant:historian" in report["fix"]
    assert "we do not trust" not in report["fix"] and "store trust" not in report["fix"]
    assert pki.ApplicationStore(client_app).rejected() == []  # never our own CA-issued certificate in rejected/


def test_rejected_is_claimed_only_when_the_copy_was_made(initialised: Certmgr, client_app, tmp_path, key_pool):
    password = private(tmp_path / "password", "s3cret\n")
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    store = pki.ApplicationStore(client_app)
    store.rejected_dir.parent.mkdir(parents=True, exist_ok=True)
    if store.rejected_dir.exists():
        store.rejected_dir.rmdir()
    store.rejected_dir.write_text("not a folder")  # the copy must fail

    def steps():
        return initialised("diagnose", server.url, "--app-uri", CLIENT, "--user", "operator", "--password-file", str(password),
                           "--json", code=1).json()

    report = run_with_server(server, steps)
    assert report["connection"]["refused_by"] == "client" and report["connection"]["status"] == "BadCertificateUntrusted"
    assert "it is now in" not in report["fix"]
    assert f"could not copy it to {store.rejected_dir}" in report["fix"]
    assert f"certmgr trust-exchange --app-uri {CLIENT} --endpoint {server.url}" in report["fix"]


def test_a_tcp_failure_names_no_side_and_the_fix_is_printed_once(initialised: Certmgr):
    result = initialised("diagnose", "opc.tcp://127.0.0.1:9/", "--timeout", "3", code=1)
    assert "refused by" not in result.stdout
    assert "FAILED at tcp" in result.stdout
    assert result.stdout.count("reachable") == 1 and "reachable" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "certmgr: error: no secure session with opc.tcp://127.0.0.1:9/"


def test_profile_findings_keep_their_severity_and_the_profile_wording(tmp_path):
    from certmgr.services.diagnose import Diagnosis, _audit_certificate

    weak, _, _ = legacy_certificate(tmp_path)  # SHA-1, RSA 1024, no SAN
    diagnosis = Diagnosis("opc.tcp://plc7.plant.local:4840")
    _audit_certificate(diagnosis, weak, None, "plc7.plant.local", datetime.now(timezone.utc))
    by_message = {f["message"]: f["severity"] for f in diagnosis.findings}
    assert by_message["server certificate: RSA 1024 bits is below the 2048-bit minimum"] == "error"
    assert by_message["server certificate: signed with SHA-1, which current OPC UA security policies refuse"] == "error"
    assert by_message["server certificate: no subjectAltName: the application URI must be in it"] == "error"
    assert not any("server key is RSA" in m or m == "server certificate is signed with SHA-1" for m in by_message)


def test_node_opcua_refusing_a_ca_signed_client_is_fixed_by_the_ca_and_crl(initialised: Certmgr, client_app, tmp_path, node_push_installed):  # noqa: F811
    pki_dir = tmp_path / "node-pki"
    pki_dir.mkdir()
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    try:
        # our side trusts the server's self-signed certificate, so the refusal below is the server's
        served = pki_dir / "own" / "certs" / "certificate.pem"
        initialised("store", "import", str(client_app), str(served), "--trusted")
        first = initialised("diagnose", server.url, "--app-uri", CLIENT, "--json", code=1).json()
        ours = pki.ApplicationStore(client_app).own()
        assert first["connection"]["refused_by"] == "server", first
        # node-opcua 2.157 answers OpenSecureChannel with an ERR message; asyncua reports the channel closed
        assert first["connection"]["status"] in ("BadSecureChannelClosed", "BadSecurityChecksFailed",
                                                 "BadCertificateChainIncomplete", "BadCertificateUntrusted"), first
        fix = first["fix"]
        assert "give the server certmgr's CA and its current CRL" in fix and ours.thumbprint in fix
        export = tmp_path / "for-node"
        assert f"certmgr trust-exchange --app-uri {CLIENT} --endpoint {server.url} --export DIR" in fix
        assert "--trusted --crl" in fix and "trust it on the server" not in fix
        assert f"delete our certificate {ours.thumbprint[:16]} from the server's rejected folder" in fix
        # follow the fix exactly: export, then import the CA and its CRL into the server's store
        exchanged = initialised.json("trust-exchange", "--app-uri", CLIENT, "--endpoint", server.url, "--export", str(export), "--yes")
        offer = exchanged["for_the_server"]
        initialised("store", "import", str(pki_dir), str(export / offer["ca_certificate"]), "--trusted",
                    "--crl", str(export / offer["ca_crl"]), "--layout", "node-opcua")
        assert "delete the application's certificate from the" in (export / "README.txt").read_text()
        # node-opcua polls its folders (5 s, and 2 s for a write to settle): a file deleted before the poller saw it
        # appear is never forgotten in memory. An operator is slower than that; the test waits as long.
        time.sleep(8)
        initialised("store", "remove", str(pki_dir), ours.thumbprint[:16], "--layout", "node-opcua", "--yes")
        deadline = time.monotonic() + 20
        while True:  # node-opcua notices new files in its folders with a file watcher, not at once
            second = initialised("diagnose", server.url, "--app-uri", CLIENT, "--json", code=None).json()
            if second["ok"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert second["ok"], second
    finally:
        server.stop()


# --- item 8: secret files ---------------------------------------------------------------------------------

def test_a_passphrase_file_others_can_read_is_refused_before_anything_is_written(certmgr: Certmgr, tmp_path):
    secret = tmp_path / "pass"
    secret.write_text("from a file\n")
    secret.chmod(0o644)
    certmgr.env["CERTMGR_CA_PASSPHRASE"] = None
    refused = certmgr("init", "--ca-key-size", "2048", "--passphrase-file", str(secret), code=2)
    assert refused.stderr.strip() == (f"certmgr: error: the CA passphrase file {secret} can be read or changed by group or others "
                                      f"(mode 644); chmod 600 {secret}")
    assert not (certmgr.home / "ca").exists()
    secret.chmod(0o600)
    certmgr("init", "--ca-key-size", "2048", "--passphrase-file", str(secret))


def test_diagnose_password_file_others_can_read_is_refused_before_connecting(initialised: Certmgr, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o640)
    refused = initialised("diagnose", "opc.tcp://127.0.0.1:9/", "--user", "operator", "--password-file", str(secret), code=2)
    assert refused.stdout == "" and refused.stderr.strip().endswith(f"chmod 600 {secret}")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_alert_channel_with_a_secret_file_others_can_read_fails_with_the_chmod_line(initialised: Certmgr, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o644)
    password = tmp_path / "smtp.pass"
    password.write_text("mail-pw\n")
    password.chmod(0o604)
    with open(initialised.home / "certmgr.toml", "a") as handle:
        handle.write(f'''
[[alerts.channel]]
name = "chat"
type = "webhook"
url = "http://127.0.0.1:9/hook"
token_file = "{token}"

[[alerts.channel]]
name = "mail"
type = "smtp"
host = "127.0.0.1"
port = 9
to = ["ops@plant.local"]
username = "certmgr"
password_file = "{password}"
''')
    results = initialised("alerts", "test", "--json", code=1).json()
    assert results["chat"] == (f"channel chat: the token_file of channel chat {token} can be read or changed by group or others "
                               f"(mode 644); chmod 600 {token}")
    assert results["mail"].endswith(f"(mode 604); chmod 600 {password}")  # refused before connecting to port 9
    assert "s3cret-token" not in str(results)


# --- item 9: rough errors ---------------------------------------------------------------------------------

def test_metrics_textfile_into_a_missing_folder_is_a_one_line_usage_error(initialised: Certmgr, tmp_path):
    target = tmp_path / "missing" / "x.prom"
    result = initialised("metrics", "--textfile", str(target), code=2)
    assert result.stderr.strip() == (f"certmgr: error: the folder {target.parent} for --textfile does not exist; "
                                     f"create it (mkdir -p {target.parent}) or give another --textfile")
    assert "unexpected" not in result.stderr and not target.parent.exists()
    (tmp_path / "there").mkdir()
    initialised("metrics", "--textfile", str(tmp_path / "there" / "x.prom"))
    assert "certmgr_" in (tmp_path / "there" / "x.prom").read_text()


def test_usage_errors_print_in_one_line(initialised: Certmgr, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (("store", "status", str(a_file)), 2, "certmgr store status"),
        (("store", "status"), 2, "certmgr store status"),  # missing argument
        (("list", "--bogus"), 2, "certmgr list"),  # bad option
        (("revoke", "--reason", "bored", "--yes"), 2, "certmgr revoke"),  # bad choice
        (("--bogus-global",), 2, "certmgr"),
        (("frobnicate",), 2, "certmgr"),
        (("check", "--bogus"), 3, "certmgr check"),  # monitoring reads 2 as CRITICAL: UNKNOWN stays 3
    ]
    for args, code, path in cases:
        result = initialised(*args, code=code)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("certmgr: error: "), (args, result.stderr)
        assert lines[0].endswith(f"see `{path} --help`") and "Usage:" not in result.stderr, (args, result.stderr)
    assert "is a file" in initialised("store", "status", str(a_file), code=2).stderr
    assert "Usage:" in initialised("store", code=2).stdout + initialised("store", code=2).stderr  # a bare group still shows its help


def test_trust_exchange_export_is_checked_before_the_server_is_asked(initialised: Certmgr, client_app, tmp_path):
    export = tmp_path / "no" / "such" / "dir"
    result = initialised("trust-exchange", "--app-uri", CLIENT, "--endpoint", "opc.tcp://127.0.0.1:9", "--export", str(export),
                         "--yes", code=2)
    assert f"the folder {export.parent} for --export does not exist" in result.stderr  # not "cannot read the endpoints"
    assert len(result.stderr.strip().splitlines()) == 1


# --- item 11: trust-exchange wording and content ----------------------------------------------------------

def test_trust_exchange_names_what_goes_where_and_the_issuer_a_ca_signed_application_needs(initialised: Certmgr, client_app, tmp_path, key_pool):
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    export = tmp_path / "for-vendor"

    def steps():
        text = initialised("trust-exchange", "--app-uri", CLIENT, "--endpoint", server.url, "--export", str(export), "--yes").stdout
        return text, initialised.json("trust-exchange", "--app-uri", CLIENT, "--endpoint", server.url)

    text, again = run_with_server(server, steps)
    offer = again["for_the_server"]
    assert f"in the server's trusted store ({export})" not in text
    assert f"copy these files into the server's certificate store (exported to {export}; README.txt there" in text
    assert (f"or only this application: {offer['application_certificate']} into trusted/certs; the server then also needs "
            f"certmgr's CA {offer['ca_certificate']} in its issuer store (issuer/certs) and its CRL {offer['ca_crl']}") in text
    readme = (export / "README.txt").read_text()
    assert f"{offer['ca_certificate']}\n      -> the server's trusted certificates folder (trusted/certs)" in readme
    assert f"{offer['ca_certificate']}\n      -> the server's issuer certificates folder (issuer/certs; node-opcua: issuers/certs)" in readme
    assert f"{offer['ca_crl']}\n      -> the server's issuer CRL folder" in readme and "this folder is not that store" in readme
    assert sorted(p.name for p in export.iterdir()) == sorted([*offer.values(), "README.txt"])
