"""The CA key on a PKCS#11 token through the real CLI (SoftHSM2 via scripts/softhsm.sh, tests/conftest.py).

One token home per module (init costs a key generation on the token); each test uses its own applications.
Signatures are checked with openssl and cryptography against the CA certificate, never against the token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
from ca.pkcs11 import open_token_key
from tests.conftest import SOFTHSM_PIN, SOFTHSM_TOKEN, T0, Certmgr

PIN = SOFTHSM_PIN.decode()
URI = f"pkcs11:token={SOFTHSM_TOKEN.replace(' ', '%20')};object=cli-ca"
ATTIME = str(int(T0.timestamp()) + 3600)


def token_certmgr(home: Path, pin: str | None = PIN) -> Certmgr:
    cm = Certmgr(home).at(T0)
    cm.env["CERTMGR_CA_PASSPHRASE"] = None  # a token home never needs (nor asks for) a CA passphrase
    cm.env["CERTMGR_PKCS11_PIN"] = pin
    return cm


@pytest.fixture(scope="module")
def token_home(softhsm, tmp_path_factory, key_pool):
    from _pytest.monkeypatch import MonkeyPatch

    patch = MonkeyPatch()
    patch.setattr(ca, "generate_rsa_key", key_pool.get)  # the verifier's key; the CA key is made by the token
    cm = token_certmgr(tmp_path_factory.mktemp("token") / "home")
    try:
        result = cm.json("init", "--ca-name", "Token CA", "--org", "Plant 1", "--ca-key-size", "2048",
                         "--ca-key", URI, "--pkcs11-module", softhsm)
    finally:
        patch.undo()
    assert result["crl_number"] == 1
    return cm


def ca_cert(cm: Certmgr) -> x509.Certificate:
    return x509.load_der_x509_certificate((cm.home / "ca" / "ca.der").read_bytes())


def openssl_verify(cm: Certmgr, store: Path, *, attime: str | None = ATTIME) -> subprocess.CompletedProcess:
    """openssl's verdict on the store's own certificate, against the CA certificate and the store's newest CRL."""
    leaf = x509.load_der_x509_certificate(next((store / "own" / "certs").glob("*.der")).read_bytes())
    crl = x509.load_der_x509_crl(newest_crl(store).read_bytes())
    pem, crl_pem = store.with_name(store.name + "-leaf.pem"), store.with_name(store.name + "-crl.pem")  # outside the store
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    args = ["openssl", "verify", "-CAfile", str(cm.home / "ca" / "ca.pem"), "-crl_check", "-CRLfile", str(crl_pem)]
    return subprocess.run([*args, *(["-attime", attime] if attime else []), str(pem)], capture_output=True, text=True)


def newest_crl(store: Path) -> Path:
    return max((store / "trusted" / "crl").glob("*.crl"), key=lambda p: p.stat().st_mtime_ns)


