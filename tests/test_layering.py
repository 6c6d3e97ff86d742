"""Package boundaries (ARCHITECTURE.md): ca, pki and db never import each other or certmgr, and
`certmgr --help` does not pay for asyncua, apscheduler or sqlalchemy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ("ca", "pki", "db")
ALLOWED_THIRD_PARTY = {"ca": {"cryptography", "pkcs11"},  # pkcs11: python-pkcs11, ca/pkcs11.py only, imported on use
                        "pki": {"cryptography"}, "db": {"sqlalchemy", "alembic"}}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", CORE)
def test_core_packages_import_only_their_own_dependencies(package):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = imported_top_levels(path)
        forbidden = names & ({"certmgr", *CORE} - {package})
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"
        foreign = names - stdlib - ALLOWED_THIRD_PARTY[package] - {package}
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_layering_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pki.store\nfrom db import models\n")
    assert imported_top_levels(bad) & {"pki", "db"} == {"pki", "db"}


def all_modules() -> list[str]:
    modules = []
    for package in ("certmgr", *CORE):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_every_module_imports_alone_in_a_fresh_interpreter():
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # one interpreter per package keeps this fast while still catching circular imports at package level
    for package in ("certmgr", *CORE):
        names = [m for m in all_modules() if m == package or m.startswith(package + ".")]
        names = [n for n in names if n != "certmgr.__main__"]
        result = subprocess.run([sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_cli_start_does_not_import_heavy_packages():
    code = (
        "import sys\nfrom certmgr.cli import cli\n"
        "heavy = [m for m in ('asyncua', 'apscheduler', 'sqlalchemy', 'alembic', 'cryptography') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
