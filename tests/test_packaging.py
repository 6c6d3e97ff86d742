"""A plain (non-editable) install gives a working certmgr: migrations and data files ship in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("certmgr-*.whl"))


def test_wheel_contains_packages_and_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "certmgr/cli/main.py",
        "ca/profile.py",
        "pki/store.py",
        "db/models.py",
        "db/migrations/env.py",
        "db/migrations/script.py.mako",
        "db/migrations/versions/0001_initial_schema.py",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "certmgr = certmgr.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_initialises_a_home(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target), "CERTMGR_CA_PASSPHRASE": "pw", "CERTMGR_HOME": str(tmp_path / "home")}
    env.pop("CERTMGR_DB", None)
    where = subprocess.run(
        [sys.executable, "-c", "import certmgr, db; print(certmgr.__file__); print(db.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    result = subprocess.run(
        [sys.executable, "-m", "certmgr", "init", "--ca-key-size", "2048"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "certmgr", "--json", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert '"internal": true' in listing.stdout
