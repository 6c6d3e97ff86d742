"""Root -> issuing CA -> application: the CA profile, chains checked by openssl, cryptography and pki.validate,
the CA key file's KDF, and the offline-root commands."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

import ca
import pki
from pki.validation import CrlEntry
from tests.conftest import T0, make_identity
from tests.helpers import der
from tests.test_ca_profile import verifiers

URI = "urn:plant1:historian"


@pytest.fixture
def root(key_pool):
    key = key_pool.get(2048)
    cert = ca.build_root_ca(key, ca.SubjectFields("Plant 1 Root CA", "Plant 1"), now=T0 - timedelta(days=1), days=7300,
                            path_length=ca.ROOT_PATH_LENGTH)
    return ca.Issuer(cert, key)


@pytest.fixture
def issuing(root, key_pool):
    key = key_pool.get(2048)
    csr = ca.build_ca_csr(key, ca.SubjectFields("Plant 1 CA", "Plant 1"))
    return ca.Issuer(ca.sign_ca_csr(csr, root, now=T0 - timedelta(hours=12), days=1825), key)


def pem_file(path: Path, obj) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    return path


def crl(issuer, *revoked):
    entries = [ca.RevokedEntry(serial, T0 - timedelta(hours=1), "keyCompromise") for serial in revoked]
    return ca.build_crl(issuer, number=1, this_update=T0 - timedelta(hours=2), next_update=T0 + timedelta(days=30), revoked=entries)


def openssl_verify(tmp_path: Path, root, issuing, leaf, root_crl, issuing_crl) -> subprocess.CompletedProcess:
    files = [pem_file(tmp_path / f"{n}.pem", o) for n, o in
             (("root", root.certificate), ("issuing", issuing.certificate), ("leaf", leaf), ("root-crl", root_crl), ("ca-crl", issuing_crl))]
    return subprocess.run(
        ["openssl", "verify", "-CAfile", files[0], "-untrusted", files[1], "-crl_check_all", "-CRLfile", files[3],
         "-CRLfile", files[4], "-attime", str(int(T0.timestamp())), "-purpose", "sslclient", files[2]],
        capture_output=True, text=True,
    )


def material(root, issuing, *crls) -> pki.TrustMaterial:
    return pki.TrustMaterial(
        trusted=[root.certificate], issuers=[issuing.certificate],
        crls=[CrlEntry(Path(f"{i}.crl"), c, frozenset(r.serial_number for r in c)) for i, c in enumerate(crls)],
    )


def test_issuing_ca_profile(root, issuing):
    cert = issuing.certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki.key_identifier == root_ski
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None  # key id ONLY
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(issuing.private_key.public_key())
    assert cert.issuer == root.certificate.subject and cert.subject != root.certificate.subject
    assert ca.check_ca_certificate(cert, at=T0) == []


def test_issuing_ca_never_outlives_its_root(root, key_pool):
    cert = ca.build_issuing_ca(key_pool.get().public_key(), ca.SubjectFields("Long CA"), root, now=T0, days=40000)
    assert cert.not_valid_after_utc == root.certificate.not_valid_after_utc


def test_csr_extensions_are_ignored_and_bad_requests_refused(root, key_pool, test_ca):
    key = key_pool.get()
    greedy = (x509.CertificateSigningRequestBuilder().subject_name(ca.SubjectFields("Greedy CA").to_name())
              .add_extension(x509.BasicConstraints(ca=True, path_length=5), critical=True)
              .sign(key, ca.profile.hashes.SHA256()))
    cert = ca.sign_ca_csr(greedy, root, now=T0)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    with pytest.raises(ca.ProfileError, match="pathLen at most 0"):
        ca.sign_ca_csr(greedy, root, now=T0, path_length=1)
    with pytest.raises(ca.ProfileError, match="may sign only applications"):  # single-tier CA, pathLen 0
        ca.sign_ca_csr(greedy, test_ca, now=T0)
    same_name = ca.build_ca_csr(key, ca.SubjectFields("Plant 1 Root CA", "Plant 1"))
    with pytest.raises(ca.ProfileError, match="its root's name"):
        ca.sign_ca_csr(same_name, root, now=T0)


def test_chain_validates_with_openssl_cryptography_and_pki(tmp_path, root, issuing, key_pool):
    leaf = ca.build_application_certificate(make_identity(URI, "historian"), key_pool.get().public_key(), issuing, now=T0 - timedelta(hours=2))
    root_crl, ca_crl = crl(root), crl(issuing)
    done = openssl_verify(tmp_path, root, issuing, leaf, root_crl, ca_crl)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout + done.stderr
    _server, client = verifiers(root.certificate, T0)
    verified = client.verify(leaf, [issuing.certificate])
    assert [c.subject for c in verified.chain] == [leaf.subject, issuing.certificate.subject, root.certificate.subject]
    result = pki.validate(leaf, material(root, issuing, root_crl, ca_crl), at=T0, app_uri=URI, role="client")
    assert result.ok, result.message
    assert [c.subject for c in result.chain] == [leaf.subject, issuing.certificate.subject, root.certificate.subject]
    # Without the root's CRL the chain is refused: stacks need a CRL for every CA in the chain.
    missing = pki.validate(leaf, material(root, issuing, ca_crl), at=T0, app_uri=URI, role="client")
    assert missing.status == "BadCertificateIssuerRevocationUnknown"


def test_revoked_leaf_and_revoked_issuing_ca_are_refused(tmp_path, root, issuing, key_pool):
    leaf = ca.build_application_certificate(make_identity(URI, "historian"), key_pool.get().public_key(), issuing, now=T0 - timedelta(hours=2))
    done = openssl_verify(tmp_path, root, issuing, leaf, crl(root), crl(issuing, leaf.serial_number))
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr
    assert pki.validate(leaf, material(root, issuing, crl(root), crl(issuing, leaf.serial_number)), at=T0).status == "BadCertificateRevoked"
    issuer_revoked = crl(root, issuing.certificate.serial_number)
    done = openssl_verify(tmp_path, root, issuing, leaf, issuer_revoked, crl(issuing))
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr
    assert pki.validate(leaf, material(root, issuing, issuer_revoked, crl(issuing)), at=T0).status == "BadCertificateIssuerRevoked"


def test_generation_names():
    assert ca.next_generation_name("Plant 1 CA") == "Plant 1 CA G2"
    assert ca.next_generation_name("Plant 1 CA G2") == "Plant 1 CA G3"
    assert ca.next_generation_name("Plant 1 CA G9") == "Plant 1 CA G10"
    subject = ca.next_generation_subject(ca.SubjectFields("Plant 1 CA", "Plant 1", country="DE"))
    assert (subject.common_name, subject.organization, subject.country) == ("Plant 1 CA G2", "Plant 1", "DE")
    with pytest.raises(ca.ProfileError, match="longer than 64"):
        ca.next_generation_name("X" * 62)


# The CA key file ---------------------------------------------------------------------------------------


def test_key_file_is_scrypt_pkcs8_readable_by_openssl(tmp_path, key_pool):
    key = key_pool.get()
    path = tmp_path / "ca-key.pem"
    path.write_bytes(ca.encrypted_private_key_pem(key, b"s3cret"))
    parsed = subprocess.run(["openssl", "asn1parse", "-in", path], capture_output=True, text=True, check=True).stdout
    assert ":PBES2" in parsed and ":scrypt" in parsed and ":4000" in parsed and ":aes-256-cbc" in parsed  # N = 0x4000
    out = subprocess.run(["openssl", "pkey", "-in", path, "-passin", "pass:s3cret", "-pubout"], capture_output=True, check=True).stdout
    assert out == key.public_key().public_bytes(ca.keys.serialization.Encoding.PEM, ca.keys.serialization.PublicFormat.SubjectPublicKeyInfo)
    wrong = subprocess.run(["openssl", "pkey", "-in", path, "-passin", "pass:wrong", "-noout"], capture_output=True)
    assert wrong.returncode != 0
    pbkdf2 = ca.encrypted_private_key_pem(key, b"s3cret", ca.KeyEncryption(kdf="pbkdf2"))
    path.write_bytes(pbkdf2)
    parsed = subprocess.run(["openssl", "asn1parse", "-in", path], capture_output=True, text=True, check=True).stdout
    assert ":PBKDF2" in parsed and ":0927C0" in parsed and ":hmacWithSHA256" in parsed  # 600,000 iterations
    assert ca.key_matches_certificate(ca.load_private_key_pem(pbkdf2, b"s3cret"), key.public_key())


def test_trusted_load_checks_pair_and_refuses_damaged_or_foreign_keys(key_pool):
    key = key_pool.get()
    pem = ca.encrypted_private_key_pem(key, b"s3cret")
    loaded = ca.load_private_key_pem(pem, b"s3cret", trusted_public_key=key.public_key())
    assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(ca.PassphraseError, match="wrong CA passphrase"):
        ca.load_private_key_pem(pem, b"wrong", trusted_public_key=key.public_key())
    with pytest.raises(ca.ProfileError, match="does not belong"):
        ca.load_private_key_pem(pem, b"s3cret", trusted_public_key=key_pool.get().public_key())
    n = key.private_numbers()
    message, pkcs1 = b"m", ca.keys.asym_padding.PKCS1v15()
    # A wrong CRT value alone: OpenSSL checks each CRT result against e and signs with d instead, so the
    # signatures stay right (no fault leak) and the key loads.
    crt_only = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    crt_pem = ca.encrypted_private_key_pem(crt_only, b"s3cret")
    reloaded = ca.load_private_key_pem(crt_pem, b"s3cret", trusted_public_key=key.public_key())
    key.public_key().verify(reloaded.sign(message, pkcs1, ca.keys.hashes.SHA256()), message, pkcs1, ca.keys.hashes.SHA256())
    # Wrong d as well: the self-test signature is wrong and the key is refused.
    damaged = rsa.RSAPrivateNumbers(n.p, n.q, n.d ^ 2, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    damaged_pem = ca.encrypted_private_key_pem(damaged, b"s3cret")
    with pytest.raises(ca.ProfileError, match="damaged"):
        ca.load_private_key_pem(damaged_pem, b"s3cret", trusted_public_key=key.public_key())
    with pytest.raises(ValueError):  # and without the shortcut OpenSSL's full check refuses it too
        ca.load_private_key_pem(damaged_pem, b"s3cret")


# The offline root commands ------------------------------------------------------------------------------

ROOT_PASSPHRASE = "the root's own passphrase"


@pytest.fixture
def cm(tmp_path):
    """certmgr at a shell on the root's machine: no home, no database."""
    from tests.conftest import Certmgr

    runner = Certmgr(tmp_path / "home")
    runner.env["CERTMGR_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    return runner


def load_der(path: Path):
    return pki.parse_certificate(path.read_bytes())


def test_root_create_writes_root_crl_and_private_key(cm, tmp_path):
    out = tmp_path / "root"
    result = cm.json("ca", "root", "create", "--out", str(out), "--name", "Plant 1 Root CA", "--org", "Plant 1", "--key-size", "2048")
    root_cert = load_der(out / "root.der")
    assert root_cert.subject.rfc4514_string() == "CN=Plant 1 Root CA,O=Plant 1" == result["subject"]
    assert root_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == ca.ROOT_PATH_LENGTH
    assert pki.parse_certificate((out / "root.pem").read_bytes()) == root_cert
    crl = pki.parse_crl((out / "root.crl").read_bytes())
    assert pki.crl_number(crl) == 1 and crl.is_signature_valid(root_cert.public_key())
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=ca.DEFAULT_ROOT_CRL_DAYS)
    key_file = out / "private" / "root-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600 and (out / "private").stat().st_mode & 0o777 == 0o700
    assert ":scrypt" in subprocess.run(["openssl", "asn1parse", "-in", key_file], capture_output=True, text=True).stdout
    key = ca.load_private_key_pem(key_file.read_bytes(), ROOT_PASSPHRASE.encode(), trusted_public_key=root_cert.public_key())
    assert ca.key_matches_certificate(key, root_cert.public_key())
    with pytest.raises(ca.PassphraseError):  # the CA passphrase does not open the root key
        ca.load_private_key_pem(key_file.read_bytes(), cm.env["CERTMGR_CA_PASSPHRASE"].encode())
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    refused = cm("ca", "root", "create", "--out", str(out), code=2)
    assert "already holds an offline root" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "home").exists()  # no certmgr home or database on the root's machine


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--days", "0"], {}, "validity of 0 days"),
        (["--crl-days", "-1"], {}, "CRL validity of -1 days"),
        (["--name", ""], {}, "CN"),
        ([], {"CERTMGR_ROOT_PASSPHRASE": None}, "root passphrase is needed"),
        ([], {"CERTMGR_ROOT_PASSPHRASE": "test passphrase for the CA"}, "root passphrase is the CA passphrase"),
        (["--root-passphrase-file", "{loose}"], {"CERTMGR_ROOT_PASSPHRASE": None}, "group or others"),
    ],
)
def test_root_create_bad_input_writes_nothing(cm, tmp_path, args, env, message):
    loose = tmp_path / "loose-passphrase"
    loose.write_text("some root passphrase\n")
    loose.chmod(0o644)
    cm.env.update(env)
    out = tmp_path / "root"
    refused = cm("ca", "root", "create", "--out", str(out), "--key-size", "2048", *[a.format(loose=loose) for a in args], code=2)
    assert message in refused.stderr and refused.stderr.startswith("certmgr: error: ")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_root_signs_issuing_ca_and_revokes_it(cm, tmp_path, key_pool):
    root_dir = tmp_path / "root"
    cm("ca", "root", "create", "--out", str(root_dir), "--name", "Plant 1 Root CA", "--key-size", "2048")
    pass_file = tmp_path / "root-pass"
    pass_file.write_text(ROOT_PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = None  # from here on the 0600 file
    issuing_key = key_pool.get()
    csr_file = tmp_path / "issuing.csr"
    csr_file.write_bytes(ca.build_ca_csr(issuing_key, ca.SubjectFields("Plant 1 CA", "Plant 1")).public_bytes(ca.keys.serialization.Encoding.PEM))
    signed = cm.json("ca", "root", "sign-csr", str(csr_file), "--root-dir", str(root_dir), "--out", str(tmp_path / "issuing.der"),
                     "--root-passphrase-file", str(pass_file))
    root_cert, issuing_cert = load_der(root_dir / "root.der"), load_der(tmp_path / "issuing.der")
    assert signed["serial"] == f"{issuing_cert.serial_number:x}"
    root = ca.Issuer(root_cert, None)  # type: ignore[arg-type]
    issuing = ca.Issuer(issuing_cert, issuing_key)
    now = pki_now()
    leaf = ca.build_application_certificate(make_identity(URI, "historian"), key_pool.get().public_key(), issuing, now=now)
    ca_crl = ca.build_crl(issuing, number=1, this_update=now - timedelta(minutes=5), next_update=now + timedelta(days=30))
    root_crl = pki.parse_crl((root_dir / "root.crl").read_bytes())
    good = openssl_verify_now(tmp_path, root_cert, issuing_cert, leaf, root_crl, ca_crl)
    assert good.returncode == 0, good.stdout + good.stderr
    assert pki.validate(leaf, material(root, issuing, root_crl, ca_crl), at=now).ok

    before = (root_dir / "root.crl").read_bytes()
    unknown = cm("ca", "root", "sign-crl", "--root-dir", str(root_dir), "--revoke", "abc123", "--root-passphrase-file", str(pass_file), code=2)
    assert "serial abc123 was not issued by this root" in unknown.stderr and (root_dir / "root.crl").read_bytes() == before
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not it")
    wrong.chmod(0o600)
    refused = cm("ca", "root", "sign-crl", "--root-dir", str(root_dir), "--root-passphrase-file", str(wrong), code=2)
    assert "wrong root passphrase" in refused.stderr and (root_dir / "root.crl").read_bytes() == before

    renewed = cm.json("ca", "root", "sign-crl", "--root-dir", str(root_dir), "--revoke", signed["serial"], "--root-passphrase-file", str(pass_file))
    assert renewed["crl_number"] == 2 and renewed["revoked_serials"] == [signed["serial"]]
    root_crl = pki.parse_crl((root_dir / "root.crl").read_bytes())
    assert pki.crl_number(root_crl) == 2 and root_crl.get_revoked_certificate_by_serial_number(issuing_cert.serial_number)
    bad = openssl_verify_now(tmp_path, root_cert, issuing_cert, leaf, root_crl, ca_crl)
    assert bad.returncode != 0 and "certificate revoked" in bad.stdout + bad.stderr
    assert pki.validate(leaf, material(root, issuing, root_crl, ca_crl), at=pki_now()).status == "BadCertificateIssuerRevoked"
    again = cm.json("ca", "root", "sign-crl", "--root-dir", str(root_dir), "--root-passphrase-file", str(pass_file))
    assert again["crl_number"] == 3 and again["revoked_serials"] == [signed["serial"]]  # revocations persist

    exists = cm("ca", "root", "sign-csr", str(csr_file), "--root-dir", str(root_dir), "--out", str(tmp_path / "issuing.der"),
                "--root-passphrase-file", str(pass_file), code=2)
    assert "exists" in exists.stderr
    not_csr = cm("ca", "root", "sign-csr", str(root_dir / "root.der"), "--root-dir", str(root_dir), "--out", str(tmp_path / "x.der"),
                 "--root-passphrase-file", str(pass_file), code=2)
    assert "not a certificate signing request" in not_csr.stderr and not (tmp_path / "x.der").exists()


def pki_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def openssl_verify_now(tmp_path, root_cert, issuing_cert, leaf, root_crl, ca_crl):
    files = [pem_file(tmp_path / f"{n}.pem", o) for n, o in
             (("root", root_cert), ("issuing", issuing_cert), ("leaf", leaf), ("root-crl", root_crl), ("ca-crl", ca_crl))]
    return subprocess.run(["openssl", "verify", "-CAfile", files[0], "-untrusted", files[1], "-crl_check_all",
                           "-CRLfile", files[3], "-CRLfile", files[4], files[2]], capture_output=True, text=True)


def test_issue_from_root_for_init_in_one_step(cm, tmp_path, key_pool):
    """What `certmgr init --issuing-ca --root-dir DIR` calls: key made in the home, signed by the root."""
    import json

    from certmgr.services.ca_root import issue_from_root

    root_dir = tmp_path / "root"
    cm("ca", "root", "create", "--out", str(root_dir), "--name", "Plant 1 Root CA", "--key-size", "2048")
    key = key_pool.get()
    signed = issue_from_root(root_dir, ROOT_PASSPHRASE.encode(), (key.public_key(), ca.SubjectFields("Plant 1 CA")), now=T0)
    assert signed.certificate.issuer == signed.root_certificate.subject
    signed.certificate.verify_directly_issued_by(signed.root_certificate)
    assert pki.crl_number(signed.root_crl) == 1 and signed.root_crl_path == root_dir / "root.crl"
    state = json.loads((root_dir / "root-state.json").read_text())
    assert [item["serial"] for item in state["issued"]] == [f"{signed.certificate.serial_number:x}"]
    with pytest.raises(Exception, match="wrong root passphrase"):
        issue_from_root(root_dir, b"test passphrase for the CA", (key.public_key(), ca.SubjectFields("Plant 1 CA")), now=T0)
