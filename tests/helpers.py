"""Test helpers that need no fixtures."""

from __future__ import annotations

import os
import subprocess
import threading
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
    """Set keys in a home's certmgr.toml as an operator edits it: a key of a [section] the file has goes under that
    section's header (replacing the key, or its commented template line); [[arrays]] and new sections are appended."""
    import re

    path = cm.home / "certmgr.toml"
    lines = path.read_text().splitlines()
    appended: list[str] = []
    section = None
    for line in text.strip().splitlines():
        header = re.match(r"^\[([A-Za-z0-9_.]+)\]\s*$", line.strip())
        if header:
            section = header.group(1) if f"[{header.group(1)}]" in (l.strip() for l in lines) else None
            if section is None:
                appended.append(line)
            continue
        if line.strip().startswith("[["):
            section = None
        key = re.match(r"^\s*([A-Za-z0-9_]+)\s*=", line)
        if section is None or key is None:
            appended.append(line)
            continue
        start = next(i for i, l in enumerate(lines) if l.strip() == f"[{section}]")
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        pattern = re.compile(rf"^\s*#?\s*{key.group(1)}\s*=")
        existing = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if existing is None:
            lines.insert(start + 1, line)
        else:
            lines[existing] = line
    path.write_text("\n".join(lines + [""] + appended) + "\n")


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
    import fcntl

    # pytest-xdist workers share the folder: one runs npm ci, the others wait for it
    with open(app_dir / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (app_dir / "node_modules" / package / "package.json").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=app_dir, check=True, timeout=600)
    return app_dir


NODE_PUSH_DIR = Path(__file__).parent / "apps" / "node_push"
NODE_PUSH_URI = "urn:certmgr:test:nodeopcua-server"


class NodeServer:
    def __init__(self, pki_dir: Path, passwords: dict[str, str], port: int = 0) -> None:
        """node-opcua's push server on ``pki_dir`` (``port`` 0: any free one), started and READY."""
        env = {**os.environ, "ADMIN_PASSWORD": passwords["admin"], "OPERATOR_PASSWORD": passwords["operator"], "APP_URI": NODE_PUSH_URI}
        self.log = pki_dir.parent / "node-server.log"
        self.process = subprocess.Popen(["node", str(NODE_PUSH_DIR / "server.js"), str(pki_dir), str(port)], cwd=NODE_PUSH_DIR, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                break
        else:
            raise RuntimeError(f"node-opcua server did not start (exit {self.process.wait()})")

        def drain():  # node-opcua writes warnings to stdout: a full pipe would block the server
            with open(self.log, "ab") as handle:
                for chunk in iter(self.process.stdout.readline, b""):
                    handle.write(chunk)

        threading.Thread(target=drain, daemon=True).start()

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
