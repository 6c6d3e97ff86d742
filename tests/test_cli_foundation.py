"""``certmgr init``, ``issue``, ``list``, ``show``, ``ca show`` end to end through the CLI."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

import ca
import pki
from tests.conftest import Certmgr


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_creates_home_ca_crl_and_verifier(initialised: Certmgr):
    home = initialised.home
    assert mode(home) == 0o700
    assert (home / "certmgr.toml").is_file() and mode(home / "certmgr.toml") == 0o600
    key = home / "ca" / "private" / "ca-key.pem"
    assert mode(key) == 0o600 and b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    cert = x509.load_der_x509_certificate((home / "ca" / "ca.der").read_bytes())
    assert ca.check_ca_certificate(cert) == []
    assert cert.subject.rfc4514_string() == "CN=Plant CA,O=Plant"
    summary = initialised.json("ca", "show")
    assert summary["crl_number"] == 1 and summary["key_size"] == 2048 and summary["root"] is None
    verifier = pki.ApplicationStore(home / "verifier")
    assert verifier.own() is not None and verifier.holds_certificate(cert, pki.TRUSTED)
    rows = initialised.json("list")
    assert [r["internal"] for r in rows] == [True]


def test_init_refuses_to_overwrite_a_ca(initialised: Certmgr):
    before = {p: p.read_bytes() for p in (initialised.home / "ca").rglob("*") if p.is_file()}
    result = initialised("init", code=2)
    assert "already exists" in result.stderr and "never overwrites" in result.stderr
    assert {p: p.read_bytes() for p in (initialised.home / "ca").rglob("*") if p.is_file()} == before


def test_init_against_a_database_that_holds_a_ca_leaves_no_settings(initialised: Certmgr, tmp_path):
    shared = initialised.db_url or f"sqlite:///{initialised.home / 'certmgr.db'}"
    second = Certmgr(tmp_path / "home-b", shared)
    refused = second("init", code=2)
    assert "already holds a CA" in refused.stderr
    # no certmgr.toml naming the refused database, no CA files: a retry with another --db starts clean
    assert not (second.home / "certmgr.toml").exists()
    assert not [p for p in second.home.rglob("*") if p.is_file()]


def test_init_refuses_empty_or_missing_passphrase(certmgr: Certmgr):
    certmgr.env["CERTMGR_CA_PASSPHRASE"] = ""
    result = certmgr("init", "--ca-key-size", "2048", code=2)
    assert "empty" in result.stderr
    certmgr.env["CERTMGR_CA_PASSPHRASE"] = None
    result = certmgr("init", "--ca-key-size", "2048", code=2)
    assert "CERTMGR_CA_PASSPHRASE" in result.stderr and "--passphrase-file" in result.stderr
    assert not (certmgr.home / "ca").exists()


def test_passphrase_file(certmgr: Certmgr, tmp_path):
    secret = tmp_path / "pass"
    secret.write_text("from a file\n")
    secret.chmod(0o600)
    certmgr.env["CERTMGR_CA_PASSPHRASE"] = None
    certmgr("init", "--ca-key-size", "2048", "--passphrase-file", str(secret))
    certmgr("issue", "--app-uri", "urn:app:b", "--store", str(tmp_path / "s"), "--passphrase-file", str(secret))
    certmgr.env["CERTMGR_CA_PASSPHRASE"] = "from a file"
    certmgr("issue", "--app-uri", "urn:app:c", "--store", str(tmp_path / "t"))


def test_issue_writes_store_database_and_reports(initialised: Certmgr, tmp_path):
    store_dir = tmp_path / "historian"
    out = initialised.json(
        "issue", "--app-uri", "urn:plant:historian", "--store", str(store_dir), "--dns", "historian.plant.local",
        "--ip", "10.0.0.12", "--role", "server", "--days", "200",
    )
    assert len(out["thumbprint"]) == 40 and out["layout"] == "ua-net"
    store = pki.ApplicationStore(store_dir)
    own = store.own()
    assert own.thumbprint == out["thumbprint"]
    assert format(own.certificate.serial_number, "x") == out["serial"]
    assert [str(p) for p in (own.cert_path, own.key_path)] == out["files"]
    assert own.certificate.not_valid_after_utc.isoformat() == out["not_after"]
    ca_cert = x509.load_der_x509_certificate((initialised.home / "ca" / "ca.der").read_bytes())
    assert store.holds_certificate(ca_cert, pki.TRUSTED)
    assert len(store.crls(pki.TRUSTED)) == 1
    san = own.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["historian.plant.local"]
    assert ca.check_application_certificate(own.certificate, app_uri="urn:plant:historian") == []
    at = own.certificate.not_valid_before_utc + timedelta(hours=2)
    assert pki.validate(own.certificate, pki.load_trust_material(store), at=at, app_uri="urn:plant:historian").ok

    shown = initialised.json("show", "urn:plant:historian")
    assert shown["active"]["thumbprint"] == out["thumbprint"] and shown["role"] == "server"
    assert shown["dns_names"] == ["historian.plant.local"] and shown["ip_addresses"] == ["10.0.0.12"]
    by_thumb = initialised.json("show", out["thumbprint"][:10].lower())
    assert by_thumb["app_uri"] == "urn:plant:historian"
    text = initialised("list").stdout
    assert "urn:plant:historian" in text and out["thumbprint"] in text
    # the database knows which CRL the new store holds from the start, not only after the next publication
    held = initialised.sql("SELECT store_path, kind, crl_number FROM store_crls")
    assert (out["store"], "trusted", initialised.json("ca", "show")["crl_number"]) in held


def test_node_opcua_layout_through_cli(initialised: Certmgr, tmp_path):
    out = initialised.json("issue", "--app-uri", "urn:plant:gateway", "--store", str(tmp_path / "gw"), "--layout", "node-opcua")
    assert out["files"] == [str(tmp_path / "gw/own/certs/certificate.pem"), str(tmp_path / "gw/own/private/private_key.pem")]
    assert (tmp_path / "gw" / "issuers" / "certs").is_dir()
    assert [p.name.endswith(".der") for p in (tmp_path / "gw" / "trusted" / "certs").iterdir()] == [True]


def test_issue_again_needs_force_and_supersedes(initialised: Certmgr, tmp_path):
    args = ["issue", "--app-uri", "urn:plant:scada", "--store", str(tmp_path / "scada")]
    first = initialised.json(*args)
    again = initialised(*args, code=2)
    assert "already registered" in again.stderr and "certmgr renew --app-uri urn:plant:scada" in again.stderr
    second = initialised.json(*args, "--force", "--dns", "scada.local")
    assert second["replaced"] == first["thumbprint"] and second["thumbprint"] != first["thumbprint"]
    statuses = {c["thumbprint"]: c["status"] for c in initialised.json("show", "urn:plant:scada")["certificates"]}
    assert statuses == {first["thumbprint"]: "superseded", second["thumbprint"]: "active"}
    store = pki.ApplicationStore(tmp_path / "scada")
    assert [p.thumbprint for p in store.own_pairs()] == [second["thumbprint"]]
    assert store.history_pair(first["thumbprint"]) is not None


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    store = str(tmp_path / "store")
    return {
        "malformed uri": (["--app-uri", "plant historian", "--store", store], "URI"),
        "empty uri": (["--app-uri", "", "--store", store], "empty"),
        "unknown layout": (["--app-uri", "urn:app:b", "--store", store, "--layout", "milo"], "layout"),
        "bad ip": (["--app-uri", "urn:app:b", "--store", store, "--ip", "10.0.0.300"], "IPv4 or IPv6"),
        "dns with spaces": (["--app-uri", "urn:app:b", "--store", store, "--dns", "my host"], "host name"),
        "key size 1024": (["--app-uri", "urn:app:b", "--store", store, "--key-size", "1024"], "key-size"),
        "zero days": (["--app-uri", "urn:app:b", "--store", store, "--days", "0"], "--days 0"),
        "negative days": (["--app-uri", "urn:app:b", "--store", store, "--days", "-5"], "--days -5"),
        "store is a file": (["--app-uri", "urn:app:b", "--store", str(afile)], "is a file"),
        "renew window too long": (["--app-uri", "urn:app:b", "--store", store, "--days", "10", "--renew-before", "30d"], "renew-before"),
    }


@pytest.mark.parametrize(
    "case",
    ["malformed uri", "empty uri", "unknown layout", "bad ip", "dns with spaces", "key size 1024", "zero days",
     "negative days", "store is a file", "renew window too long"],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(initialised: Certmgr, tmp_path, case):
    args, needle = bad_inputs(tmp_path)[case]
    before = initialised.json("list")
    result = initialised("issue", *args, code=2)
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) <= 3  # click usage errors add a usage line and a hint line
    assert not (tmp_path / "store").exists()
    assert initialised.json("list") == before


def test_issue_with_a_cn_that_would_escape_stays_in_the_store(initialised: Certmgr, tmp_path):
    """Issue 12: a CN is mapped to a safe file name, never refused (it used to be bad input, exit 2)."""
    out = initialised.json("issue", "--app-uri", "urn:app:b", "--store", str(tmp_path / "store"), "--name", "../../etc")
    assert out["files"] and all(Path(f).parent.parent.parent == tmp_path / "store" for f in out["files"])
    assert all(Path(f).name.startswith("_.._etc [") for f in out["files"]), out["files"]
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc").exists()


def test_wrong_passphrase_exits_2_and_writes_nothing(initialised: Certmgr, tmp_path):
    initialised.env["CERTMGR_CA_PASSPHRASE"] = "not the passphrase"
    result = initialised("issue", "--app-uri", "urn:app:b", "--store", str(tmp_path / "store"), code=2)
    assert "wrong CA passphrase" in result.stderr
    assert not (tmp_path / "store").exists()
    initialised.env["CERTMGR_CA_PASSPHRASE"] = "test passphrase for the CA"
    assert len(initialised.json("list")) == 1


def test_unwritable_store_fails_cleanly(initialised: Certmgr, tmp_path):
    if os.geteuid() == 0:
        target = Path("/sys/certmgr-test-store")  # root may write anywhere else
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "store"
    result = initialised("issue", "--app-uri", "urn:app:b", "--store", str(target), code=None)
    assert result.exit_code in (1, 2) and str(target) in result.stderr
    assert not target.exists()
    assert len(initialised.json("list")) == 1


def test_database_failure_after_store_write_restores_store(initialised: Certmgr, tmp_path, monkeypatch):
    from certmgr.services import issuing

    args = ["issue", "--app-uri", "urn:plant:mes", "--store", str(tmp_path / "mes")]
    first = initialised.json(*args)
    before = pki.ApplicationStore(tmp_path / "mes").file_listing()

    def broken_record(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(issuing, "_commit", broken_record)
    result = initialised(*args, "--force", code=1)
    assert "database went away" in result.stderr
    monkeypatch.undo()
    store = pki.ApplicationStore(tmp_path / "mes")
    assert store.own().thumbprint == first["thumbprint"]
    visible = {k: v for k, v in store.file_listing().items() if not k.startswith("own/history")}
    assert visible == {k: v for k, v in before.items() if not k.startswith("own/history")}

    # a first issue into a new folder: the database failure leaves no folder, no CA or CRL copy behind
    monkeypatch.setattr(issuing, "_commit", broken_record)
    initialised("issue", "--app-uri", "urn:plant:new", "--store", str(tmp_path / "new"), code=1)
    monkeypatch.undo()
    assert not (tmp_path / "new").exists()


def test_list_expiring_uses_the_clock(initialised: Certmgr, tmp_path, monkeypatch):
    initialised("issue", "--app-uri", "urn:app:short", "--store", str(tmp_path / "s"), "--days", "20")
    initialised("issue", "--app-uri", "urn:app:long", "--store", str(tmp_path / "l"), "--days", "300")
    assert [r["app_uri"] for r in initialised.json("list", "--expiring", "30d")] == ["urn:app:short"]
    later = datetime.now(timezone.utc) + timedelta(days=280)
    initialised.at(later)
    expiring = initialised.json("list", "--expiring", "30d")
    assert [r["app_uri"] for r in expiring] == ["urn:app:short", "urn:app:long"]
    assert expiring[0]["days_left"] < 0
    lines = initialised("list", "--jsonl").stdout.splitlines()  # one object per line, for large fleets
    assert [json.loads(line) for line in lines] == initialised.json("list")
    assert [json.loads(line)["app_uri"] for line in lines][:2] == ["urn:app:short", "urn:app:long"]
    bad = initialised("list", "--expiring", "soon", code=2)
    assert "not a duration" in bad.stderr


def test_commands_before_init_say_what_to_do(certmgr: Certmgr, tmp_path):
    for args in (["list"], ["ca", "show"], ["issue", "--app-uri", "urn:app:b", "--store", str(tmp_path / "s")]):
        result = certmgr(*args, code=2)
        assert "certmgr init" in result.stderr


def test_show_unknown_and_ambiguous(initialised: Certmgr):
    assert "no application" in initialised("show", "urn:nope:x", code=2).stderr
    assert "8 hex digits" in initialised("show", "abc", code=2).stderr


def test_push_admin_password_file_must_be_private_and_is_never_shown(initialised: Certmgr, tmp_path):
    secret = tmp_path / "admin.pass"
    secret.write_text("s3cret-Adm1n\n")
    secret.chmod(0o644)
    args = ["app", "add", "--app-uri", "urn:plant:plc7", "--endpoint", "opc.tcp://127.0.0.1:4840", "--deploy", "push",
            "--admin-user", "admin", "--admin-password-file", str(secret)]
    refused = initialised(*args, code=2)
    assert "read or changed by group or others" in refused.stderr and f"chmod 600 {secret}" in refused.stderr
    assert initialised.sql("SELECT app_uri FROM applications WHERE app_uri = 'urn:plant:plc7'") == []
    secret.chmod(0o600)
    initialised(*args)
    shown = initialised("show", "urn:plant:plc7", "--json").stdout + initialised("show", "urn:plant:plc7").stdout
    assert "s3cret-Adm1n" not in shown and "s3cret-Adm1n" not in str(initialised.sql("SELECT * FROM applications"))
