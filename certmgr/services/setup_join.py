"""``certmgr init --join``: another node of an existing certmgr, with the same database and the same CA (the
shared key file or the same token key), and its own verification identity. Resumable like init (services/setup.py
shares its lock, marker and first-CRL step)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import ca
import pki
from db import queries
from pki import atomic_write, ensure_dir

from ..ca_key import Custody, custody, open_ca_signer
from ..config import render_settings
from ..context import AppContext
from ..errors import InputError
from ..home import HOME_MODE
from .issuing import IssueRequest, issue_application
from .setup import _home_locked, _publish_new_crl, _url_without_password

log = logging.getLogger(__name__)


def join(ctx: AppContext, *, node: str, ca_cert: Path, ca_key: str, passphrase: bytes,
         pkcs11_module: str | None = None) -> dict:
    """Make this home another node of an existing certmgr: same database, same CA (the shared encrypted key file,
    or the same key on the same PKCS#11 token: ``ca_key`` a pkcs11: URI), its own verifier. ``passphrase`` is
    the secret of that custody (the key file's passphrase or the token's PIN)."""
    home = ctx.home
    if home.config_path.exists() and not home.init_marker.exists():
        raise InputError(f"{home.root} already holds a certmgr home", "give --home an empty or new folder")
    if not ctx.db_url_option:
        raise InputError("--join needs the shared database", "pass --db postgresql+psycopg://... (or CERTMGR_DB)")
    ca_cert = Path(ca_cert).expanduser().absolute()
    try:
        cert = pki.parse_certificate(ca_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the CA certificate {ca_cert}: {exc}", "give the CA's .der or .pem file") from None
    database = ctx.database()
    with database.read() as session:
        authority = queries.authority(session)
    if authority is None or authority.thumbprint != pki.thumbprint(cert):
        raise InputError(f"the database's CA is not {ca_cert}", "give the CA certificate the first node created")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,62}", node):
        raise InputError(f"node name {node!r} is not a plain name", "use letters, digits, '.' and '-'")
    settings = ctx.settings
    settings.ca.cert_file = str(ca_cert)
    where = join_custody(ctx, ca_key, pkcs11_module)
    # the secret and the key before anything is written: a failed join leaves no half home
    key = open_ca_signer(where, passphrase, certificate=cert,
                         wrong_secret_hint="give the passphrase (or token PIN) used at the first node's `certmgr init`")
    settings.database_url = _url_without_password(ctx.db_url_option)
    ensure_dir(home.root, HOME_MODE)
    ensure_dir(home.log_dir, HOME_MODE)
    settings.daemon.node = node
    ctx.adopt_issuer(ca.Issuer(cert, key))
    with _home_locked(home.root):
        return _join_locked(ctx, settings, node, passphrase)


def join_custody(ctx: AppContext, ca_key: str, pkcs11_module: str | None) -> Custody:
    """The joining node signs with what the first node signs with: its key file (given by path), or its token
    key (the same pkcs11: URI, with this host's path of the token's module). Recorded in the settings."""
    from ca.pkcs11 import is_pkcs11_uri, parse_pkcs11_uri

    settings = ctx.settings
    if is_pkcs11_uri(str(ca_key)):
        try:
            settings.ca.key_uri = str(parse_pkcs11_uri(str(ca_key)))
        except ca.TokenError as exc:
            raise InputError(f"--ca-key: {exc}") from None
        if pkcs11_module is None:
            raise InputError("--ca-key pkcs11:... needs the token's module", "pass --pkcs11-module PATH on this node")
        settings.ca.pkcs11_module = str(Path(pkcs11_module).expanduser().absolute())
    else:
        if pkcs11_module is not None:
            raise InputError("--pkcs11-module is given but --ca-key is a key file",
                             "give --ca-key 'pkcs11:token=NAME;object=LABEL' for a token key, or drop --pkcs11-module")
        path = Path(ca_key).expanduser().absolute()
        if not path.is_file():
            raise InputError(f"cannot read the CA key {path}: no such file", "give the shared encrypted CA key file")
        settings.ca.key_file = str(path)
    return custody(ctx.home, settings)


def _join_locked(ctx: AppContext, settings, node: str, passphrase: bytes) -> dict:
    """The writing half of a join, resumable like init: the marker goes first and is removed last, so a join
    killed at any point is finished by the next `init --join` (same or another node name) and refused by every
    other command meanwhile."""
    home = ctx.home
    resuming = home.init_marker.exists()
    if home.config_path.exists() and not resuming:  # a concurrent join won meanwhile
        raise InputError(f"{home.root} already holds a certmgr home", "give --home an empty or new folder")
    if resuming:
        log.warning("resuming the interrupted join of %s", home.root)
    else:
        atomic_write(home.init_marker, b"certmgr init --join in progress; run it again to finish it\n", 0o600)
    atomic_write(home.config_path, render_settings(settings).encode(), 0o600)
    issuer = ctx.issuer(passphrase=passphrase)  # opened and matched by join(), before the first write
    from .recovery import recover

    if recover(ctx):  # a verifier issue a kill cut is undone (revoked): every store's CRL must list it
        _publish_new_crl(ctx, issuer, ctx.now())
    database = ctx.database()
    uri = f"urn:certmgr:verifier:{node}"
    with database.read() as session:
        from .verifier import verifier_application

        existing = verifier_application(ctx, session)
        active = queries.active_certificate(session, existing.id) if existing is not None else None
        if existing is not None and existing.app_uri != uri:
            raise InputError(f"the interrupted join of {home.root} was for node {existing.app_uri.rsplit(':', 1)[-1]}",
                             "run `certmgr init --join` again with that --node")
        done = (existing.app_uri, active.thumbprint) if active is not None else None
    if done is None:
        outcome = issue_application(
            ctx,
            IssueRequest(app_uri=uri, store=home.verifier_store, layout="ua-net",
                         name=f"certmgr verifier {node}"[:64], dns_names=("localhost",), ip_addresses=("127.0.0.1",),
                         role="both", internal=True, force=existing is not None),
        )
        done = (outcome.app_uri, outcome.thumbprint)
    with database.write() as session:
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="node.join", target=node, home=str(home.root))
    home.init_marker.unlink(missing_ok=True)
    return {"home": str(home.root), "node": node, "ca_thumbprint": pki.thumbprint(issuer.certificate),
            "verifier_uri": done[0], "verifier_thumbprint": done[1], "resumed": resuming}
