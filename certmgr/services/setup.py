"""``certmgr init``: the home, the settings, the database schema, the root CA, the first CRL and the
verification identity certmgr uses to prove certificates on real secure channels."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import db
import pki
from db import queries
from pki import CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, atomic_write, ensure_dir

from ..ca_key import Custody, custody, open_ca_signer
from ..config import render_settings
from ..constants import DEFAULT_CRL_DAYS
from ..context import AppContext
from ..errors import InputError, OperationFailed
from ..home import HOME_MODE
from .crls import sign_crl
from .issuing import IssueRequest, issue_application

log = logging.getLogger(__name__)


ISSUING_MARK = b"issuing-ca: signed by an offline root\n"  # in the init marker: a resume must sign the same way


@dataclass
class InitOptions:
    ca_name: str | None = None
    organization: str | None = None
    ca_key_size: int | None = None
    ca_days: int | None = None
    crl_days: int | None = None
    root_dir: Path | None = None  # --issuing-ca --root-dir: the CA is an issuing CA signed by this offline root
    root_passphrase: bytes | None = None
    csr_out: Path | None = None  # --issuing-ca --csr-out: key + CSR now, `certmgr ca import-signed` completes the home
    key_uri: str | None = None  # --ca-key pkcs11:...: the CA key on a PKCS#11 token (with pkcs11_module)
    pkcs11_module: str | None = None


def init_custody(ctx: AppContext, options: InitOptions) -> Custody:
    """Where this init keeps the CA key: the options' token, or the one an interrupted init recorded, or the key
    file. Decided (and the settings updated) before any secret is read, so init asks for the right one."""
    ca_settings = ctx.settings.ca
    if options.key_uri is None and options.pkcs11_module is not None:
        raise InputError("--pkcs11-module is given without a token key",
                         "add --ca-key 'pkcs11:token=NAME;object=LABEL', or drop --pkcs11-module")
    if options.key_uri is not None:
        from ca.pkcs11 import parse_pkcs11_uri

        try:  # the URI first: a PIN written into it is the worse mistake
            uri = str(parse_pkcs11_uri(options.key_uri))
        except ca.TokenError as exc:
            raise InputError(f"--ca-key: {exc}") from None
        if options.pkcs11_module is None:
            raise InputError("--ca-key pkcs11:... needs the token's module",
                             "pass --pkcs11-module PATH, e.g. /usr/lib/softhsm/libsofthsm2.so")
        module = str(Path(options.pkcs11_module).expanduser().absolute())
        recorded = (ca_settings.key_uri, ca_settings.pkcs11_module)
        if ctx.home.init_marker.exists() and ctx.home.config_path.exists() and recorded != (uri, module):
            raise InputError(f"the interrupted init of {ctx.home.root} keeps its CA key at {ca_settings.key_uri or ctx.home.ca_key_path}",
                             "run `certmgr init` again with the same --ca-key and --pkcs11-module (or none for a key file)")
        ca_settings.key_uri, ca_settings.pkcs11_module = uri, module
    return custody(ctx.home, ctx.settings)


def default_verifier_uri() -> str:
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname()) or "localhost"
    return f"urn:certmgr:verifier:{host}"


def _validated_settings(ctx: AppContext, options: InitOptions):
    settings = ctx.settings
    ca_settings = settings.ca
    ca_settings.name = options.ca_name or ca_settings.name
    ca_settings.organization = options.organization or ca_settings.organization
    ca_settings.key_size = options.ca_key_size or ca_settings.key_size
    ca_settings.days = options.ca_days if options.ca_days is not None else ca_settings.days
    ca_settings.crl_days = options.crl_days if options.crl_days is not None else (ca_settings.crl_days or DEFAULT_CRL_DAYS)
    if options.organization and not settings.defaults.organization:
        settings.defaults.organization = options.organization
    if ctx.db_url_option:
        settings.database_url = _url_without_password(ctx.db_url_option)
    try:
        subject = ca.SubjectFields(common_name=ca_settings.name, organization=ca_settings.organization)
        ca.check_key_size(ca_settings.key_size)
    except ca.ProfileError as exc:
        raise InputError(str(exc)) from None
    if ca_settings.days <= 0:
        raise InputError(f"--ca-days {ca_settings.days} is not allowed", "give a number of days greater than 0")
    if ca_settings.crl_days <= 0:
        raise InputError(f"--crl-days {ca_settings.crl_days} is not allowed", "give a number of days greater than 0")
    return settings, subject


def _url_without_password(url: str) -> str:
    """The home remembers its database, but never a password (libpq: PGPASSWORD or ~/.pgpass)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password:
        log.warning("the database password is not stored in certmgr.toml; give it by PGPASSWORD or ~/.pgpass")
        parsed = parsed.set(password=None)
    return parsed.render_as_string(hide_password=False)


