"""Test helpers that need no fixtures."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509


def legacy_certificate(tmp_path: Path, cn: str = "old", bits: int = 1024, digest: str = "sha1") -> tuple[x509.Certificate, Path, Path]:
    """A self-signed certificate with a weak key and SHA-1, as old devices still present.

    cryptography refuses to sign with SHA-1, so openssl makes it, as it would in the field.
    """
    key = tmp_path / f"{cn}.key"
    cert = tmp_path / f"{cn}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", f"rsa:{bits}", f"-{digest}", "-nodes", "-subj", f"/CN={cn}",
         "-days", "30", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return x509.load_pem_x509_certificate(cert.read_bytes()), cert, key


def der(obj) -> bytes:
    """DER bytes of a certificate or CRL (stores take CRLs as bytes)."""
    from cryptography.hazmat.primitives import serialization

    return obj.public_bytes(serialization.Encoding.DER)



def utc():
    """Now, timezone-aware."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(cm, text: str) -> None:
    """Append settings to a home's certmgr.toml."""
    with open(cm.home / "certmgr.toml", "a") as handle:
        handle.write("\n" + text + "\n")


def smtp_channel(port: int, min_level: str = "warning") -> str:
    return f'''
[[alerts.channel]]
name = "ops-mail"
type = "smtp"
min_level = "{min_level}"
host = "127.0.0.1"
port = {port}
from = "certmgr@plant.local"
to = ["ops@plant.local"]
'''


def npm_installed(app_dir: Path, package: str) -> Path:
    """``npm ci`` in a tests/apps Node.js package once (its package-lock.json pins node-opcua); node and npm
    come from the machine (Node.js 20 here). A missing tool fails the test: it needs the independent stack."""
    import shutil

    import pytest

    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: this test runs a node-opcua application (install Node.js 20)")
    if not (app_dir / "node_modules" / package / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=app_dir, check=True, timeout=600)
    return app_dir
