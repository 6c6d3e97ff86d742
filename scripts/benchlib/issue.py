"""Issuing: raw cryptography vs certmgr's issue path vs an openssl shell loop; CLI cold start."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import section
from .common import new_home, ratio_line, summary, timed

OPENSSL_EXT = """[v3]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:urn:bench:app, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def raw_issue(issuer_cert, issuer_key) -> None:
    """What any script using cryptography directly must do at least: a key and a signed certificate."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raw")]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("urn:bench:raw"), x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@section("issue", "issue path vs raw cryptography vs openssl; `certmgr --help` cold start")
def bench_issue(work: Path, quick: bool = False) -> None:
    from certmgr.services.issuing import IssueRequest, issue_application

    count = 10 if quick else 150  # RSA key generation times have a long tail: many samples for stable means
    ctx = new_home(work / "home")
    issuer = ctx.issuer()
    raw, managed = [], []
    for i in range(count):  # interleaved, so both paths see the same machine noise
        raw.append(timed(lambda: raw_issue(issuer.certificate, issuer.private_key)))
        request = IssueRequest(
            app_uri=f"urn:bench:app{i}", store=work / "stores" / f"app{i}", dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        managed.append(timed(lambda: issue_application(ctx, request)))
    print(f"raw cryptography keygen+sign   {summary(raw)}")
    print(f"certmgr issue (store + DB row) {summary(managed)}")
    print(ratio_line("certmgr / raw (means)", statistics.fmean(managed), statistics.fmean(raw), "<= 1.15"))
    print(ratio_line("certmgr / raw (medians)", statistics.median(managed), statistics.median(raw), "<= 1.15"))
    print(f"certmgr's own cost per certificate (mean difference): {(statistics.fmean(managed) - statistics.fmean(raw)) * 1000:.1f} ms")

    openssl = shutil.which("openssl")
    if openssl:
        shell = openssl_loop(work / "openssl", issuer, 4 if quick else 15)
        print(f"openssl req + x509 -req loop   {summary(shell)}")
        print(f"certmgr speed-up over openssl loop: {statistics.fmean(shell) / statistics.fmean(managed):.2f}x")
    else:
        print("openssl not found: shell-loop comparison skipped")

    cold = []
    certmgr = Path(sys.executable).with_name("certmgr")
    command = [str(certmgr), "--help"] if certmgr.exists() else [sys.executable, "-m", "certmgr", "--help"]
    baseline = []
    for _ in range(7):
        cold.append(timed(lambda: subprocess.run(command, capture_output=True, check=True)))
        baseline.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)))
    print(f"`certmgr --help` cold start    best {min(cold):.3f} s, median {statistics.median(cold):.3f} s (target <= 0.3 s)")
    print(f"  (bare `python -c pass`: best {min(baseline):.3f} s)")


def openssl_loop(work: Path, issuer, count: int) -> list[float]:
    from cryptography.hazmat.primitives import serialization

    work.mkdir(parents=True)
    ca_pem, ca_key = work / "ca.pem", work / "ca.key"
    ca_pem.write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    ca_key.write_bytes(
        issuer.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ext = work / "ext.cnf"
    ext.write_text(OPENSSL_EXT)
    samples = []
    for i in range(count):
        started = time.perf_counter()
        subprocess.run(
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(work / f"{i}.key"), "-out", str(work / f"{i}.csr"),
             "-subj", f"/CN=app{i}/O=bench"],
            check=True, capture_output=True,
        )
        subprocess.run(
            ["openssl", "x509", "-req", "-in", str(work / f"{i}.csr"), "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(work / f"{i}.pem"), "-days", "365", "-sha256", "-extfile", str(ext),
             "-extensions", "v3"],
            check=True, capture_output=True,
        )
        samples.append(time.perf_counter() - started)
    return samples