def private_keys_in(root: Path) -> list[tuple[Path, object]]:
    """Every private key file under ``root`` (PEM or DER), whatever its name."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
            try:
                found.append((path, loader(data, None)))
                break
            except (ValueError, TypeError):
                if b"ENCRYPTED PRIVATE KEY" in data:
                    found.append((path, "encrypted"))
                    break
    return found


def test_init_puts_the_ca_key_on_the_token_and_no_key_file_in_the_home(token_home, softhsm):
    cert = ca_cert(token_home)
    cert.verify_directly_issued_by(cert)  # self-signed by the token
    config = (token_home.home / "certmgr.toml").read_text()
    assert f'key_uri = "{URI}"' in config and f'pkcs11_module = "{softhsm}"' in config
    assert not (token_home.home / "ca" / "private").exists()
    public = cert.public_key().public_numbers()
    keys = private_keys_in(token_home.home)
    assert keys, "the verifier's own key is a private key file: the scan must find it"
    assert all(key != "encrypted" and key.public_key().public_numbers() != public for _, key in keys), keys
    with open_token_key(softhsm, URI, SOFTHSM_PIN) as key:
        from pkcs11 import Attribute

        assert key.public_key().public_numbers() == public
        assert key._private[Attribute.SENSITIVE] is True and key._private[Attribute.EXTRACTABLE] is False
    assert f"RSA 2048 on a PKCS#11 token: {URI} via {softhsm}" in token_home("ca", "show").stdout
    shown = token_home.json("ca", "show")
    assert shown["key_on_token"] is True and shown["key_file"] is None and URI in shown["key"]
    authority = token_home.sql("SELECT key_path FROM authorities")
    assert URI in authority[0][0]


def test_issue_batch_revoke_and_crl_are_signed_on_the_token(token_home, tmp_path):
    cert = ca_cert(token_home)
    store = tmp_path / "historian"
    token_home("issue", "--app-uri", "urn:plant1:historian", "--store", str(store), "--dns", "historian.local")
    done = openssl_verify(token_home, store)
    assert done.returncode == 0, done.stdout + done.stderr
    batch = tmp_path / "batch.csv"
    batch.write_text(f"app_uri,store,layout\nurn:plant1:gateway,{tmp_path / 'gateway'},node-opcua\n")
    assert token_home.json("issue", "--batch", str(batch))["outcome"] == "issued"
    gateway = x509.load_pem_x509_certificate((tmp_path / "gateway" / "own" / "certs" / "certificate.pem").read_bytes())
    gateway.verify_directly_issued_by(cert)

    token_home("revoke", "--app-uri", "urn:plant1:historian", "--reason", "keyCompromise", "--yes")
    done = openssl_verify(token_home, store)
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr
    crl = x509.load_der_x509_crl(newest_crl(store).read_bytes())
    assert crl.is_signature_valid(cert.public_key()) and crl.get_revoked_certificate_by_serial_number(
        x509.load_der_x509_certificate(next((store / "own" / "certs").glob("*.der")).read_bytes()).serial_number) is not None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    token_home("crl", "refresh", "--force")
    resigned = x509.load_der_x509_crl(newest_crl(store).read_bytes())
    assert resigned.is_signature_valid(cert.public_key())
    assert resigned.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1


def test_wrong_pin_missing_token_label_or_module_are_one_line_and_write_nothing(token_home, softhsm, tmp_path):
    wrong = token_certmgr(token_home.home, pin="0000-not-it")
    store = tmp_path / "never"
    out = wrong("issue", "--app-uri", "urn:plant1:never", "--store", str(store), code=2)
    assert out.stderr.strip() == (f"certmgr: error: wrong PIN for PKCS#11 token '{SOFTHSM_TOKEN}': login refused; "
                                  "give the token's user PIN (CERTMGR_PKCS11_PIN or --pin-file FILE)")
    assert "0000-not-it" not in out.stderr and not store.exists()
    assert token_home.sql("SELECT count(*) FROM applications WHERE app_uri = 'urn:plant1:never'") == [(0,)]
    wrong("crl", "refresh", "--force", code=2)
    assert "wrong PIN" in wrong("revoke", "--app-uri", "urn:plant1:gateway", "--yes", code=2).stderr

    no_pin = token_certmgr(token_home.home, pin=None)
    assert "the PKCS#11 PIN is needed; set CERTMGR_PKCS11_PIN or pass --pin-file FILE" in no_pin(
        "issue", "--app-uri", "urn:plant1:never", "--store", str(store), code=2).stderr
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o644)
    assert "chmod 600" in no_pin("crl", "refresh", "--force", "--pin-file", str(pin_file), code=2).stderr
    pin_file.chmod(0o600)
    no_pin("crl", "refresh", "--force", "--pin-file", str(pin_file))  # the PIN from a file works

    fresh = token_certmgr(tmp_path / "new-home", pin="0000-not-it")
    for args, message in (
        (["--ca-key", URI, "--pkcs11-module", softhsm], "wrong PIN for PKCS#11 token"),
        (["--ca-key", "pkcs11:token=absent;object=ca", "--pkcs11-module", softhsm], "no PKCS#11 token labelled 'absent'"),
        (["--ca-key", URI, "--pkcs11-module", str(tmp_path / "libnone.so")], "the PKCS#11 module"),
        (["--ca-key", URI], "--ca-key pkcs11:... needs the token's module"),
        (["--pkcs11-module", softhsm], "--pkcs11-module is given without a token key"),
        (["--ca-key", f"{URI}?pin-value={PIN}"], "never put the PIN in the URI"),
        (["--ca-key", str(tmp_path / "ca-key.pem")], "a key file is given only with --join"),
    ):
        out = fresh("init", "--ca-key-size", "2048", *args, code=2)
        assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert not fresh.home.exists(), args
    config = token_home.home / "certmgr.toml"
    original = config.read_text()
    try:
        config.write_text(original.replace("object=cli-ca", "object=gone"))
        assert "token 'certmgr test' holds no RSA private key labelled 'gone'" in token_home("crl", "refresh", "--force", code=2).stderr
        config.write_text(original.replace(f'pkcs11_module = "{softhsm}"', ""))
        assert "[ca] key_uri needs pkcs11_module" in token_home("crl", "refresh", code=2).stderr
    finally:
        config.write_text(original)


def test_combinations_that_make_no_sense_are_refused(token_home, initialised, tmp_path):
    out = token_home("ca", "passphrase", code=2)
    assert "the CA key is on a PKCS#11 token" in out.stderr and "applies to a CA key file only" in out.stderr
    secret = tmp_path / "secret"
    secret.write_text("whatever")
    secret.chmod(0o600)
    out = token_home("crl", "refresh", "--force", "--passphrase-file", str(secret), code=2)
    assert "a CA passphrase file does not apply" in out.stderr
    out = initialised("crl", "refresh", "--force", "--pin-file", str(secret), code=2)  # a key-file home
    assert "not on a PKCS#11 token; a PIN file does not apply" in out.stderr
    out = token_home("init", "--ca-key", URI, "--pkcs11-module", "/usr/lib/softhsm/libsofthsm2.so", code=2)
    assert "a CA already exists" in out.stderr


def test_join_uses_the_same_token_key(token_home, softhsm, tmp_path):
    node_b = token_certmgr(tmp_path / "home-b")
    node_b.db_url = token_home.url
    node_b.env["CERTMGR_DB"] = token_home.url
    ca_file = str(token_home.home / "ca" / "ca.der")
    out = node_b("init", "--join", "--ca-cert", ca_file, "--ca-key", URI.replace("cli-ca", "other"),
                 "--pkcs11-module", softhsm, "--node", "b", code=2)
    assert "holds no RSA private key labelled 'other'" in out.stderr and not node_b.home.exists()
    result = node_b.json("init", "--join", "--ca-cert", ca_file, "--ca-key", URI, "--pkcs11-module", softhsm, "--node", "b")
    assert result["ca_thumbprint"] == token_home.json("ca", "show")["thumbprint"]
    public = ca_cert(token_home).public_key().public_numbers()
    assert all(key != "encrypted" and key.public_key().public_numbers() != public for _, key in private_keys_in(node_b.home))
    assert f'key_uri = "{URI}"' in (node_b.home / "certmgr.toml").read_text()
    node_b("issue", "--app-uri", "urn:plant1:site-b-hmi", "--store", str(tmp_path / "hmi"))
    done = openssl_verify(token_home, tmp_path / "hmi")
    assert done.returncode == 0, done.stdout + done.stderr


def test_pin_is_never_in_argv_a_hook_environment_or_the_logs(token_home, tmp_path):
    """A real `certmgr renew` process (proofs skipped: not what is tested here) signs on the token; its deploy hook records the parent's argv and its own
    environment. The PIN is in neither, nor in anything certmgr wrote, and no option takes a PIN."""
    refused = token_home("issue", "--pin", PIN, code=2).stderr
    assert "No such option '--pin'" in refused and PIN not in refused
    store = tmp_path / "plc"
    token_home("issue", "--app-uri", "urn:plant1:plc", "--store", str(store))
    seen = tmp_path / "seen"
    token_home("app", "update", "--app-uri", "urn:plant1:plc", "--deploy-hook",
               f'tr "\\0" " " </proc/$PPID/cmdline >{seen}.argv; env >{seen}.env')
    env = {**token_home.subprocess_env(), "CERTMGR_PKCS11_PIN": PIN}
    env.pop("CERTMGR_CA_PASSPHRASE")
    done = subprocess.run([sys.executable, "-m", "certmgr", "-v", "renew", "--force", "--no-verify", "--app-uri", "urn:plant1:plc"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    argv = Path(f"{seen}.argv").read_text()
    assert "renew --force" in argv and PIN not in argv
    hook_env = Path(f"{seen}.env").read_text()
    assert "CERTMGR_HOME=" in hook_env and PIN not in hook_env
    assert PIN not in done.stdout + done.stderr and "renewed" in done.stdout
    done = openssl_verify(token_home, store, attime=None)  # the renewal ran at the wall clock
    assert done.returncode == 0, done.stdout + done.stderr
    for path in token_home.home.rglob("*"):
        if path.is_file():
            assert PIN.encode() not in path.read_bytes(), path
    assert os.environ.get("CERTMGR_PKCS11_PIN") is None  # the harness never leaked it into this process


def _ciphertext_span(der: bytes) -> tuple[int, int]:
    """(offset, length) of the encryptedData OCTET STRING of a PKCS#8 EncryptedPrivateKeyInfo."""
    def header(at: int) -> tuple[int, int]:  # (content offset, content length) of the TLV at ``at``
        first = der[at + 1]
        if first < 0x80:
            return at + 2, first
        size = first & 0x7F
        return at + 2 + size, int.from_bytes(der[at + 2 : at + 2 + size], "big")

    body, _ = header(0)
    algorithm, length = header(body)
    return header(algorithm + length)