def initialise(ctx: AppContext, options: InitOptions, passphrase: bytes, *, key=None) -> dict:
    """Create the home, or finish one whose init was killed half-way (its marker file says so). ``passphrase`` is
    the secret of the key's custody (``init_custody``): the key file's passphrase, or the token's PIN.

    A lock on the home, taken before anything else is written, makes a second concurrent `init` exit 2 and
    leave the winner's home alone. The marker (``init.incomplete``) is written before the first CA file and
    removed last: while it exists, other commands refuse the home and `init` resumes it step by step.
    """
    home = ctx.home
    if home.root.exists() and not home.root.is_dir():
        raise InputError(f"{home.root} is a file", "give a folder path with --home")
    if not home.init_marker.exists() and (home.ca_cert_path.exists() or home.ca_key_path.exists()):
        raise InputError(
            f"a CA already exists in {home.root} ({home.ca_cert_path.name})",
            "certmgr never overwrites a CA; use another --home, or move the old one away first",
        )
    where = init_custody(ctx, options)
    settings, subject = _validated_settings(ctx, options)
    if not passphrase:
        raise InputError("the CA passphrase is empty", "use a non-empty passphrase")
    if options.root_dir is not None and options.root_passphrase == passphrase and not where.on_token:
        raise InputError("the root passphrase is the CA passphrase", "give the offline root a passphrase of its own")
    if where.on_token:
        # the module, the token, the PIN and the key (found by its label, or generated on the token) before the
        # home's first byte: a wrong PIN or a missing token leaves nothing behind
        key = open_ca_signer(where, passphrase, create_bits=settings.ca.key_size,
                             wrong_secret_hint="give the token's user PIN (CERTMGR_PKCS11_PIN or --pin-file FILE)")
    try:
        ensure_dir(home.root, HOME_MODE)
    except (OSError, pki.StoreError) as exc:
        raise OperationFailed(f"cannot create certmgr home {home.root}: {exc}", "check the path's permissions") from None
    with _home_locked(home.root):
        return _initialise_locked(ctx, settings, subject, passphrase, key, options)


@contextlib.contextmanager
def _home_locked(root: Path):
    """Hold an exclusive lock on the home folder itself (so a refused init or join leaves no file behind); a
    second concurrent `init` on the same home exits 2."""
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another `certmgr init` is creating {root} right now",
                             "wait for it to finish, then use that home (or give another --home)") from None
        yield
    finally:
        os.close(fd)


