"""The crash-safety invariants of issue 14, checked on a home, its stores and its database WITHOUT repairing.

``check`` returns a list of violations (strings "<code>: <detail>") instead of asserting, so a sweep can
count them. Codes, so that tests and the sweep can group them:

    own-pair       a store does not hold exactly one loadable own certificate with its matching 0600 key
    db-store       the database's active certificate is not the store's, and no pending row marks the change
    unknown-cert   a CA-signed certificate under own/ (certs, history, staged) the database does not know
    pending-left   a `pending` certificate or a renewal claim is left (settled phase only)
    staged-left    own/staged is not empty (settled phase only)
    crl-missing    a revoked serial is not on a store's CRL of the CA (settled phase only)
    crl-backwards  a store's (or the database's) newest CRL number of the CA went down
    crl-files      a CRL folder holds more than one CRL file of the CA, or trusted/crl none (settled)
    ca-files       the CA files changed, the CA key is not encrypted or not 0600, the database's CA is
                   not ca/ca.der
    database       PRAGMA integrity_check is not ok
    authority      not exactly one authority row (at most one right after a kill of init)
    init-incomplete the home is not a working certmgr home (settled phase of init)
    goal           the operation's goal is not reached after the follow-up
    stderr         a "Traceback" or "unexpected" error in a command's stderr

Phases: ``killed`` (right after SIGKILL: what must hold at every instant) and ``settled`` (after the
follow-up command: everything).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

import pki
from pki.readers import read_certificates
from pki import crl_number as crl_number_of

KILLED = "killed"
SETTLED = "settled"
CA_FILES = ("ca/ca.der", "ca/ca.pem", "ca/private/ca-key.pem")
VERIFIER_STORE = "verifier"


@dataclass
class Snapshot:
    """What must not change or go backwards, taken before the command runs."""

    ca_hashes: dict[str, str] = field(default_factory=dict)
    store_crl_numbers: dict[str, int] = field(default_factory=dict)  # store path -> newest CA CRL number
    db_crl_number: int = 0
    actives: dict[str, str] = field(default_factory=dict)  # app URI -> active thumbprint
    revoked: set[str] = field(default_factory=set)  # thumbprints


@dataclass
class DbView:
    """The rows the invariants need, read from a copy of the database (so nothing is checkpointed)."""

    integrity: str
    authorities: list[tuple[str, bytes]]  # (thumbprint, certificate DER)
    applications: list[dict]
    certificates: list[dict]
    crl_number: int

    def known_thumbprints(self) -> set[str]:
        return {c["thumbprint"] for c in self.certificates}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_database(home: Path) -> DbView | None:
    """The database of a home, or None when there is none yet. Read from a private copy of the database
    and its WAL: opening the real one would checkpoint it, which is a repair the next command must do."""
    source = home / "certmgr.db"
    if not source.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="kill-db-") as scratch:
        for suffix in ("", "-wal", "-journal"):
            if (home / f"certmgr.db{suffix}").exists():
                shutil.copy2(home / f"certmgr.db{suffix}", Path(scratch) / f"certmgr.db{suffix}")
        connection = sqlite3.connect(Path(scratch) / "certmgr.db")
        try:
            connection.row_factory = sqlite3.Row
            integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "authorities" not in tables:
                return DbView(integrity, [], [], [], 0)
            authorities = [(r["thumbprint"], r["certificate_der"]) for r in connection.execute("SELECT * FROM authorities")]
            applications = [dict(r) for r in connection.execute("SELECT * FROM applications")]
            certificates = [dict(r) for r in connection.execute(
                "SELECT c.*, a.app_uri FROM certificates c JOIN applications a ON a.id = c.application_id")]
            crl_number = connection.execute("SELECT COALESCE(MAX(number), 0) FROM crls").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return DbView(f"unreadable: {exc}", [], [], [], 0)
        finally:
            connection.close()
    return DbView(integrity, authorities, applications, certificates, crl_number)


def _ca_certificate(home: Path) -> x509.Certificate | None:
    try:
        return pki.parse_certificate((home / "ca" / "ca.der").read_bytes())
    except (OSError, ValueError):
        return None


def _stores(home: Path, view: DbView | None, extra: dict[str, str]) -> dict[str, str]:
    """store path -> layout: every registered file store, plus the scenario's target stores on disk."""
    stores = {}
    for app in view.applications if view else []:
        if app["store_path"] and (app.get("deploy") or "file") == "file":
            stores[app["store_path"]] = app["layout"]
    for path, layout in extra.items():
        if Path(path).exists():
            stores.setdefault(path, layout)
    return stores


