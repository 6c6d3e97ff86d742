"""``certmgr ca rollover --emergency --yes``: the CA is compromised, so the fleet moves to a new generation at once.

The phases of services/rollover.py run back to back without the overlap wait: start (or carry on a rollover in
progress), switch, every application re-keyed and re-issued through the renewal pipeline (with proofs), every
certificate of the old CA revoked (cACompromise, on a final CRL kept in its folder), the old CA removed from every
store certmgr writes and retired. The report names every place certmgr cannot reach, with its fix. Run again after
a kill, it finishes the same rollover.
"""

from __future__ import annotations

from sqlalchemy import select

import db
import pki

from ..context import AppContext
from ..passphrase import read_passphrase
from . import lifecycle
from . import rollover_stores as stores
from .crls import sign_crl
from .rollover import (FINISHED, NONE, STARTED, audit, issuer_of, read_generations, reissue, require_home, retire, start,
                       status, switch_signing)

COMPROMISE_REASON = "cACompromise"


def emergency(ctx: AppContext) -> dict:
    """The CA is compromised: a new generation, every application re-keyed under it now (no overlap wait), the
    old CA out of every store certmgr writes, its certificates revoked, and the places certmgr cannot reach."""
    require_home(ctx)
    passphrase = read_passphrase(ctx.passphrase_file)
    gens = read_generations(ctx)
    if gens.phase in (NONE, FINISHED, STARTED):
        if gens.phase != STARTED:
            start(ctx, passphrase)
        gens = read_generations(ctx)
        switch_signing(ctx, gens)
    elif stores.switch_marker(ctx.home).exists():
        switch_signing(ctx, gens)
    gens = read_generations(ctx)
    results = reissue(ctx)
    failed = [r for r in results if r.outcome != "renewed"]
    revoked = _revoke_generation(ctx, gens.previous, passphrase)
    removals = retire(ctx, gens.previous)
    report = status(ctx, probe=False)
    report["renewals"] = [r.as_dict() for r in results]
    report["revoked"] = revoked
    report["unreached"] = _emergency_unreached(ctx, gens.previous, failed, removals)
    audit(ctx, "ca.rollover.emergency", old_ca=gens.previous.thumbprint, new_ca=gens.signing.thumbprint,
           renewed=len(results) - len(failed), failed=[r.app_uri for r in failed], revoked=revoked)
    return report


def _revoke_generation(ctx: AppContext, previous: db.Authority, passphrase: bytes) -> int:
    """Every unexpired certificate of the compromised CA revoked (cACompromise), and its final CRL listing them
    kept in the generation folder for places that cannot drop the CA at once. A re-run after the key was destroyed
    (the retirement that follows) finds final.crl and has nothing left to do."""
    files = stores.generation_files(ctx.home, previous.generation)
    if (files.root / "final.crl").exists() and not files.ca_key_path.exists():
        return 0
    old_issuer = issuer_of(ctx, previous, passphrase)
    now = ctx.now()
    with ctx.database().write() as session:
        rows = list(session.scalars(select(db.Certificate).where(
            db.Certificate.authority_id == previous.id, db.Certificate.revoked_at.is_(None), db.Certificate.not_after > now,
            db.Certificate.status.in_((db.CertStatus.ACTIVE, db.CertStatus.SUPERSEDED)))))
        for row in rows:
            lifecycle.revoke(session, row, reason=COMPROMISE_REASON, now=now, actor=ctx.actor)
    crl_row = sign_crl(ctx, old_issuer, now, authority_id=previous.id)
    pki.atomic_write(files.root / "final.crl", crl_row.der, pki.CERT_MODE)
    return len(rows)


def _emergency_unreached(ctx: AppContext, previous: db.Authority, failed: list, removals: list) -> list[str]:
    from .peers import BUNDLE

    thumb = previous.thumbprint
    lines = [f"application {r.app_uri}: re-key failed at {r.stage}: {r.reason} (fix it, then "
             f"`certmgr renew --app-uri {r.app_uri} --force`)" for r in failed]
    lines += [f"store {r.store}: {r.error} (remove the CA {thumb} from it by hand)" for r in removals if r.error]
    with ctx.database().read() as session:
        bundles = session.execute(select(db.Peer.store_path, db.Peer.name).where(db.Peer.layout == BUNDLE)).all()
        peers = session.execute(select(db.Peer.endpoint, db.Peer.name).where(db.Peer.endpoint.is_not(None),
                                                                             db.Peer.store_path.is_(None))).all()
        pushed = session.execute(select(db.Application.app_uri, db.Application.endpoint).where(db.Application.deploy == "push")).all()
    lines += [f"exported bundle {folder} for {name}: delete the compromised CA {thumb} from it and from the server it went to; "
              "add the new CA" for folder, name in bundles]
    lines += [f"peer {name} ({endpoint}): remove the compromised CA {thumb} from its trust list; add the new CA "
              f"(ca/ca.der) and its CRL" for endpoint, name in peers]
    lines += [f"push server {endpoint} ({uri}): its TrustList still holds the compromised CA {thumb} (removal over the "
              "network is not built): remove it in the server's PKI folder" for uri, endpoint in pushed]
    return lines


