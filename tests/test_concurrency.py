"""Concurrent publishers (issue 14): the newest CRL wins in every store, no false alarms, one CRL file per CA."""

from __future__ import annotations

import subprocess
import sys
import time

from cryptography import x509

import pki
from tests.conftest import ROOT, Certmgr


def crl_files(store: pki.ApplicationStore, ca_cert) -> list:
    return store.ca_crl_files(ca_cert, pki.TRUSTED)


def run(cm: Certmgr, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "certmgr", *args], cwd=ROOT, env=cm.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_issue_racing_a_revocation_ends_with_the_newest_crl(initialised: Certmgr, tmp_path):
    initialised("issue", "--app-uri", "urn:plant:old", "--store", str(tmp_path / "old"))
    victim = initialised.json("show", "urn:plant:old")["active"]["thumbprint"]
    ca_cert = x509.load_der_x509_certificate((initialised.home / "ca" / "ca.der").read_bytes())
    # a 4096-bit key takes the issue long enough for the revocation to commit and publish meanwhile
    issuing = run(initialised, "issue", "--app-uri", "urn:plant:new", "--store", str(tmp_path / "new"), "--key-size", "4096")
    time.sleep(0.2)
    initialised("revoke", victim, "--yes")
    out, err = issuing.communicate(timeout=120)
    assert issuing.returncode == 0, err
    newest = initialised.sql("SELECT max(number) FROM crls")[0][0]
    store = pki.ApplicationStore(tmp_path / "new")
    files = crl_files(store, ca_cert)
    assert len(files) == 1
    held = x509.load_der_x509_crl(files[0].read_bytes())
    assert held.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == newest
    assert held.get_revoked_certificate_by_serial_number(
        int(initialised.json("show", victim)["certificates"][0]["serial"], 16)) is not None


def test_two_forced_refreshes_at_once_both_succeed_and_leave_one_crl_file(initialised: Certmgr, tmp_path):
    for name in ("a", "b", "c"):
        initialised("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name))
    ca_cert = x509.load_der_x509_certificate((initialised.home / "ca" / "ca.der").read_bytes())
    for _ in range(3):
        first, second = run(initialised, "crl", "refresh", "--force"), run(initialised, "crl", "refresh", "--force")
        for process in (first, second):
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, out + err
            assert "not valid yet" not in out + err and "unexpected" not in err
        newest = initialised.sql("SELECT max(number) FROM crls")[0][0]
        for name in ("a", "b", "c"):
            files = crl_files(pki.ApplicationStore(tmp_path / name), ca_cert)
            assert len(files) == 1, files
            number = x509.load_der_x509_crl(files[0].read_bytes()).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            assert number == newest
