"""Shared fixtures: a pool of pre-generated RSA keys, a CA, and an in-process certmgr CLI harness.

RSA key generation costs ~0.1 s (2048) to ~1 s (4096); the pool is made once per test run, in parallel,
and ``ca.generate_rsa_key`` is served from it so the suite stays fast.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import os
import shlex
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

import ca

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZES = {2048: 32, 3072: 2, 4096: 3}
CA_KEYS = 4  # 2048-bit keys kept out of the cycle: a CA must never share its key with a leaf it signs
PASSPHRASE = "test passphrase for the CA"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _make_key(bits: int) -> bytes:
    key = ca.keys.rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class KeyPool:
    def __init__(self) -> None:
        jobs = [bits for bits, count in POOL_SIZES.items() for _ in range(count)] + [2048] * CA_KEYS
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            ders = list(pool.map(_make_key, jobs))
        keys: dict[int, list] = {}
        for bits, der in zip(jobs, ders):
            # These keys were made a moment ago by this run's own processes, so OpenSSL's RSA consistency check
            # (half of the pool's start-up: about 0.2 s per key) proves nothing here.
            keys.setdefault(bits, []).append(
                serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True))
        # A leaf whose key is its CA's looks self-signed to a stack that checks the signature with the leaf's own key
        # (node-opcua then says BadCertificateUntrusted): CA keys never come back through the cycle.
        self._ca_keys = keys[2048][-CA_KEYS:]
        keys[2048] = keys[2048][:-CA_KEYS]
        self._cycles = {bits: itertools.cycle(items) for bits, items in keys.items()}

    def get(self, bits: int = 2048):
        ca.check_key_size(bits)
        return next(self._cycles[bits])

    def ca_key(self):
        """A key no leaf ever gets (four per run: test_ca, foreign_ca, the template home's CA, one spare)."""
        return self._ca_keys.pop()


@pytest.fixture(scope="session")
def key_pool() -> KeyPool:
    return KeyPool()


@pytest.fixture(autouse=True)
def pooled_keys(monkeypatch, key_pool):
    """Every key certmgr generates in-process comes from the pool."""
    monkeypatch.setattr(ca, "generate_rsa_key", key_pool.get)
    return key_pool


SOFTHSM_PIN = b"4711-test-pin"
SOFTHSM_TOKEN = "certmgr test"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):
    """A fresh SoftHSM2 token for the session (scripts/softhsm.sh; tests/test_ca_pkcs11*.py); yields the module
    path. SOFTHSM2_CONF must be set before the module is first loaded (once per process)."""
    import subprocess

    pin_file = tmp_path_factory.mktemp("pin") / "pin"
    pin_file.write_bytes(SOFTHSM_PIN)
    out = subprocess.run(["bash", str(ROOT / "scripts/softhsm.sh"), "start", SOFTHSM_TOKEN, str(pin_file)],
                         capture_output=True, text=True, check=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = env["SOFTHSM2_CONF"]
    yield env["CERTMGR_PKCS11_MODULE"]
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
    subprocess.run(["bash", str(ROOT / "scripts/softhsm.sh"), "stop", env["CERTMGR_SOFTHSM_DIR"]], check=True)


@pytest.fixture(scope="session")
def test_ca(key_pool):
    """A CA for tests that work below the CLI."""
    key = key_pool.ca_key()
    cert = ca.build_root_ca(key, ca.SubjectFields("Test CA", "certmgr tests"), now=T0 - timedelta(days=1), days=3650)
    return ca.Issuer(cert, key)


@pytest.fixture(scope="session")
def foreign_ca(key_pool):
    key = key_pool.ca_key()
    cert = ca.build_root_ca(key, ca.SubjectFields("Foreign CA", "elsewhere"), now=T0 - timedelta(days=1), days=3650)
    return ca.Issuer(cert, key)


def make_identity(uri: str = "urn:test:app", cn: str = "app", dns=("localhost",), ips=("127.0.0.1",)):
    return ca.ApplicationIdentity(uri, ca.SubjectFields(cn, "certmgr tests"), tuple(dns), tuple(ips))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class Certmgr:
    """Runs certmgr in-process against one home, like an operator at a shell."""

    def __init__(self, home: Path, db_url: str | None = None) -> None:
        self.home = home
        self.db_url = db_url
        self.env = {"CERTMGR_CA_PASSPHRASE": PASSPHRASE, "CERTMGR_HOME": str(home), "CERTMGR_DB": db_url}
        self.clock = None  # None: the wall clock; else a function returning the aware "now" certmgr sees

    def at(self, moment: datetime) -> Certmgr:
        """Stand every following command at ``moment`` (the AppContext clock, not a monkeypatched utc_now)."""
        self.clock = lambda: moment
        return self

    def __call__(self, *args: str, code: int | None = 0, input: str | None = None) -> Result:
        from certmgr.cli import cli

        argv = list(args[0].split()) if len(args) == 1 and " " in args[0] else list(args)
        runner = CliRunner()
        result = runner.invoke(cli, argv, env=self.env, input=input, catch_exceptions=False,
                               obj={"clock": self.clock} if self.clock else None)
        out = Result(result.exit_code, result.stdout, result.stderr)
        if code is not None:
            assert result.exit_code == code, (
                f"certmgr {shlex.join(argv)} exited {result.exit_code}, expected {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return out

    def json(self, *args: str):
        return self(*args, "--json").json()

    def subprocess_env(self) -> dict[str, str]:
        """The environment for running certmgr in a child process against this home and database."""
        env = {**os.environ, "CERTMGR_CA_PASSPHRASE": PASSPHRASE, "CERTMGR_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        env.pop("CERTMGR_DB", None)
        if self.db_url:
            env["CERTMGR_DB"] = self.db_url
        return env

    @property
    def url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'certmgr.db'}"

    def sql(self, statement: str, **params):
        """Rows of a SQL statement against this home's database (committed), as an operator would look."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        try:
            with engine.begin() as connection:
                result = connection.execute(text(statement), params)
                return result.all() if result.returns_rows else []
        finally:
            engine.dispose()


PG_ENV = "CERTMGR_TEST_PG"  # e.g. postgresql+psycopg://postgres@127.0.0.1:5433/postgres (scripts/test.sh sets it)


def pg_admin_url() -> str | None:
    """The PostgreSQL admin URL of the second pass; "skip" (scripts/test.sh's switch) or unset: none."""
    value = os.environ.get(PG_ENV, "")
    return value if value and value != "skip" else None
DB_FIXTURES = {"certmgr", "initialised", "database_url"}  # the PostgreSQL pass runs tests using these


def pytest_collection_modifyitems(config, items):
    """Mark every test that touches a certmgr database: the PostgreSQL pass runs exactly those.

    Tests of multi-node coordination (marked pg_only) need PostgreSQL's row and advisory locks; without
    CERTMGR_TEST_PG they are deselected (reported as such), never silently passed.
    """
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.uses_db)
    if not pg_admin_url():
        deselected = [item for item in items if item.get_closest_marker("pg_only")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("pg_only")]


class PgDatabases:
    """One admin engine for the run; each test's database is a copy of an initialised template database
    (CREATE DATABASE ... TEMPLATE: a file copy), so no test pays for the migrations and init again."""

    def __init__(self, admin_url: str) -> None:
        from sqlalchemy import create_engine

        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=__import__("sqlalchemy").pool.NullPool)

    def url(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        from sqlalchemy import text

        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        return self.url(name)

    def drop(self, name: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_databases():
    admin_url = pg_admin_url()
    if not admin_url:
        yield None
        return
    databases = PgDatabases(admin_url)
    yield databases
    databases.admin.dispose()


@pytest.fixture
def database_url(pg_databases):
    """None (SQLite in the home) normally; a fresh PostgreSQL database per test when CERTMGR_TEST_PG is set."""
    if pg_databases is None:
        yield None
        return
    import uuid

    name = f"certmgr_test_{uuid.uuid4().hex[:12]}"
    url = pg_databases.create(name)
    try:
        yield url
    finally:
        pg_databases.drop(name)


@pytest.fixture
def certmgr(tmp_path, database_url) -> Certmgr:
    return Certmgr(tmp_path / "home", database_url)


# The template home's CA key is re-encrypted with a cheap scrypt (N=2^10, p=1: about 1 ms) for this run: every
# signing command of a test decrypts it, and the production cost (N=2^14, p=5: about 0.3 s, ca/pkcs8.py) paid by
# the suite's many hundreds of such commands was minutes per pass. The production KDF itself is tested on homes
# of their own (tests/test_ca_hierarchy.py, tests/test_ca_chain.py), which init makes with the default.
TEST_KEY_ENCRYPTION = ca.KeyEncryption(scrypt_n=2**10, scrypt_p=1)


def _cheapen_ca_key(home: Path) -> None:
    path = home / "ca" / "private" / "ca-key.pem"
    key = ca.load_private_key_pem(path.read_bytes(), PASSPHRASE.encode())
    with open(path, "r+b") as handle:  # the file keeps its 0600 mode
        handle.write(ca.encrypted_private_key_pem(key, PASSPHRASE.encode(), TEST_KEY_ENCRYPTION))
        handle.truncate()


@pytest.fixture(scope="session")
def initialised_template(tmp_path_factory, key_pool, pg_databases):
    """`certmgr init` once per run: a home (and, for the PostgreSQL pass, a database) that each test copies."""
    import uuid

    from _pytest.monkeypatch import MonkeyPatch

    patch = MonkeyPatch()
    first = iter([key_pool.ca_key()])  # init makes the CA key first: one no leaf will share
    patch.setattr(ca, "generate_rsa_key", lambda bits=2048: next(first, None) or key_pool.get(bits))
    name = f"certmgr_template_{uuid.uuid4().hex[:8]}"
    url = pg_databases.create(name) if pg_databases is not None else None
    template = Certmgr(tmp_path_factory.mktemp("template") / "home", url)
    try:
        template("init", "--ca-name", "Plant CA", "--org", "Plant", "--ca-key-size", "2048")
    finally:
        patch.undo()
    _cheapen_ca_key(template.home)
    yield template, name
    if pg_databases is not None:
        pg_databases.drop(name)


@pytest.fixture
def initialised(request, tmp_path, initialised_template, pg_databases) -> Certmgr:
    """An initialised home: a copy of the run's template home (and database), its paths moved to this test."""
    import shutil
    import uuid

    template, template_db = initialised_template
    home = tmp_path / "home"
    shutil.copytree(template.home, home, symlinks=True)
    url = None
    if pg_databases is not None:
        name = f"certmgr_test_{uuid.uuid4().hex[:12]}"
        url = pg_databases.create(name, template=template_db)
        request.addfinalizer(lambda: pg_databases.drop(name))
        toml = home / "certmgr.toml"
        toml.write_text(toml.read_text().replace(template.db_url, url))
    cm = Certmgr(home, url)
    old, new = str(template.home), str(home)
    for table, column in (("applications", "store_path"), ("authorities", "key_path"), ("store_crls", "store_path"),
                          ("canaries", "key_file")):
        cm.sql(f"UPDATE {table} SET {column} = :new || substr({column}, :length + 1) WHERE substr({column}, 1, :length) = :old",
               new=new, old=old, length=len(old))
    return cm


class Mailbox:
    """aiosmtpd handler keeping every mail it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 collecting the mails it receives."""
    from aiosmtpd.controller import Controller

    from tests.helpers import free_port

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()
