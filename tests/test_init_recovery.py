"""`certmgr init` killed half-way is resumed; three concurrent inits leave one CA (issue 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography import x509

import pki
from tests.conftest import ROOT, Certmgr


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after the raise runs, no except Exception handler sees it."""


@pytest.mark.parametrize("step", ["certificate", "authority", "crl", "verifier"])
def test_an_init_cut_at_each_step_is_refused_by_other_commands_and_resumed_by_init(certmgr: Certmgr, monkeypatch, step):
    from certmgr.services import setup

    real_write, real_sign, real_issue = setup.atomic_write, setup.sign_crl, setup.issue_application

    def cut_write(path, *args, **kwargs):
        if step == "certificate" and path.name == "ca.der":
            raise Killed()
        return real_write(path, *args, **kwargs)

    def cut_sign(*args, **kwargs):
        if step == "crl":
            raise Killed()
        return real_sign(*args, **kwargs)

    def cut_issue(*args, **kwargs):
        if step == "verifier":
            raise Killed()
        return real_issue(*args, **kwargs)

    monkeypatch.setattr(setup, "atomic_write", cut_write)
    monkeypatch.setattr(setup, "sign_crl", cut_sign)
    monkeypatch.setattr(setup, "issue_application", cut_issue)
    if step == "authority":
        monkeypatch.setattr(setup, "_ca_material", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        certmgr("init", "--ca-name", "Plant CA", "--ca-key-size", "2048")
    monkeypatch.undo()
    assert (certmgr.home / "init.incomplete").exists()
    refused = certmgr("list", code=2)
    assert "did not finish" in refused.stderr and "run `certmgr init` again" in refused.stderr
    resumed = certmgr.json("init", "--ca-name", "Plant CA", "--ca-key-size", "2048")
    assert resumed["resumed"] is True
    assert not (certmgr.home / "init.incomplete").exists()
    assert certmgr.sql("SELECT count(*) FROM authorities") == [(1,)]
    ca_cert = x509.load_der_x509_certificate((certmgr.home / "ca" / "ca.der").read_bytes())
    assert certmgr.sql("SELECT thumbprint FROM authorities") == [(pki.thumbprint(ca_cert),)]
    crl = x509.load_der_x509_crl(certmgr.sql("SELECT der FROM crls ORDER BY number DESC")[0][0])
    assert crl.is_signature_valid(ca_cert.public_key())
    assert b"ENCRYPTED" in (certmgr.home / "ca" / "private" / "ca-key.pem").read_bytes()
    assert certmgr.sql("SELECT count(*) FROM certificates WHERE status = 'pending'") == [(0,)]
    certmgr("issue", "--app-uri", "urn:plant:after", "--store", str(certmgr.home.parent / "after"))
    assert certmgr("init", "--ca-name", "Plant CA", code=2).stderr.startswith("certmgr: error: a CA already exists")


def test_three_concurrent_inits_on_a_new_home_leave_one_ca(tmp_path, database_url):
    cm = Certmgr(tmp_path / "home", database_url)
    env = cm.subprocess_env()
    processes = [
        subprocess.Popen([sys.executable, "-m", "certmgr", "init", "--ca-name", f"Plant CA {n}", "--ca-key-size", "2048"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outcomes = [(p.wait(120), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2, 2], outcomes
    for code, stderr in outcomes:
        if code == 2:
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("certmgr: error:"), stderr
            assert "unexpected" not in stderr
    assert cm.sql("SELECT count(*) FROM authorities") == [(1,)]
    ca_cert = x509.load_der_x509_certificate((cm.home / "ca" / "ca.der").read_bytes())
    assert cm.sql("SELECT thumbprint FROM authorities") == [(pki.thumbprint(ca_cert),)]
    for (der,) in cm.sql("SELECT der FROM crls"):
        assert x509.load_der_x509_crl(der).is_signature_valid(ca_cert.public_key())
    cm("ca", "show")