def _initialise_locked(ctx: AppContext, settings, subject, passphrase: bytes, key, options: InitOptions) -> dict:
    home = ctx.home
    resuming = home.init_marker.exists()
    if not resuming and (home.ca_cert_path.exists() or home.ca_key_path.exists()):  # a concurrent init won meanwhile
        raise InputError(f"a CA already exists in {home.root} ({home.ca_cert_path.name})", "use that home, or another --home")
    try:
        if not custody(home, settings).on_token:  # a token home has no CA key file, nor a folder for one
            ensure_dir(home.ca_key_path.parent, PRIVATE_DIR_MODE)
        ensure_dir(home.ca_cert_path.parent, 0o755)
        ensure_dir(home.log_dir, HOME_MODE)
    except (OSError, pki.StoreError) as exc:
        raise OperationFailed(f"cannot create certmgr home {home.root}: {exc}", "check the path's permissions") from None
    database = ctx.database(check_schema=False)
    if db.current_revision(database.engine) is None:
        db.upgrade(database.engine)
    with database.read() as session:
        authority = queries.authority(session)
    if authority is not None and not resuming:
        raise InputError(
            f"database {database.engine.url.render_as_string(hide_password=True)} already holds a CA",
            "use an empty database, or point --home at the existing CA's home",
        )
    if resuming:
        log.warning("resuming the interrupted init of %s", home.root)
    else:
        atomic_write(home.init_marker, b"certmgr init in progress; run `certmgr init` again to finish it\n"
                     + (ISSUING_MARK if options.root_dir is not None else b""), 0o600)
    if resuming and options.root_dir is None and not home.ca_cert_path.exists() \
            and ISSUING_MARK in home.init_marker.read_bytes():
        raise InputError("this init was started with --issuing-ca --root-dir",
                         "run it again with the same --issuing-ca --root-dir DIR (and the root passphrase)")
    if not home.config_path.exists():
        # only now: a refused init must not leave a certmgr.toml pointing at the database it refused
        atomic_write(home.config_path, render_settings(settings).encode(), 0o600)
    now = ctx.now()
    if not home.ca_cert_path.exists() and (options.csr_out is not None or pending_csr_path(home).exists()):
        return _pending_csr(ctx, settings, subject, passphrase, key, options)
    ca_cert, ca_key = _ca_material(ctx, settings, subject, passphrase, key, now, options)
    thumb = pki.thumbprint(ca_cert)
    if authority is not None and authority.thumbprint != thumb:
        raise InputError(f"the database holds another CA ({authority.thumbprint}) than {home.ca_cert_path}",
                         "give the database the interrupted init used, or an empty one")
    if authority is None:
        with database.write() as session:
            session.add(db.Authority(
                name=subject.common_name, subject=ca_cert.subject.rfc4514_string(), thumbprint=thumb,
                certificate_der=ca_cert.public_bytes(serialization.Encoding.DER), key_path=custody(home, settings).describe(),
                next_crl_number=1, crl_days=settings.ca.crl_days, not_after=ca_cert.not_valid_after_utc, created_at=now,
            ))
            queries.add_audit(session, at=now, actor=ctx.actor, action="ca.create", target=subject.common_name, thumbprint=thumb)
    issuer = ctx.adopt_issuer(ca.Issuer(ca_cert, ca_key))
    from .recovery import recover

    revoked = recover(ctx)  # a verifier issue the kill cut is undone (revoked): the CRL below must list it
    with database.read() as session:
        crl = queries.latest_crl(session, queries.authority(session).id)
    if revoked:
        crl = _publish_new_crl(ctx, issuer, now)
    elif crl is None:
        crl = sign_crl(ctx, issuer, now)
    verifier = _verifier(ctx)
    os.chmod(home.root, HOME_MODE)
    home.init_marker.unlink(missing_ok=True)
    return {
        "home": str(home.root), "ca_subject": ca_cert.subject.rfc4514_string(), "ca_thumbprint": thumb,
        "ca_not_after": ca_cert.not_valid_after_utc.isoformat(), "ca_certificate": str(home.ca_cert_path),
        "crl_number": crl.number, "database": database.engine.url.render_as_string(hide_password=True),
        "verifier_uri": verifier[0], "verifier_thumbprint": verifier[1], "resumed": resuming,
    }


def _ca_key(home, settings, secret: bytes, key):
    """The CA key: on the token (``key``, opened before the first write), or the key file an interrupted init
    already wrote, or a new one written first (0600 from its first byte, encrypted: a crash leaves no usable CA
    rather than a plain key)."""
    where = custody(home, settings)
    if where.on_token and key is not None:
        return key
    return open_ca_signer(where, secret, create_bits=settings.ca.key_size, key=key,
                          wrong_secret_hint="give the passphrase (or PIN) the interrupted init was given")


def _ca_material(ctx: AppContext, settings, subject, passphrase: bytes, key, now, options: InitOptions):
    """(CA certificate, CA key): those an interrupted init already wrote, or new ones. Key first, 0600 from its
    first byte, encrypted (or on the token): a crash leaves no usable CA rather than a plain key."""
    home = ctx.home
    ca_key = _ca_key(home, settings, passphrase, key)
    ca_cert = None
    if home.ca_cert_path.exists():
        try:
            ca_cert = pki.parse_certificate(home.ca_cert_path.read_bytes())
        except ValueError:
            ca_cert = None  # a torn write cannot happen (atomic), but a foreign file is replaced, never trusted
        if ca_cert is not None and not ca.key_matches_certificate(ca_key, ca_cert.public_key()):
            raise InputError(f"{home.ca_cert_path} does not belong to the CA key of the interrupted init",
                             "move the home away and run `certmgr init` in a new one")
    if ca_cert is None:
        if options.root_dir is not None:
            if options.root_passphrase == passphrase and not custody(home, settings).on_token:
                raise InputError("the root passphrase is the CA passphrase", "give the offline root a passphrase of its own")
            ca_cert = _signed_by_offline_root(ctx, ca_key, subject, now, options)
        else:
            ca_cert = ca.build_root_ca(ca_key, subject, now=now, days=settings.ca.days)
        atomic_write(home.ca_cert_path, ca_cert.public_bytes(serialization.Encoding.DER), CERT_MODE)
    pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    pem_path = home.ca_cert_path.with_suffix(".pem")
    if not pem_path.exists() or pem_path.read_bytes() != pem:
        atomic_write(pem_path, pem, CERT_MODE)
    return ca_cert, ca_key


