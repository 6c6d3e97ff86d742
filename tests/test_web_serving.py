"""The console served by `certmgr daemon` ([web] daemon = true) over TLS with a server certificate certmgr issued
from its own CA, that certificate reloaded after `certmgr renew` without a restart, and the TLS rule off loopback."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

import pki
from certmgr.context import AppContext
from tests.conftest import PASSPHRASE, Certmgr
from tests.helpers import configure, free_port
from tests.test_daemon import start_daemon, wait_for

pytestmark = pytest.mark.uses_db
URI = "urn:plant:certmgr-web"


def _issue_web_certificate(cm: Certmgr, folder: Path) -> tuple[Path, Path]:
    """A server certificate from certmgr's CA in a PEM layout (node-opcua's: certificate.pem + private_key.pem)."""
    cm("issue", "--app-uri", URI, "--store", str(folder), "--layout", "node-opcua", "--role", "server",
       "--dns", "localhost", "--ip", "127.0.0.1")
    return folder / "own" / "certs" / "certificate.pem", folder / "own" / "private" / "private_key.pem"


def _ca_context(cm: Certmgr) -> ssl.SSLContext:
    """A TLS client that trusts certmgr's CA only. Its certificate goes in as PEM text, not DER bytes: CPython reads
    DER cadata until OpenSSL's error queue says "end of data", so an error another test left on this thread's queue
    is likely what once failed this load in CI (PROV BAD_DECRYPT; not reproduced alone). PEM reading ends on its
    own "no start line" error, the newest on the queue."""
    der = AppContext(cm.home).home.ca_cert_path.read_bytes()
    return ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))


def _presented(cm: Certmgr, port: int) -> str:
    """The thumbprint of the certificate the console presents, verified against certmgr's CA and the host name."""
    context = _ca_context(cm)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        return pki.thumbprint(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)))


def _active(cm: Certmgr) -> str:
    return cm.json("show", URI)["active"]["thumbprint"]


def test_daemon_serves_the_console_over_tls_with_a_certificate_certmgr_issued(initialised: Certmgr, tmp_path):
    cert, key = _issue_web_certificate(initialised, tmp_path / "web")
    port = free_port()
    configure(initialised, f'''
[web]
daemon = true
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"

[daemon]
metrics_listen = ""
''')
    daemon = start_daemon(initialised)
    try:
        wait_for(lambda: _reachable(port), 60, "the console", daemon)
        assert _presented(initialised, port) == _active(initialised)
        page = urllib.request.urlopen(f"https://localhost:{port}/login", context=_ca_context(initialised), timeout=10)
        assert page.status == 200 and "Secure" in page.headers["set-cookie"] and b'name="password"' in page.read()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert f'msg="web console on https://127.0.0.1:{port}/"' in err and not _reachable(port)


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_renewed_certificate_is_served_without_a_restart(initialised: Certmgr, tmp_path, monkeypatch):
    from certmgr.web.serving import BackgroundConsole, plan

    cert, key = _issue_web_certificate(initialised, tmp_path / "web")
    port = free_port()
    configure(initialised, f'[web]\nlisten = "127.0.0.1:{port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    monkeypatch.setenv("CERTMGR_CA_PASSPHRASE", PASSPHRASE)
    ctx = AppContext(initialised.home, db_url=initialised.db_url)
    console = BackgroundConsole(ctx, plan(ctx.settings))
    console.start()
    try:
        first = _presented(initialised, port)
        assert first == _active(initialised)
        initialised("renew", "--app-uri", URI, "--force")  # as the nightly renewal would
        renewed = _active(initialised)
        assert renewed != first and _presented(initialised, port) == first  # until the reloader looks
        console.reloader.check(())  # its look of every RELOAD_EVERY seconds, now
        assert _presented(initialised, port) == renewed and console.reloader.reloads == 1
    finally:
        console.stop()
        ctx.close()


def test_daemon_refuses_the_console_off_loopback_without_tls(initialised: Certmgr):
    port = free_port()
    configure(initialised, f'[web]\ndaemon = true\nlisten = "0.0.0.0:{port}"\n')
    done = subprocess.run([sys.executable, "-m", "certmgr", "daemon"], env=initialised.subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a loopback address" in done.stderr and done.stderr.count("\n") == 1
    assert not _reachable(port)
