"""Issue 14: hostile input is refused before anything is written: exit 2, one line on stderr, and the home
and every store byte for byte as before (hashed before and after)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from certmgr.context import AppContext
from certmgr.errors import InputError
from certmgr.services.store_paths import check_store_location
from tests.conftest import Certmgr

HOSTS = ("--dns", "localhost", "--ip", "127.0.0.1")


def tree(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every folder and file under ``roots``: mode and content hash. SQLite's -wal/-shm side files come and
    go with each connection; the database file itself is compared."""
    seen: dict[str, tuple[int, str]] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in [root, *sorted(root.rglob("*"))]:
            if path.name.endswith(("-wal", "-shm")):
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            seen[str(path)] = (stat.S_IMODE(path.lstat().st_mode), digest)
    return seen


def refused(cm: Certmgr, *args: str, match: str, roots: tuple[Path, ...] = ()) -> str:
    """Run a command that must be refused: exit 2, one `certmgr: error:` line naming ``match``, nothing written."""
    watched = (cm.home, *roots)
    before = tree(*watched)
    result = cm(*args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("certmgr: error: "), result.stderr
    assert match in lines[0], lines[0]
    assert "unexpected" not in lines[0]
    assert tree(*watched) == before
    return lines[0]


@pytest.fixture
def stores(tmp_path) -> Path:
    root = tmp_path / "stores"
    root.mkdir()
    return root


@pytest.fixture
def fleet(initialised, stores) -> Certmgr:
    initialised("issue", "--app-uri", "urn:plant1:historian", "--store", str(stores / "historian"), *HOSTS)
    return initialised


def test_application_uri_longer_than_1024_is_refused_and_1024_accepted(initialised, stores):
    prefix = "urn:plant1:"
    line = refused(initialised, "issue", "--app-uri", prefix + "x" * (1025 - len(prefix)), "--store", str(stores / "long"),
                   match="1025 characters, more than the 1024", roots=(stores,))
    assert "use a shorter URI" in line
    at_limit = prefix + "x" * (1024 - len(prefix))
    issued = initialised.json("issue", "--app-uri", at_limit, "--store", str(stores / "long"), *HOSTS)
    assert issued["app_uri"] == at_limit


@pytest.mark.parametrize("option", ["--org", "--name"])
def test_control_characters_in_issue_subject_are_refused(initialised, stores, option):
    refused(initialised, "issue", "--app-uri", "urn:plant1:hmi", "--store", str(stores / "hmi"), option, "Plant\x011",
            match="U+0001", roots=(stores,))


@pytest.mark.parametrize("option", ["--org", "--ca-name"])
def test_control_characters_in_init_are_refused_before_the_home_exists(certmgr, option):
    result = certmgr("init", "--ca-key-size", "2048", option, "Plant\n1", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "control character(s) U+000A" in lines[0], result.stderr
    assert not certmgr.home.exists()


def test_scoped_ipv6_address_is_refused(initialised, stores):
    refused(initialised, "issue", "--app-uri", "urn:plant1:hmi", "--store", str(stores / "hmi"), "--ip", "fe80::1%eth0",
            match="carries a zone (%eth0)", roots=(stores,))


@pytest.mark.parametrize(
    "content, match",
    [(b"\xff\xfe\x00a\x00p\x00p\x00", "is not UTF-8 text (byte 0xff at offset 0)"),
     (b"app_uri,store\nurn:plant1:a,/tmp/a\x00\n", "holds NUL bytes"),
     (bytes(range(256)) * 4, "is not UTF-8 text")],
)
def test_batch_file_that_is_not_utf8_csv_or_json_lines_is_refused(initialised, tmp_path, stores, content, match):
    batch = tmp_path / "batch.csv"
    batch.write_bytes(content)
    line = refused(initialised, "issue", "--batch", str(batch), match=match, roots=(stores,))
    assert "give a UTF-8 CSV file with a header row, or JSON lines" in line


def test_database_of_a_newer_schema_is_refused_by_every_command(initialised):
    initialised.sql("UPDATE alembic_version SET version_num = '0099'")
    for args in (("db", "upgrade"), ("db", "check"), ("list",), ("crl", "refresh")):
        line = refused(initialised, *args, match="is at schema 0099, newer than this certmgr (head ")
        assert line.endswith("): upgrade certmgr")
    assert initialised.sql("SELECT version_num FROM alembic_version") == [("0099",)]


def test_older_schema_still_points_to_db_upgrade(initialised):
    initialised.sql("UPDATE alembic_version SET version_num = '0006'")
    refused(initialised, "list", match="at schema 0006, this certmgr needs")


@pytest.mark.parametrize("args", [("list",), ("crl", "refresh", "--force"), ("--json", "list")])
def test_closed_stdout_pipe_ends_quietly(fleet, args):
    """`certmgr list | head -1`: the reader is gone before certmgr writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "certmgr", *args], stdout=write_end, stderr=subprocess.PIPE,
                              env=fleet.subprocess_env(), text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 1  # click's convention for a closed pipe: the output did not arrive


def test_store_location_refusals_by_the_check_itself(fleet, stores, tmp_path):
    ctx = AppContext(fleet.home, db_url=fleet.db_url)
    historian = stores / "historian"
    cases = {
        historian / "trusted" / "certs": "is inside the store of urn:plant1:historian",
        historian / "own": "is inside the store of urn:plant1:historian",
        historian / "own" / "certs" / "x": "is inside the store of urn:plant1:historian",
        stores: "holds the store of urn:plant1:historian",
        historian: "belongs to urn:plant1:historian",
        fleet.home: "is the certmgr home",
        fleet.home / "ca": "is inside the certmgr home",
        fleet.home / "verifier" / "own": "is inside the certmgr home",
        fleet.home.parent: "holds the certmgr home",
    }
    try:
        for path, match in cases.items():
            with pytest.raises(InputError, match=match):
                check_store_location(ctx, path, "urn:plant1:new")
        link = tmp_path / "link-to-historian"
        link.symlink_to(historian / "own")
        with pytest.raises(InputError, match="inside the store of urn:plant1:historian"):
            check_store_location(ctx, link, "urn:plant1:new")
        with pytest.raises(InputError, match="is inside the store"):
            check_store_location(ctx, stores / "historian" / ".." / "historian" / "own", "urn:plant1:new")
        # the application's own store (issue --force) and a sibling folder are fine; the result is absolute
        assert check_store_location(ctx, historian, "urn:plant1:historian") == historian
        assert check_store_location(ctx, stores / "historian2", "urn:plant1:new") == stores / "historian2"
        os.chdir(stores)
        assert check_store_location(ctx, Path("hmi"), "urn:plant1:new") == stores / "hmi"
    finally:
        os.chdir(tmp_path)
        ctx.close()


@pytest.mark.parametrize(
    "where, match",
    [(lambda s, h: s / "historian" / "trusted" / "certs", "is inside the store of urn:plant1:historian"),
     (lambda s, h: s / "historian" / "own", "is inside the store of urn:plant1:historian"),
     (lambda s, h: s, "holds the store of urn:plant1:historian"),
     (lambda s, h: h, "is the certmgr home"),
     (lambda s, h: h / "ca", "is inside the certmgr home")],
)
def test_issue_into_a_store_inside_another_or_the_home_is_refused(fleet, stores, where, match):
    line = refused(fleet, "issue", "--app-uri", "urn:plant1:hmi", "--store", str(where(stores, fleet.home)), *HOSTS,
                   match=match, roots=(stores,))
    assert "a folder of its own" in line
    assert stat.S_IMODE(fleet.home.stat().st_mode) == 0o700


def test_relative_store_path_is_recorded_absolute(fleet, stores, tmp_path):
    os.chdir(stores)
    try:
        fleet("issue", "--app-uri", "urn:plant1:hmi", "--store", "hmi", *HOSTS)
    finally:
        os.chdir(tmp_path)
    assert fleet.sql("SELECT store_path FROM applications WHERE app_uri = 'urn:plant1:hmi'") == [(str(stores / "hmi"),)]
    fleet("crl", "refresh")  # run from another folder: it still finds the store