def _publish_new_crl(ctx: AppContext, issuer, now):
    """After recovery revoked a cut issue: a CRL listing it, in every store (the revoked certificate may be in one)."""
    from .publishing import publish_everywhere

    crl = sign_crl(ctx, issuer, now)
    publish_everywhere(ctx, crl, issuer.certificate, now)
    return crl


def pending_csr_path(home) -> Path:
    """The issuing CA's CSR while the home waits for its certificate (`certmgr ca import-signed`)."""
    return home.ca_cert_path.parent / "issuing-ca.csr"


def change_passphrase(ctx: AppContext, old: bytes, new: bytes) -> dict:
    """Re-encrypt the CA key with ``new`` and the current KDF (ca.DEFAULT_KEY_ENCRYPTION): the new file is written
    0600 beside the old one and renamed over it, so a crash leaves one complete key file under one passphrase."""
    ctx.require_initialised()
    refuse_on_token(ctx, "`certmgr ca passphrase`")
    if not new:
        raise InputError("the new CA passphrase is empty", "use a non-empty passphrase")
    if new == old:
        raise InputError("the new CA passphrase is the old one", "choose another passphrase")
    path = ctx.home.ca_key_path
    cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    key = open_ca_signer(custody(ctx.home), old, certificate=cert,
                         wrong_secret_hint="give the current passphrase (CERTMGR_CA_PASSPHRASE or --passphrase-file)")
    atomic_write(path, ca.encrypted_private_key_pem(key, new), KEY_MODE)
    now = ctx.now()
    with ctx.database().write() as session:
        queries.add_audit(session, at=now, actor=ctx.actor, action="ca.passphrase", target=str(path),
                          kdf=ca.DEFAULT_KEY_ENCRYPTION.describe())
    return {"key": str(path), "key_encryption": ca.DEFAULT_KEY_ENCRYPTION.describe()}


def refuse_on_token(ctx: AppContext, what: str) -> None:
    """Commands about a CA key file make no sense for a key on a token: say where the key is instead."""
    where = custody(ctx.home)
    if where.on_token:
        raise InputError(f"the CA key is on a PKCS#11 token ({where.uri}); {what} applies to a CA key file only",
                         "the token's PIN is changed with the token's own tools (e.g. softhsm2-util / pkcs11-tool --change-pin)")


def _pending_csr(ctx: AppContext, settings, subject, passphrase: bytes, key, options: InitOptions) -> dict:
    """The CA key (0600, encrypted, first) and a CSR for it, in the home and at --csr-out; the init marker stays
    until `certmgr ca import-signed` brings the certificate. Run again, it rewrites the same CSR."""
    home = ctx.home
    ca_key = _ca_key(home, settings, passphrase, key)
    path = pending_csr_path(home)
    if path.exists():
        csr_pem = path.read_bytes()
    else:
        csr_pem = ca.build_ca_csr(ca_key, subject).public_bytes(serialization.Encoding.PEM)
        atomic_write(path, csr_pem, CERT_MODE)
    if options.csr_out is not None:
        atomic_write(Path(options.csr_out), csr_pem, CERT_MODE)
    return {"home": str(home.root), "pending": True, "csr": str(options.csr_out or path),
            "ca_subject": subject.to_name().rfc4514_string(),
            "next": "have the root sign the CSR, then run `certmgr ca import-signed CERT --root ROOT.der --root-crl ROOT.crl`"}


