"""One lifecycle module, one pipeline, strict settings (issue 13)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import ca
import pki
from certmgr import constants
from certmgr.config import Settings, load_settings, parse_settings, render_settings
from certmgr.errors import InputError
from tests.conftest import Certmgr
from tests.helpers import configure, free_port

ROOT = Path(__file__).resolve().parent.parent
# what assigns a certificate's status or revocation: only services/lifecycle.py may
STATUS_WRITE = re.compile(r"(\w+)\.(status|revoked_at|revocation_reason)\s*=(?!=)|\bstatus=db\.CertStatus")
NOT_CERTIFICATES = {"outcome", "publication", "self", "report", "result"}  # report objects that carry a status too


def status_writers(files) -> list[str]:
    found = []
    for path in files:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            writes = [m for m in STATUS_WRITE.finditer(line) if m.group(1) not in NOT_CERTIFICATES]
            if writes:
                found.append(f"{path}:{number}: {line.strip()}")
    return found


def test_only_the_lifecycle_module_writes_certificate_statuses():
    files = [p for p in (ROOT / "certmgr").rglob("*.py") if p.name != "lifecycle.py"]
    assert status_writers(files) == []


def test_the_status_check_can_fail(tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f(row, db):\n    row.status = db.CertStatus.ACTIVE\n    row.revoked_at = None\n")
    assert len(status_writers([rogue])) == 2


def test_constants_agree_with_the_profile():
    assert constants.KEY_SIZES == ca.RSA_KEY_SIZES
    assert set(constants.REVOCATION_REASONS) == set(ca.REASONS)
    assert constants.LAYOUT_NAMES == tuple(pki.LAYOUTS)


def test_a_misspelt_key_is_refused_with_its_line_and_the_nearest_name(tmp_path):
    path = tmp_path / "certmgr.toml"
    path.write_text('[ca]\nname = "Plant CA"\n\n[alerts]\ncritical = "7d"\nwarnng = "3d"\n')
    with pytest.raises(InputError) as refused:
        load_settings(path)
    assert "unknown key `warnng` in [alerts] (line 6)" in refused.value.message
    assert refused.value.hint == "did you mean `warning`?"


def test_a_misspelt_section_is_refused_with_its_line_and_the_nearest_name(tmp_path):
    path = tmp_path / "certmgr.toml"
    path.write_text('[ca]\nname = "Plant CA"\n[schedul]\nrenew_due = "every 1h"\n')
    with pytest.raises(InputError) as refused:
        load_settings(path)
    assert "unknown section [schedul] (line 3)" in refused.value.message and refused.value.hint == "did you mean [schedule]?"


def test_a_wrong_type_and_a_bad_duration_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"\[verify\] concurrency must be a int"):
        parse_settings("[verify]\nconcurrency = \"four\"\n", tmp_path / "x.toml")
    with pytest.raises(InputError, match=r"\[alerts\] critical"):
        parse_settings("[alerts]\ncritical = \"soon\"\n", tmp_path / "x.toml")
    with pytest.raises(InputError, match="unknown key `hots`"):
        parse_settings('[[alerts.channel]]\nname = "m"\ntype = "smtp"\nhots = "x"\n', tmp_path / "x.toml")


def test_every_command_exits_2_on_a_typo(initialised: Certmgr):
    configure(initialised, '[alerts]\nwarnng = "3d"')
    for args in (("list",), ("crl", "refresh"), ("renew", "--all-due"), ("ca", "show")):
        result = initialised(*args, code=2)
        assert "warnng" in result.stderr and "did you mean `warning`?" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_template_parses_back_into_the_same_settings(tmp_path):
    settings = Settings()
    settings.ca.name, settings.ca.crl_days, settings.defaults.organization = 'Plant "1" CA\t', 14, "Plant 1"
    settings.daemon.node, settings.renew.keep_history = "plant1-a", 3
    text = render_settings(settings)
    assert parse_settings(text, tmp_path / "certmgr.toml") == settings
    assert parse_settings(render_settings(Settings()), tmp_path / "certmgr.toml") == Settings()
    for section in ("[ca]", "[defaults]", "[verify]", "[database]", "[alerts]", "[schedule]", "[daemon]", "[renew]", "[fleet]"):
        assert section in text


def test_an_unexpected_error_in_one_of_three_renewals_fails_only_that_one(initialised: Certmgr, tmp_path, monkeypatch):
    from certmgr.services import delivery_store

    for name in ("a", "b", "c"):
        initialised("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name), "--role", "client")
    real = delivery_store.StoreDelivery._issue_and_stage

    def broken_for_b(self, item):
        if item.candidate.app_uri == "urn:plant:b":
            raise RuntimeError("disk controller on fire")
        return real(self, item)

    monkeypatch.setattr(delivery_store.StoreDelivery, "_issue_and_stage", broken_for_b)
    result = initialised("renew", "--app-uri", "urn:plant:a", "--app-uri", "urn:plant:b", "--app-uri", "urn:plant:c",
                         "--force", "--json", code=1)
    outcomes = {r["app_uri"]: r for r in result.json()}
    assert outcomes["urn:plant:b"]["outcome"] == "failed" and "disk controller on fire" in outcomes["urn:plant:b"]["reason"]
    assert outcomes["urn:plant:a"]["outcome"] == outcomes["urn:plant:c"]["outcome"] == "renewed"
    for name in ("a", "c"):
        assert pki.ApplicationStore(tmp_path / name).own().thumbprint == outcomes[f"urn:plant:{name}"]["new_thumbprint"]
    assert initialised.sql("SELECT count(*) FROM certificates WHERE status = 'pending'") == [(0,)]


def test_one_run_signs_one_crl_and_counts_each_failure_once(initialised: Certmgr, tmp_path, monkeypatch):
    """A renewed store app, a store app whose proof fails (its certificate is revoked) and a push app whose server
    is down: one CRL for the run, one renewal.fail each."""
    from certmgr.opcua import validator as validator_module

    initialised("issue", "--app-uri", "urn:plant:ok", "--store", str(tmp_path / "ok"), "--role", "client")
    initialised("issue", "--app-uri", "urn:plant:refused", "--store", str(tmp_path / "refused"), "--role", "client")
    initialised("app", "add", "--app-uri", "urn:plant:plc", "--endpoint", f"opc.tcp://127.0.0.1:{free_port()}", "--deploy", "push")
    refused_old = initialised.json("show", "urn:plant:refused")["active"]["thumbprint"]
    real_check = validator_module.StoreValidator.check
    verifier_root = initialised.home / "verifier"

    def refusing(self, cert, app_uri):
        if self.store.root == verifier_root and cert.subject.rfc4514_string().startswith("CN=refused"):
            if pki.thumbprint(cert) != refused_old:
                return pki.Validation("BadCertificateUntrusted", "forced refusal by the test")
        return real_check(self, cert, app_uri)

    monkeypatch.setattr(validator_module.StoreValidator, "check", refusing)
    signed_before = initialised.sql("SELECT count(*) FROM audit_events WHERE action = 'crl.sign'")[0][0]
    result = initialised("renew", "--app-uri", "urn:plant:ok", "--app-uri", "urn:plant:refused", "--app-uri", "urn:plant:plc",
                         "--force", "--json", code=1)
    outcomes = {r["app_uri"]: r["outcome"] for r in result.json()}
    assert outcomes == {"urn:plant:ok": "renewed", "urn:plant:refused": "failed", "urn:plant:plc": "failed"}
    assert initialised.sql("SELECT count(*) FROM audit_events WHERE action = 'crl.sign'")[0][0] == signed_before + 1
    failures = initialised.sql("SELECT target FROM audit_events WHERE action = 'renewal.fail' ORDER BY target")
    assert failures == [("urn:plant:plc",), ("urn:plant:refused",)]
    metrics = initialised("metrics").stdout
    assert re.search(r"^certmgr_renewal_failures_total 2\.0$", metrics, re.M)


def test_asyncua_internals_the_guard_relies_on_are_there():
    """certmgr/opcua/channel.py replaces asyncua's private UaProcessor.open_secure_channel: this fails, naming the
    override, when asyncua changes what it relies on."""
    code = "from certmgr.opcua.channel import check_asyncua_internals; print(check_asyncua_internals())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"asyncua changed under the open_secure_channel override: {result.stdout}"


@pytest.mark.parametrize("days, code", [(36500, 0), (36501, 2)])
def test_validity_limit_boundary(initialised: Certmgr, tmp_path, days, code):
    result = initialised("issue", "--app-uri", "urn:plant:long", "--store", str(tmp_path / "s"), "--days", str(days), code=code)
    if code:
        assert "100 years" in result.stderr and not (tmp_path / "s").exists()


@pytest.mark.parametrize("window, code", [("29d23h", 0), ("30d", 2)])
def test_renewal_window_boundary(initialised: Certmgr, tmp_path, window, code):
    """A window must be shorter than the lifetime: equal would renew every night."""
    result = initialised("issue", "--app-uri", "urn:plant:w", "--store", str(tmp_path / "w"), "--days", "30",
                         "--renew-before", window, code=code)
    if code:
        assert "every night" in result.stderr and not (tmp_path / "w").exists()