def test_a_tampered_key_file_is_refused_or_still_signs_correctly(key_pool):
    """PBES2 AES-CBC is not authenticated: someone who can write the key file (without the passphrase) can flip
    ciphertext bits, which garbles one plaintext block at random and flips a bit of the next. The shortcut that
    skips OpenSSL's RSA check must then still never sign wrongly (a wrong CRT signature leaks the factors):
    every tampered block either fails to load or yields a key whose signatures verify under the certificate's key.
    A cheap scrypt keeps this fast; the KDF plays no part in the argument."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = key_pool.ca_key()
    public = key.public_key()
    pem = ca.encrypted_private_key_pem(key, b"s3cret", ca.KeyEncryption(scrypt_n=2**10, scrypt_p=1))
    der = bytearray(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    start, length = _ciphertext_span(bytes(der))
    outcomes = {"refused": 0, "signs": 0}
    for block in range(0, length - 16, 16):  # every block but the last (that one only breaks the padding)
        tampered = bytearray(der)
        tampered[start + block + 5] ^= 0x10
        body = base64.encodebytes(bytes(tampered)).replace(b"\n", b"")
        text = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + body + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
        try:
            loaded = ca.load_private_key_pem(text, b"s3cret", trusted_public_key=public)
        except ca.CAError:
            outcomes["refused"] += 1
            continue
        for message in (b"tbsCertificate", b"tbsCertList", bytes(range(64))):
            signature = loaded.sign(message, padding.PKCS1v15(), hashes.SHA256())
            try:
                public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:  # pragma: no cover - the failure this test exists for
                pytest.fail(f"a key tampered in ciphertext block {block // 16} loaded and signed wrongly")
        outcomes["signs"] += 1
    # both branches ran (about 28 refused, 48 loaded with damaged d, p, q or CRT values and signed correctly)
    assert outcomes["refused"] > 0 and outcomes["signs"] > 0 and sum(outcomes.values()) == len(range(0, length - 16, 16)), outcomes


def test_issuing_ca_on_the_token_under_a_root_via_csr(softhsm, tmp_path):
    """`init --issuing-ca --csr-out` with the key on the token: the token signs the CSR, `ca import-signed` (PIN,
    no passphrase) completes the home, and its certificates chain to the root."""
    cm = token_certmgr(tmp_path / "issuing")
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = "a passphrase for the root alone"
    root = tmp_path / "root"
    cm("ca", "root", "create", "--out", str(root), "--key-size", "2048")
    csr = tmp_path / "issuing.csr"
    cm("init", "--issuing-ca", "--csr-out", str(csr), "--ca-name", "Token Issuing CA", "--ca-key-size", "2048",
       "--ca-key", URI.replace("cli-ca", "issuing-ca"), "--pkcs11-module", softhsm)
    assert x509.load_pem_x509_csr(csr.read_bytes()).is_signature_valid
    cm("ca", "root", "sign-csr", str(csr), "--root-dir", str(root), "--out", str(tmp_path / "issuing.der"))
    cm("ca", "import-signed", str(tmp_path / "issuing.der"), "--root", str(root / "root.der"), "--root-crl", str(root / "root.crl"))
    store = tmp_path / "hmi"
    cm("issue", "--app-uri", "urn:plant1:hmi", "--store", str(store))
    leaf = store.with_name("hmi-leaf.pem")
    leaf.write_bytes(x509.load_der_x509_certificate(next((store / "own" / "certs").glob("*.der")).read_bytes())
                     .public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(["openssl", "verify", "-CAfile", str(root / "root.pem"), "-untrusted", str(cm.home / "ca" / "ca.pem"),
                           "-attime", ATTIME, str(leaf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (cm.home / "ca" / "private").exists()


def test_console_signs_with_one_token_session_opened_at_start(token_home, tmp_path, monkeypatch):
    """`certmgr web serve` on a token home: the PIN is read once at start and the key opened once; every request
    (each a copy of the context, Console.acting) signs with that one session, and closing the console ends it.
    Without the PIN the buttons say so and no request opens the token."""
    import re

    from starlette.testclient import TestClient

    import ca.pkcs11
    from certmgr.context import AppContext
    from certmgr.web.app import make_app

    opened = []
    real_open = ca.pkcs11.open_token_key

    def counting(*args, **kwargs):  # the real token key, counted
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(ca.pkcs11, "open_token_key", counting)
    store = tmp_path / "console-app"
    token_home("issue", "--app-uri", "urn:plant1:console-app", "--store", str(store), "--role", "client")
    password = tmp_path / "pw"
    password.write_text("a long console password\n")
    password.chmod(0o600)
    token_home("web", "user", "add", "tokop", "--role", "operator", "--password-file", str(password), "--replace")
    before = next((store / "own" / "certs").glob("*.der")).name

    def signed_in(client):
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": token, "username": "tokop", "password": "a long console password"})
        return re.search(r'name="csrf" value="([^"]+)"', client.get("/fleet").text).group(1)

    opened.clear()  # (the CLI's issue above opened it for its own command)
    monkeypatch.delenv("CERTMGR_CA_PASSPHRASE", raising=False)
    monkeypatch.delenv("CERTMGR_PKCS11_PIN", raising=False)
    ctx = AppContext(token_home.home, clock=lambda: T0 + timedelta(hours=1))
    with TestClient(make_app(ctx), base_url="http://127.0.0.1") as client:  # no PIN: renew is off, the token untouched
        csrf = signed_in(client)
        page = client.get("/app", params={"uri": "urn:plant1:console-app"}).text
        assert 'id="renew-unavailable"' in page and "CERTMGR_PKCS11_PIN" in page and 'id="renew"' not in page
        refused = client.post("/app/renew", data={"csrf": csrf, "app_uri": "urn:plant1:console-app"})
        assert refused.status_code == 400 and "PIN" in refused.text
    ctx.close()
    assert opened == []

    monkeypatch.setenv("CERTMGR_PKCS11_PIN", PIN)
    ctx = AppContext(token_home.home, clock=lambda: T0 + timedelta(hours=1))
    with TestClient(make_app(ctx), base_url="http://127.0.0.1") as client:
        assert len(opened) == 1  # at start, as the daemon does
        csrf = signed_in(client)
        for _ in range(2):
            done = client.post("/app/renew", data={"csrf": csrf, "app_uri": "urn:plant1:console-app"})
            assert done.status_code == 200 and "renewed" in done.text, done.text[-2000:]
        assert len(opened) == 1  # two signing requests, no new session
    verdict = openssl_verify(token_home, store)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert next((store / "own" / "certs").glob("*.der")).name != before
    ctx.close()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    with pytest.raises(ca.TokenError):  # closed with the console: that session signs no more
        opened[0].sign(b"x", padding.PKCS1v15(), hashes.SHA256())
