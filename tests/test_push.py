"""Part 12 push against node-opcua's own implementation (node-opcua 2.157.0 with
node-opcua-server-configuration 2.157.0, installed here with npm from tests/apps/node_push)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import pki
from tests.conftest import Certmgr
from tests.helpers import NODE_PUSH_DIR as NODE_DIR
from tests.helpers import NODE_PUSH_URI as SERVER_URI
from tests.helpers import NodeServer, npm_installed



@pytest.fixture(scope="session")
def node_push_installed() -> Path:
    """npm ci once per test run."""
    return npm_installed(NODE_DIR, "node-opcua-server-configuration")


def served_thumbprint(url: str) -> str:
    import asyncio

    from certmgr.opcua.proofs import endpoint_certificate

    certificate, _ = asyncio.run(endpoint_certificate(url))
    return pki.thumbprint(certificate)


def secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def node_server(initialised: Certmgr, tmp_path, node_push_installed):
    pki_dir = tmp_path / "node-pki"
    pki_dir.mkdir()
    verifier_crl = next((initialised.home / "verifier" / "trusted" / "crl").iterdir())
    # The first time, the server's administrator trusts certmgr's CA and its CRL (as `trust-exchange --export`
    # hands them over); certmgr itself places them, in node-opcua's layout.
    initialised("store", "import", str(pki_dir), str(initialised.home / "ca" / "ca.der"), "--trusted", "--crl", str(verifier_crl),
                "--layout", "node-opcua")
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    yield server, pki_dir
    server.stop()


def test_push_renewal_end_to_end_and_refusals(initialised: Certmgr, tmp_path, node_server, key_pool, foreign_ca):
    server, pki_dir = node_server
    admin = secret(tmp_path / "admin.pass", "admin-pw")
    operator = secret(tmp_path / "operator.pass", "operator-pw")
    initialised("app", "add", "--app-uri", SERVER_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
                "--admin-password-file", str(admin), "--dns", "localhost", "--ip", "127.0.0.1", "--name", "node push test")
    self_signed = served_thumbprint(server.url)

    first = initialised("push", "--app-uri", SERVER_URI, "--json", code=1).json()
    assert first["failed_step"] == "server certificate" and f"--accept-server {self_signed[:16]}" in first["message"]

    pushed = initialised("push", "--app-uri", SERVER_URI, "--accept-server", self_signed[:16], "--json").json()
    assert pushed["ok"], pushed
    assert served_thumbprint(server.url) == pushed["new_thumbprint"] != self_signed
    steps = {s["step"]: s for s in pushed["steps"]}
    assert "regeneratePrivateKey=False" in steps["CreateSigningRequest"]["detail"]
    assert steps["TrustList"]["status"] == "Good" and "read back" in steps["TrustList"]["detail"]
    assert steps["live proof"]["status"] == "Good"
    served = x509.load_der_x509_certificate(_own_der(pki_dir))
    san = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER_URI]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]  # from certmgr's record, not the CSR
    eku = served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert len(list(eku)) == 2 and not served.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign

    regenerated = initialised.json("push", "--app-uri", SERVER_URI, "--regenerate-key")
    assert regenerated["ok"] and served_thumbprint(server.url) == regenerated["new_thumbprint"]
    assert _own_der(pki_dir) != served.public_bytes(serialization.Encoding.DER)
    assert x509.load_der_x509_certificate(_own_der(pki_dir)).public_key().public_numbers() != served.public_key().public_numbers()

    renewed = initialised.json("renew", "--app-uri", SERVER_URI, "--force")[0]
    assert renewed["outcome"] == "renewed" and served_thumbprint(server.url) == renewed["new_thumbprint"]
    history = {c["thumbprint"]: c["status"] for c in initialised.json("show", SERVER_URI)["certificates"]}
    assert history == {pushed["new_thumbprint"]: "superseded", regenerated["new_thumbprint"]: "superseded",
                       renewed["new_thumbprint"]: "active"}
    # a stranger (another CA) tries to connect; the server refuses it, and GetRejectedList shows it
    stranger = pki.ApplicationStore(tmp_path / "stranger")
    key = key_pool.get()
    cert = ca.build_application_certificate(ca.ApplicationIdentity("urn:else:stranger", ca.SubjectFields("stranger", "else")),
                                            key.public_key(), foreign_ca, now=datetime.now(timezone.utc))
    stranger.install_own(cert, ca.private_key_pem(key))
    for part in ("certs", "crl"):  # the stranger trusts certmgr's CA, so only the server can refuse
        for path in (initialised.home / "verifier" / "trusted" / part).iterdir():
            (stranger.root / "trusted" / part / path.name).write_bytes(path.read_bytes())
    attempt = initialised("diagnose", server.url, "--store", str(stranger.root), "--json", code=1).json()
    assert attempt["connection"]["refused_by"] == "server"
    rejected = initialised.json("store", "rejected", "--app-uri", SERVER_URI)
    assert pki.thumbprint(cert) in [r["thumbprint"] for r in rejected]

    # refusals: no SecurityAdmin role, anonymous, Sign-only, a CSR whose URI is not the registered one
    def failures() -> float:  # the Prometheus counter counts failed push renewals too, whatever the step
        return float(re.search(r"^certmgr_renewal_failures_total (\S+)$", initialised("metrics").stdout, re.M).group(1))

    failures_before = failures()
    initialised("app", "update", "--app-uri", SERVER_URI, "--admin-user", "operator", "--admin-password-file", str(operator))
    refused = initialised("push", "--app-uri", SERVER_URI, "--json", code=1).json()
    assert refused["failed_step"] == "CreateSigningRequest" and "BadUserAccessDenied" in refused["message"]
    assert "SecurityAdmin" in refused["message"]
    initialised("app", "update", "--app-uri", SERVER_URI, "--admin-user", "")
    anonymous = initialised("push", "--app-uri", SERVER_URI, "--json", code=1).json()
    assert "BadUserAccessDenied" in anonymous["message"] and "anonymous" in {s["detail"].split(" as ")[-1] for s in anonymous["steps"]}
    initialised("app", "update", "--app-uri", SERVER_URI, "--admin-user", "admin", "--admin-password-file", str(admin))
    sign_only = initialised("push", "--app-uri", SERVER_URI, "--security-mode", "Sign", "--json", code=1).json()
    assert "BadSecurityModeInsufficient" in sign_only["message"]
    assert failures() == failures_before + 3

    other = "urn:certmgr:test:registered-differently"
    initialised("app", "add", "--app-uri", other, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
                "--admin-password-file", str(admin))
    current = served_thumbprint(server.url)
    mismatch = initialised("push", "--app-uri", other, "--accept-server", current[:16], "--json", code=1).json()
    assert mismatch["failed_step"] == "sign CSR" and SERVER_URI in mismatch["message"] and other in mismatch["message"]
    assert served_thumbprint(server.url) == renewed["new_thumbprint"]  # nothing reached the server
    assert initialised.json("show", other)["certificates"] == []

    # a server that does not present the new certificate in time: the push failed, the certificate is revoked
    late = initialised("push", "--app-uri", SERVER_URI, "--regenerate-key", "--verify-timeout", "0.5", "--json", code=1).json()
    assert late["failed_step"] == "live proof" and late["message"].startswith("after 0 s")  # still old, or restarting
    failed = next(c for c in initialised.json("show", SERVER_URI)["certificates"] if c["thumbprint"] == late["new_thumbprint"])
    assert failed["status"] == "failed" and failed["revocation_reason"] == "superseded"
    crl = x509.load_der_x509_crl(next((initialised.home / "verifier" / "trusted" / "crl").iterdir()).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(failed["serial"], 16)) is not None


def _own_der(pki_dir: Path) -> bytes:
    """The certificate node-opcua serves, from its own store (PEM there)."""
    return pki.parse_certificate((pki_dir / "own" / "certs" / "certificate.pem").read_bytes()).public_bytes(serialization.Encoding.DER)