def _newest_crl_number(store: pki.ApplicationStore, ca_cert: x509.Certificate) -> int:
    numbers = [0]
    for kind in (pki.TRUSTED, pki.ISSUER):
        for path in store.ca_crl_files(ca_cert, kind):
            crl = pki.parse_crl(path.read_bytes())
            if crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
                numbers.append(crl_number_of(crl) or 0)
    return max(numbers)


def snapshot(home: Path, extra_stores: dict[str, str] | None = None) -> Snapshot:
    snap = Snapshot()
    for name in CA_FILES:
        if (home / name).exists():
            snap.ca_hashes[name] = _sha256(home / name)
    view = read_database(home)
    ca_cert = _ca_certificate(home)
    if view is not None:
        snap.db_crl_number = view.crl_number
        snap.actives = {c["app_uri"]: c["thumbprint"] for c in view.certificates if c["status"] == "active"}
        snap.revoked = {c["thumbprint"] for c in view.certificates if c["status"] == "revoked"}
    if ca_cert is not None:
        for path, layout in _stores(home, view, extra_stores or {}).items():
            snap.store_crl_numbers[path] = _newest_crl_number(pki.ApplicationStore(path, layout), ca_cert)
    return snap


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (InvalidSignature, ValueError, TypeError):  # another issuer, or another key type
        return False


