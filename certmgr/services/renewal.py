"""``certmgr renew``: renew due certificates, prove each on a real secure channel, switch or roll back.

Per application: new key (batch keys in parallel) -> certificate from the application record -> staged
beside the current pair and recorded ``pending`` -> loopback proof (unless --no-verify) -> atomic switch,
old ``superseded`` -> deploy hook -> live proof on the endpoint. Any failure leaves or puts back the old
pair, removes the staged one, marks the new certificate ``failed`` and revokes it (reason superseded).
Each application is handled on its own; one failure never stops the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..locks import exclusive
from .crls import sign_crl
from .hooks import DEFAULT_HOOK_TIMEOUT, run_deploy_hook
from .issuing import certificate_record, serial_hex
from .keygen import generate_keys
from .publishing import publish_everywhere
from . import windows
from .renewal_plan import Candidate, claim, claim_token, release, select_candidates, sweep_stale_claims
from .verifier import verifier_store, verifier_uri

log = logging.getLogger(__name__)

RENEWED, SKIPPED, FAILED, WOULD_RENEW = "renewed", "skipped", "failed", "would-renew"


@dataclass
class RenewOptions:
    app_uris: tuple[str, ...] = ()
    all_due: bool = False
    force: bool = False
    verify: bool = True
    dry_run: bool = False
    verify_timeout: float | None = None
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT


@dataclass
class RenewalResult:
    app_uri: str
    outcome: str
    reason: str
    old_thumbprint: str | None = None
    new_thumbprint: str | None = None
    not_after: datetime | None = None
    stage: str | None = None  # where a failure happened: keygen, issue, stage, verify, switch, hook, live
    channels: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "app_uri": self.app_uri,
            "outcome": self.outcome,
            "reason": self.reason,
            "old_thumbprint": self.old_thumbprint,
            "new_thumbprint": self.new_thumbprint,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "failed_stage": self.stage,
            "channels": self.channels,
        }


@dataclass
class _Work:
    """One claimed application on its way through the pipeline."""

    candidate: Candidate
    result: RenewalResult
    key: object = None
    cert: x509.Certificate | None = None
    cert_id: int | None = None
    store: pki.ApplicationStore | None = None
    previous: str | None = None  # thumbprint of the pair the store held before the switch
    switched: bool = False
    done: bool = False  # finished: renewed, or failed and cleaned up (staged files gone, certificate revoked)
    token: str = ""  # the claim this run holds on the application
    failure_audited: bool = False  # its renewal.fail audit event is written (by _mark_failed, or by push)

    @property
    def failed(self) -> bool:
        return self.result.outcome == FAILED

    def fail(self, stage: str, reason: str) -> None:
        self.result.outcome, self.result.stage, self.result.reason = FAILED, stage, reason
        log.warning("renewal of %s failed at %s: %s", self.candidate.app_uri, stage, reason)


def renew(
    ctx: AppContext,
    options: RenewOptions,
    *,
    at: datetime | None = None,
    progress=None,
    timings: dict[str, float] | None = None,
) -> list[RenewalResult]:
    """Renew what ``options`` selects; returns one result per selected application.

    ``progress``, if given, gets ``start(total)`` once the batch is claimed and ``advance(app_uri)`` per
    application. ``timings``, if given, receives the seconds spent per phase (keygen, verify, switch).
    """
    with exclusive(ctx.home.lock_path, "certmgr renew"):
        now = at or ctx.now()
        selection = select_candidates(ctx, app_uris=options.app_uris, all_due=options.all_due, force=options.force, now=now,
                                      dry_run=options.dry_run)
        results = [RenewalResult(c.app_uri, SKIPPED, f"not due: {c.reason}", c.thumbprint) for c in selection.not_due]
        if options.dry_run:
            return results + [RenewalResult(c.app_uri, WOULD_RENEW, c.reason, c.thumbprint, not_after=c.not_after) for c in selection.due]
        swept = sweep_stale_claims(ctx, ctx.now())  # what runs that died left behind
        if not selection.due:
            if swept:
                _publish_revocations(ctx, ctx.issuer())
            return results
        issuer = ctx.issuer()  # the passphrase before anything is claimed or generated
        _ensure_current_crl(ctx, issuer)
        token = claim_token(ctx)
        claimed = claim(ctx, selection.due, token, ctx.now())
        claimed.abandoned_revoked += swept
        results += [RenewalResult(c.app_uri, SKIPPED, why, c.thumbprint) for c, why in claimed.skipped]
        work = [_Work(c, RenewalResult(c.app_uri, RENEWED, c.reason, c.thumbprint), token=token) for c in claimed.claimed]
        if progress is not None:
            progress.start(len(work))
        try:
            _run(ctx, issuer, work, options, progress, timings if timings is not None else {})
        except Exception as exc:  # an unexpected error: nothing may stay half-done or be recorded as renewed
            log.exception("renewal batch interrupted")
            _abort_unfinished(ctx, work, options, f"unexpected {type(exc).__name__}: {exc}")
        finally:
            revoked = claimed.abandoned_revoked + sum(1 for w in work if w.failed and w.cert_id is not None)
            if revoked:
                _publish_revocations(ctx, issuer)
            _record_outcomes(ctx, [w for w in work if w.done])
            # an interrupted run (Ctrl-C, kill) keeps its claims: they time out and the next run recovers them
            release(ctx, [w.candidate.app_id for w in work if w.done], token)
        return results + [w.result for w in work]


def _run(ctx: AppContext, issuer: ca.Issuer, work: list[_Work], options: RenewOptions, progress, timings: dict) -> None:
    pushed = [w for w in work if w.candidate.deploy == "push"]
    for item in pushed:
        _push(ctx, item, options)
        if progress:
            progress.advance(item.candidate.app_uri)
    _run_files(ctx, issuer, [w for w in work if w.candidate.deploy != "push"], options, progress, timings)


def _push(ctx: AppContext, item: _Work, options: RenewOptions) -> None:
    """Servers without file access: Part 12 push with a new key, as every renewal gets one."""
    from .push import push

    report = push(ctx, item.candidate.app_uri, regenerate_key=True, verify_timeout=options.verify_timeout)
    item.result.new_thumbprint = report.new_thumbprint
    item.result.channels = [s.as_dict() for s in report.steps]
    if report.not_after:
        item.result.not_after = datetime.fromisoformat(report.not_after)
    if not report.ok:
        item.fail(f"push: {report.failed_step}", report.message)
        item.cert_id = None  # push recorded, revoked and published the failure itself
        item.failure_audited = True  # and wrote its renewal.fail event: the failure counter counts it once


def _abort_unfinished(ctx: AppContext, work: list[_Work], options: RenewOptions, reason: str) -> None:
    for item in work:
        if item.done:
            continue
        if not item.failed:
            item.fail("internal", reason)
        try:
            if item.switched:
                _roll_back(ctx, item, options)
            elif item.cert_id is not None:
                _discard(ctx, item)
            item.done = True
        except Exception:  # left claimed: the claim times out and the next run recovers it
            log.exception("could not clean up the renewal of %s", item.candidate.app_uri)


def _touch_claims(ctx: AppContext, work: list[_Work]) -> None:
    """Keep this run's claims fresh through a long batch (hooks, live proofs), so no other run takes
    them for abandoned."""
    if not work:
        return
    with ctx.database().write() as session:
        for app in session.scalars(select(db.Application).where(db.Application.id.in_([w.candidate.app_id for w in work]))):
            if app.renewal_claimed_by == work[0].token:
                app.renewal_claimed_at = ctx.now()


def _run_files(ctx: AppContext, issuer: ca.Issuer, work: list[_Work], options: RenewOptions, progress, timings: dict) -> None:
    started = time.perf_counter()
    keys = generate_keys([w.candidate.key_size for w in work])
    timings["keygen"] = time.perf_counter() - started
    for item, key in zip(work, keys):
        if isinstance(key, Exception):
            item.fail("keygen", f"key generation failed: {key}")
        else:
            item.key = key
            _issue_and_stage(ctx, issuer, item)
        if item.failed:
            item.done = item.cert_id is None  # nothing was staged or recorded
            if progress:
                progress.advance(item.candidate.app_uri)
    _touch_claims(ctx, work)
    staged = [w for w in work if not w.failed]
    timings["stage"] = time.perf_counter() - started - timings["keygen"]
    started = time.perf_counter()
    if options.verify:
        asyncio.run(_verify_all(ctx, staged, progress))
    else:
        _audit(ctx, "renewal.verification_skipped", None, apps=[w.candidate.app_uri for w in staged])
    timings["verify"] = time.perf_counter() - started
    _touch_claims(ctx, work)
    started = time.perf_counter()
    for item in staged:
        if item.failed:
            _discard(ctx, item)
        else:
            _switch(ctx, item)
            _deploy(ctx, item, options)
    timings["switch"] = time.perf_counter() - started
    live = [w for w in staged if not w.failed and w.switched and w.candidate.endpoint and options.verify]
    if live:
        _touch_claims(ctx, work)
        asyncio.run(_live_all(ctx, live, options))
    for item in staged:
        if item.failed and item.switched:
            _roll_back(ctx, item, options)
        item.done = True
        if progress and not options.verify:
            progress.advance(item.candidate.app_uri)


def _identity(c: Candidate) -> ca.ApplicationIdentity:
    return ca.ApplicationIdentity(
        c.app_uri, ca.SubjectFields(c.name, c.organization), tuple(c.dns_names), tuple(c.ip_addresses)
    )


def _issue_and_stage(ctx: AppContext, issuer: ca.Issuer, item: _Work) -> None:
    c = item.candidate
    if not c.store_path:
        item.fail("stage", "the application has no store folder certmgr can write")
        return
    now = ctx.now()
    try:
        item.cert = ca.build_application_certificate(_identity(c), item.key.public_key(), issuer, now=now, days=c.validity_days)
        item.store = pki.ApplicationStore(c.store_path, c.layout)
        if not item.store.root.is_dir():
            raise pki.StoreError(f"store folder {c.store_path} is missing")
        item.store.stage_own(item.cert, ca.private_key_pem(item.key), chain=(issuer.certificate,))
    except (ca.CAError, pki.StoreError, OSError) as exc:
        item.fail("stage", str(exc))
        return
    due = windows.renew_after(item.cert.not_valid_before_utc, item.cert.not_valid_after_utc, c.renew_before_seconds, windows.default_window(ctx))
    with ctx.database().write() as session:
        app = session.get(db.Application, c.app_id)
        authority = queries.authority(session)
        row = certificate_record(item.cert, app, authority.id, db.CertStatus.PENDING, now, due)
        session.add(row)
        session.flush()
        item.cert_id = row.id
    item.result.new_thumbprint = pki.thumbprint(item.cert)
    item.result.not_after = item.cert.not_valid_after_utc


async def _verify_all(ctx: AppContext, items: list[_Work], progress) -> None:
    from ..opcua.channel import Identity
    from ..opcua.identities import identity_from_store
    from ..opcua.proofs import ProofRunner
    from ..opcua.validator import StoreValidator

    store = verifier_store(ctx)
    uri = verifier_uri(ctx)
    as_client = identity_from_store(store, uri, peer_role="server", clock=ctx.now)
    as_server = identity_from_store(store, uri, peer_role="client", clock=ctx.now)
    settings = ctx.settings.verify
    async with ProofRunner(as_client, as_server, concurrency=settings.concurrency) as runner:

        async def one(item: _Work) -> None:
            c = item.candidate

            def side(peer_role: str) -> Identity:
                return Identity(c.app_uri, item.cert, item.key, StoreValidator(item.store, peer_role, ctx.now))

            proof = await runner.prove(
                side("client") if c.role in ("server", "both") else None,
                side("server") if c.role in ("client", "both") else None,
            )
            item.result.channels = [ch.as_dict() for ch in proof.channels]
            if not proof.ok:
                item.fail("verify", f"loopback proof failed: {proof.summary()}")
            if progress:
                progress.advance(c.app_uri)

        await asyncio.gather(*(one(item) for item in items))


def _discard(ctx: AppContext, item: _Work) -> None:
    """A staged pair that failed its proof: remove the files, mark failed, revoke (CRL follows)."""
    item.store.unstage(pki.thumbprint(item.cert))
    _mark_failed(ctx, item)


def _mark_failed(ctx: AppContext, item: _Work) -> None:
    now = ctx.now()
    with ctx.database().write() as session:
        row = session.get(db.Certificate, item.cert_id)
        row.status = db.CertStatus.FAILED
        row.status_reason = f"{item.result.stage}: {item.result.reason}"[:2000]
        row.revoked_at = now
        row.revocation_reason = "superseded"
        queries.add_audit(
            session, at=now, actor=ctx.actor, action=queries.RENEWAL_FAILED, target=item.candidate.app_uri,
            thumbprint=row.thumbprint, stage=item.result.stage, reason=item.result.reason,
        )
    item.failure_audited = True


def _still_ours(ctx: AppContext, item: _Work) -> str | None:
    """Before touching the store: the claim must still be this run's and the certificate still pending
    (a run taken for dead may have been recovered by another node meanwhile). Refreshes the claim."""
    with ctx.database().write() as session:
        app = session.get(db.Application, item.candidate.app_id)
        row = session.get(db.Certificate, item.cert_id)
        if app.renewal_claimed_by != item.token:
            return f"this run lost its claim to {app.renewal_claimed_by or 'a recovery'}"
        if row.status != db.CertStatus.PENDING:
            return f"the staged certificate is {row.status.value} now ({row.status_reason})"
        app.renewal_claimed_at = ctx.now()
    return None


def _switch(ctx: AppContext, item: _Work) -> None:
    """Make the new pair current (files, then database); the old pair goes to history."""
    store, now = item.store, ctx.now()
    thumb = pki.thumbprint(item.cert)
    lost = _still_ours(ctx, item)
    if lost is not None:
        item.fail("switch", lost)
        item.store.unstage(thumb)
        item.cert_id = None  # whoever took it over recorded and revoked it
        return
    try:
        with store.locked():
            before = store.own()
            item.previous = before.thumbprint if before else None
            store.install_own(item.cert, ca.private_key_pem(item.key), store.staged_chain(thumb))
            item.switched = True
            store.unstage(thumb)
    except (OSError, pki.StoreError) as exc:
        item.fail("switch", f"cannot switch the store to the new certificate: {exc}")
        if not item.switched:
            _discard(ctx, item)
        return
    with ctx.database().write() as session:
        new = session.get(db.Certificate, item.cert_id)
        for old in session.scalars(_active_rows(item.candidate.app_id)):
            if old.id != new.id:
                old.status = db.CertStatus.SUPERSEDED
                old.status_reason = f"renewed by {thumb}"
        new.status = db.CertStatus.ACTIVE
        queries.add_audit(
            session, at=now, actor=ctx.actor, action="certificate.renew", target=item.candidate.app_uri,
            thumbprint=thumb, serial=serial_hex(item.cert), replaced=item.previous,
        )


def _active_rows(app_id: int):
    return select(db.Certificate).where(db.Certificate.application_id == app_id, db.Certificate.status == db.CertStatus.ACTIVE)


def _hook_variables(item: _Work, action: str) -> dict[str, str]:
    own = item.store.own()
    return {
        "CERTMGR_ACTION": action,
        "CERTMGR_APP_URI": item.candidate.app_uri,
        "CERTMGR_STORE": str(item.store.root),
        "CERTMGR_LAYOUT": item.store.layout.name,
        "CERTMGR_THUMBPRINT": own.thumbprint if own else "",
        "CERTMGR_OLD_THUMBPRINT": item.previous or "",
        "CERTMGR_CERT_PATH": str(own.cert_path) if own else "",
        "CERTMGR_KEY_PATH": str(own.key_path) if own else "",
    }


def _deploy(ctx: AppContext, item: _Work, options: RenewOptions) -> None:
    if item.failed or not item.candidate.deploy_hook:
        return
    outcome = run_deploy_hook(item.candidate.deploy_hook, _hook_variables(item, "renewed"), options.hook_timeout)
    if not outcome.ok:
        item.fail("hook", outcome.message)


async def _live_all(ctx: AppContext, items: list[_Work], options: RenewOptions) -> None:
    from ..opcua.identities import identity_from_store
    from ..opcua.proofs import await_new_certificate

    verifier = identity_from_store(verifier_store(ctx), verifier_uri(ctx), peer_role="server", clock=ctx.now)
    timeout = options.verify_timeout if options.verify_timeout is not None else ctx.settings.verify.timeout

    async def one(item: _Work) -> None:
        live = await await_new_certificate(item.candidate.endpoint, verifier, pki.thumbprint(item.cert), timeout=timeout)
        item.result.channels += [dict(ch.as_dict(), live=True) for ch in live.channels]
        if not live.ok:
            item.fail("live", f"live proof failed: {live.message}")

    await asyncio.gather(*(one(item) for item in items))


def _roll_back(ctx: AppContext, item: _Work, options: RenewOptions) -> None:
    """After a switch: the previous pair becomes current again, the new certificate failed and revoked."""
    store = item.store
    with store.locked():
        store.revert_own(item.previous, pki.thumbprint(item.cert))
    with ctx.database().write() as session:
        if item.previous:
            old = session.scalars(select(db.Certificate).where(db.Certificate.thumbprint == item.previous)).first()
            if old is not None and old.status == db.CertStatus.SUPERSEDED:
                old.status = db.CertStatus.ACTIVE
                old.status_reason = f"restored after failed renewal ({item.result.stage})"
    _mark_failed(ctx, item)
    if item.candidate.deploy_hook:
        outcome = run_deploy_hook(item.candidate.deploy_hook, _hook_variables(item, "rollback"), options.hook_timeout)
        if not outcome.ok:
            item.result.reason += f"; the rollback's {outcome.message}"


def _ensure_current_crl(ctx: AppContext, issuer: ca.Issuer) -> None:
    """A CRL near its nextUpdate would make every proof fail with BadCertificateRevocationUnknown (as it
    would make every peer fail): re-sign and publish it first, as `certmgr crl refresh` would."""
    from .crl_refresh import needs_resign
    from .crls import current_crl

    if needs_resign(ctx, current_crl(ctx), ctx.now()):
        log.info("re-signing the CRL before renewing: less than a third of its validity is left")
        _publish_revocations(ctx, issuer)


def _publish_revocations(ctx: AppContext, issuer: ca.Issuer) -> None:
    now = ctx.now()
    crl_row = sign_crl(ctx, issuer, now)
    publish_everywhere(ctx, crl_row, issuer.certificate, now)


def _record_outcomes(ctx: AppContext, work: list[_Work]) -> None:
    if not work:
        return
    now = ctx.now()
    with ctx.database().write() as session:
        for item in work:
            app = session.get(db.Application, item.candidate.app_id)
            app.last_renewal_at = now
            app.last_renewal_status = FAILED if item.failed else RENEWED
            app.last_renewal_error = item.result.reason if item.failed else None
            if item.failed and not item.failure_audited:  # failed before a certificate existed (keygen, store)
                queries.add_audit(session, at=now, actor=ctx.actor, action=queries.RENEWAL_FAILED, target=item.candidate.app_uri,
                                  stage=item.result.stage, reason=item.result.reason)


def _audit(ctx: AppContext, action: str, target: str | None, **details) -> None:
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action=action, target=target, **details)
