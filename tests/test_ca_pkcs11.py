"""The CA key on a PKCS#11 token (SoftHSM2 from Debian's packages, set up by scripts/softhsm.sh)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import ca
from ca.pkcs11 import Pkcs11Uri, TokenRSAPrivateKey, open_token_key, parse_pkcs11_uri
from tests.conftest import SOFTHSM_PIN, SOFTHSM_TOKEN, T0, make_identity

PIN, TOKEN = SOFTHSM_PIN, SOFTHSM_TOKEN


@pytest.fixture
def token_key(softhsm):
    """The CA key, generated on the token by the first test that asks; each test has its own session."""
    key = open_token_key(softhsm, f"pkcs11:token={TOKEN.replace(' ', '%20')};object=plant1-ca", PIN, generate_bits=2048)
    yield key
    key.close()


def pem(path: Path, obj) -> Path:
    path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_uri_parsing():
    assert parse_pkcs11_uri("pkcs11:token=Plant%201%20HSM;object=ca%3Bkey;type=private") == Pkcs11Uri("Plant 1 HSM", "ca;key")
    assert str(Pkcs11Uri("Plant 1 HSM", "ca;key")) == "pkcs11:token=Plant%201%20HSM;object=ca%3Bkey"
    for bad, message in (
        ("pkcs11:token=t;object=k?pin-value=1234", "never put the PIN"),
        ("pkcs11:token=t", "lacks object"),
        ("pkcs11:object=k;token=t;token=u", "twice"),
        ("pkcs11:token=t;object=k;colour=red", "not understood"),
        ("pkcs11:token=t;object=k;type=public", "type=private"),
        ("/tmp/ca-key.pem", "not a PKCS#11 URI"),
    ):
        with pytest.raises(ca.TokenError, match=message):
            parse_pkcs11_uri(bad)


def test_token_key_signs_root_application_and_crl(tmp_path, token_key, key_pool):
    assert isinstance(token_key, TokenRSAPrivateKey) and token_key.key_size == 2048
    root_cert = ca.build_root_ca(token_key, ca.SubjectFields("Token CA", "Plant 1"), now=T0 - timedelta(days=1))
    root_cert.verify_directly_issued_by(root_cert)
    issuer = ca.Issuer(root_cert, token_key)
    leaf = ca.build_application_certificate(make_identity("urn:plant1:historian"), key_pool.get().public_key(), issuer, now=T0)
    leaf.verify_directly_issued_by(root_cert)
    crl = ca.build_crl(issuer, number=1, this_update=T0, next_update=T0 + timedelta(days=30))
    assert crl.is_signature_valid(token_key.public_key())
    args = ["openssl", "verify", "-CAfile", pem(tmp_path / "root.pem", root_cert), "-crl_check",
            "-CRLfile", pem(tmp_path / "root.crl", crl), "-attime", str(int(T0.timestamp()) + 60)]
    done = subprocess.run([*args, pem(tmp_path / "leaf.pem", leaf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    revoked = ca.build_crl(issuer, number=2, this_update=T0, next_update=T0 + timedelta(days=30),
                           revoked=[ca.RevokedEntry(leaf.serial_number, T0, "keyCompromise")])
    args[args.index("-CRLfile") + 1] = pem(tmp_path / "root.crl", revoked)
    done = subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr


def test_key_never_leaves_the_token(token_key):
    from pkcs11 import Attribute

    assert token_key._private[Attribute.SENSITIVE] is True and token_key._private[Attribute.EXTRACTABLE] is False
    with pytest.raises(ca.TokenError, match="never leaves its token"):
        token_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ca.TokenError, match="never leaves its token"):
        token_key.private_numbers()
    with pytest.raises(ca.TokenError, match="PKCS#1 v1.5 and SHA-256 only"):
        token_key.sign(b"data", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    signature = token_key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    token_key.public_key().verify(signature, b"data", padding.PKCS1v15(), hashes.SHA256())


def test_existing_key_is_found_by_label_and_bad_inputs_refused(softhsm, token_key):
    uri = Pkcs11Uri(TOKEN, "plant1-ca")
    with open_token_key(softhsm, uri, PIN, generate_bits=2048) as again:  # label exists: no second key
        assert again.public_key().public_numbers() == token_key.public_key().public_numbers()
    with pytest.raises(ca.PassphraseError, match="^wrong PIN for PKCS#11 token 'certmgr test': login refused$"):
        open_token_key(softhsm, uri, b"not the pin")
    with pytest.raises(ca.TokenError, match="no RSA private key labelled 'other'"):
        open_token_key(softhsm, Pkcs11Uri(TOKEN, "other"), PIN)
    with pytest.raises(ca.TokenError, match="no PKCS#11 token labelled 'nope'"):
        open_token_key(softhsm, Pkcs11Uri("nope", "plant1-ca"), PIN)
    with pytest.raises(ca.TokenError, match="cannot load the PKCS#11 module"):
        open_token_key("/nonexistent/libpkcs11.so", uri, PIN)


def test_wrong_pin_refused_by_the_token_itself(softhsm):
    """With no session logged in, the token (not certmgr's login cache) refuses the PIN."""
    with pytest.raises(ca.PassphraseError, match="wrong PIN"):
        open_token_key(softhsm, Pkcs11Uri(TOKEN, "plant1-ca"), b"0000")
    with open_token_key(softhsm, Pkcs11Uri(TOKEN, "plant1-ca"), PIN, generate_bits=2048) as key:
        assert key.key_size == 2048


def test_a_token_that_stops_signing_is_one_line(softhsm, token_key):
    """A session the token no longer has (HSM restarted, token pulled) fails as a TokenError, not a traceback."""
    key = open_token_key(softhsm, Pkcs11Uri(TOKEN, "plant1-ca"), PIN)
    key.close()
    with pytest.raises(ca.TokenError, match="^the token refused to sign with pkcs11:token=certmgr%20test;object=plant1-ca: "):
        key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