def import_signed(ctx: AppContext, cert_path: Path, root_path: Path, crl_path: Path, passphrase: bytes) -> dict:
    """Complete a home left waiting by `init --issuing-ca --csr-out`: every file is checked before one is written."""
    from .ca_chain import check_signed_chain, write_chain_files

    home = ctx.home
    csr_path = pending_csr_path(home)
    if home.ca_cert_path.exists() and not home.init_marker.exists():
        raise InputError(f"{home.root} already has its CA certificate", "import-signed completes only a home made with `init --issuing-ca --csr-out`")
    if not csr_path.exists():
        raise InputError(f"{home.root} is not waiting for a signed CA certificate",
                         "start with `certmgr init --issuing-ca --csr-out FILE`")
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    cert = _read_x509(cert_path, pki.parse_certificate, "certificate")
    root = _read_x509(root_path, pki.parse_certificate, "root certificate")
    crl = _read_x509(crl_path, pki.parse_crl, "root CRL")
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise InputError(f"{cert_path} does not match the CA key of this home", "give the certificate signed for this home's CSR")
    check_signed_chain(cert, root, crl, now=ctx.now())
    # the passphrase (or PIN) and the key's match before anything is written
    key = open_ca_signer(custody(home), passphrase,
                         wrong_secret_hint="give the passphrase (or PIN) given to `certmgr init --issuing-ca --csr-out`")
    from ..ca_key import close_signer

    close_signer(key)
    write_chain_files(home, root, crl.public_bytes(serialization.Encoding.DER))
    atomic_write(home.ca_cert_path, cert.public_bytes(serialization.Encoding.DER), CERT_MODE)
    result = initialise(ctx, InitOptions(), passphrase)
    csr_path.unlink(missing_ok=True)
    return result


def _read_x509(path: Path, parser, what: str):
    try:
        return parser(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check the path") from None
    except ValueError:
        raise InputError(f"{path} is not a {what} (PEM or DER)", f"give the {what} file") from None


def _signed_by_offline_root(ctx: AppContext, ca_key, subject, now, options: InitOptions) -> x509.Certificate:
    """The issuing CA signed by the offline root in ``options.root_dir``; the root and its CRL are written to the
    home before the CA certificate, so a resumed init that finds ca.der finds the chain too. A kill between the
    root's state write and ca.der leaves one unused issuing CA on the root's list (never a reused serial)."""
    from .ca_chain import write_chain_files
    from .ca_root import issue_from_root

    if options.root_passphrase is None:
        raise InputError("--root-dir needs the root's passphrase", "set CERTMGR_ROOT_PASSPHRASE or pass --root-passphrase-file")
    signed = issue_from_root(options.root_dir, options.root_passphrase, (ca_key.public_key(), subject), now=now,
                             days=ctx.settings.ca.days)
    write_chain_files(ctx.home, signed.root_certificate, signed.root_crl.public_bytes(serialization.Encoding.DER))
    return signed.certificate


def _verifier(ctx: AppContext) -> tuple[str, str]:
    """certmgr's verification identity: the one an interrupted init completed, or a new one (after the recovery
    of a verifier issue that was cut)."""
    from .verifier import verifier_application

    with ctx.database().read() as session:
        existing = verifier_application(ctx, session)
        active = queries.active_certificate(session, existing.id) if existing is not None else None
        if active is not None:
            return existing.app_uri, active.thumbprint
    outcome = issue_application(ctx, IssueRequest(
        app_uri=default_verifier_uri(), store=ctx.home.verifier_store, layout="ua-net", name="certmgr verifier",
        dns_names=("localhost",), ip_addresses=("127.0.0.1",), role="both", internal=True,
    ))
    return outcome.app_uri, outcome.thumbprint


def ca_summary(ctx: AppContext) -> dict:
    ctx.require_initialised()
    cert = pki.parse_certificate(Path(ctx.home.ca_cert_path).read_bytes())
    with ctx.database().read() as session:
        authority = queries.authority(session)
        crl = queries.latest_crl(session, authority.id)
    return {
        "subject": cert.subject.rfc4514_string(),
        "thumbprint": pki.thumbprint(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key_size": cert.public_key().key_size,
        "certificate_file": str(ctx.home.ca_cert_path),
        "key_file": None if custody(ctx.home).on_token else str(ctx.home.ca_key_path),
        "key": custody(ctx.home).describe(),
        "key_on_token": custody(ctx.home).on_token,
        "crl_number": crl.number if crl else None,
        "crl_this_update": crl.this_update.isoformat() if crl else None,
        "crl_next_update": crl.next_update.isoformat() if crl else None,
        "crl_revoked": crl.revoked_count if crl else None,
        "findings": [str(f) for f in ca.check_ca_certificate(cert, at=ctx.now())],
    }