def _check_own_pair(store: pki.ApplicationStore, where: str) -> tuple[list[str], str | None]:
    """Exactly one own certificate a stack would load, its key beside it (0600, matching), no stray key."""
    problems: list[str] = []
    loaded = store.own_certificates()
    certs = [item for item in loaded if item.value is not None]
    for item in loaded:
        if item.value is None:
            problems.append(f"own-pair: {where}: {item.path.name} is not a loadable certificate ({item.error})")
    if len(certs) != 1:
        names = ", ".join(item.path.name for item in certs) or "none"
        problems.append(f"own-pair: {where}: {len(certs)} own certificates a stack would load ({names})")
        return problems, None
    pair = store.own_pairs()[0]
    thumb = pair.thumbprint
    keys = sorted(p for p in store.own_private_dir.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if store.own_private_dir.is_dir() else []
    stray = [p.name for p in keys if p != pair.key_path]
    if stray:
        problems.append(f"own-pair: {where}: own/private holds key(s) of no own certificate: {', '.join(stray)}")
    if not pair.key_path.is_file():
        problems.append(f"own-pair: {where}: no key {pair.key_path.name} for own certificate {thumb}")
        return problems, thumb
    mode = stat.S_IMODE(pair.key_path.stat().st_mode)
    if mode & 0o077:
        problems.append(f"own-pair: {where}: key {pair.key_path.name} has mode {mode:o}, not 0600")
    try:
        key = serialization.load_pem_private_key(pair.key_path.read_bytes(), None)
        if key.public_key().public_numbers() != pair.certificate.public_key().public_numbers():  # type: ignore[union-attr]
            problems.append(f"own-pair: {where}: {pair.key_path.name} does not match own certificate {thumb}")
    except (ValueError, TypeError) as exc:
        problems.append(f"own-pair: {where}: key {pair.key_path.name} unreadable: {exc}")
    return problems, thumb


def _ca_signed_under_own(store: pki.ApplicationStore, ca_cert: x509.Certificate) -> list[tuple[Path, str]]:
    found = []
    for folder in (store.own_certs_dir, store.history_dir, store.staged_dir):
        for item in read_certificates(folder):
            # the CA's own certificate (the chain kept with a staged node-opcua pair) is not one certmgr issued
            if item.value is not None and not pki.is_ca(item.value) and _signed_by(item.value, ca_cert):
                found.append((item.path, pki.thumbprint(item.value)))
    return found


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def check(
    home: Path,
    before: Snapshot,
    *,
    phase: str,
    stderrs: Sequence[str] = (),
    extra_stores: dict[str, str] | None = None,
) -> list[str]:
    """Every violation of the invariants in this phase (an empty list: all hold)."""
    problems: list[str] = []
    settled = phase == SETTLED
    for index, text in enumerate(stderrs):
        for marker in ("Traceback", "unexpected"):
            if marker in text:
                line = next(line for line in text.splitlines() if marker in line)
                problems.append(f"stderr: command {index + 1}: {line.strip()[:200]}")

    # CA files: unchanged, the key encrypted and 0600
    for name, digest in before.ca_hashes.items():
        path = home / name
        if not path.exists():
            problems.append(f"ca-files: {name} is gone")
        elif _sha256(path) != digest:
            problems.append(f"ca-files: {name} changed")
    key_path = home / "ca" / "private" / "ca-key.pem"
    if key_path.exists():
        if b"ENCRYPTED" not in key_path.read_bytes().split(b"\n", 1)[0]:
            problems.append("ca-files: the CA key is not an ENCRYPTED PEM")
        if stat.S_IMODE(key_path.stat().st_mode) & 0o077:
            problems.append(f"ca-files: the CA key has mode {stat.S_IMODE(key_path.stat().st_mode):o}, not 0600")

    view = read_database(home)
    ca_cert = _ca_certificate(home)
    if view is not None:
        if view.integrity != "ok":
            problems.append(f"database: integrity_check: {view.integrity}")
        if len(view.authorities) > 1 or (settled and len(view.authorities) != 1):
            problems.append(f"authority: {len(view.authorities)} authority rows, not one")
        ca_der = (home / "ca" / "ca.der").read_bytes() if (home / "ca" / "ca.der").exists() else None
        for thumb, der in view.authorities:
            if ca_der is not None and der != ca_der:
                problems.append(f"ca-files: the database's CA {thumb} is not ca/ca.der")
        if view.crl_number < before.db_crl_number:
            problems.append(f"crl-backwards: database CRL number {view.crl_number} < {before.db_crl_number}")
    if settled:
        problems += _init_complete(home, view, ca_cert)
    if view is None or ca_cert is None:
        return problems

    known = view.known_thumbprints()
    pending = [c for c in view.certificates if c["status"] == "pending"]
    if settled:
        for cert in pending:
            problems.append(f"pending-left: {cert['app_uri']}: certificate {cert['thumbprint']} still pending")
        for app in view.applications:
            if app["renewal_claimed_by"]:
                problems.append(f"pending-left: {app['app_uri']}: renewal claim by {app['renewal_claimed_by']} left")
    # every revoked serial, failed ones included (revoked_at set: they are on the CRL too)
    revoked_serials = {int(c["serial_hex"], 16) for c in view.certificates if c.get("revoked_at")}
    apps_by_store = {a["store_path"]: a for a in view.applications if a["store_path"]}

    for path, layout in _stores(home, view, extra_stores or {}).items():
        store = pki.ApplicationStore(path, layout)
        where = _short(home, path)
        app = apps_by_store.get(path)
        if app is not None or store.own_certs_dir.is_dir():
            pair_problems, thumb = _check_own_pair(store, where)
            statuses = {c["thumbprint"]: c["status"] for c in view.certificates if app and c["application_id"] == app["id"]}
            if thumb is not None and statuses.get(thumb) == "revoked":
                # a revoked own certificate may have lost its key on purpose (keyCompromise destroys every copy)
                pair_problems = [p for p in pair_problems if "no key" not in p]
            first_issue = app is not None and not any(s in ("active", "superseded", "revoked") for s in statuses.values())
            if app is not None and not (first_issue and not settled):
                # a store whose first issue is still in progress (its intent pending) has no own pair yet
                problems += pair_problems
                problems += _check_db_store(app, thumb, view, where)
        for file, thumb in _ca_signed_under_own(store, ca_cert):
            if thumb not in known:
                problems.append(f"unknown-cert: {where}: {file.relative_to(store.root)} ({thumb}) is not in the database")
        if settled and _files_in(store.staged_dir):
            problems.append(f"staged-left: {where}: own/staged holds {', '.join(p.name for p in _files_in(store.staged_dir))}")
        newest = _newest_crl_number(store, ca_cert)
        if newest < before.store_crl_numbers.get(path, 0):
            problems.append(f"crl-backwards: {where}: newest CRL {newest} < {before.store_crl_numbers[path]} before")
        if app is None:
            continue
        for kind in (pki.TRUSTED, pki.ISSUER):
            files = store.ca_crl_files(ca_cert, kind)
            if settled and (len(files) > 1 or (kind == pki.TRUSTED and not files)):
                problems.append(f"crl-files: {where}: {len(files)} CRL files of the CA in {kind} ({', '.join(p.name for p in files)})")
        if settled and revoked_serials:
            problems += _check_revocations(store, ca_cert, revoked_serials, where)
    return problems


def _check_db_store(app: dict, store_thumb: str | None, view: DbView, where: str) -> list[str]:
    mine = [c for c in view.certificates if c["application_id"] == app["id"]]
    active = [c["thumbprint"] for c in mine if c["status"] == "active"]
    pending = {c["thumbprint"] for c in mine if c["status"] == "pending"}
    if len(active) > 1:
        return [f"db-store: {app['app_uri']}: {len(active)} active certificates"]
    if store_thumb is None:
        return []  # already an own-pair violation
    if active and active[0] != store_thumb and store_thumb not in pending:
        return [f"db-store: {app['app_uri']}: database active {active[0][:12]}, store {where} holds {store_thumb[:12]}, "
                "no pending row marks the change"]
    if not active and store_thumb not in {c["thumbprint"] for c in mine}:
        return [f"db-store: {app['app_uri']}: no active certificate and the store's {store_thumb[:12]} is not the application's"]
    return []


def _check_revocations(store, ca_cert, serials: set[int], where: str) -> list[str]:
    # no certificate of a kill trial has expired, so every revoked serial must still be listed
    files = store.ca_crl_files(ca_cert, pki.TRUSTED)
    newest = None
    for path in files:
        crl = pki.parse_crl(path.read_bytes())
        if newest is None or (crl_number_of(crl) or 0) > (crl_number_of(newest) or 0):
            newest = crl
    on_crl = {entry.serial_number for entry in newest} if newest is not None else set()
    missing = sorted(serials - on_crl)
    return [f"crl-missing: {where}: revoked serial(s) {', '.join(format(s, 'x')[:12] for s in missing)} not on its CRL"] if missing else []


def _init_complete(home: Path, view: DbView | None, ca_cert: x509.Certificate | None) -> list[str]:
    """A working home: settings, CA files, an authority, a CRL, an active verifier identity."""
    missing = []
    if not (home / "certmgr.toml").exists():
        missing.append("no certmgr.toml")
    if ca_cert is None:
        missing.append("no ca/ca.der")
    if not (home / "ca" / "private" / "ca-key.pem").exists():
        missing.append("no CA key")
    if view is None:
        missing.append("no database")
    else:
        if not view.authorities:
            missing.append("no authority row")
        if view.crl_number == 0:
            missing.append("no CRL in the database")
        if not any(a["internal"] and c["status"] == "active" for a in view.applications for c in view.certificates
                   if c["application_id"] == a["id"]):
            missing.append("no active verification identity")
    return [f"init-incomplete: {', '.join(missing)}"] if missing else []


def _short(home: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(home.parent))
    except ValueError:
        return path
