"""``certmgr renew``: the one renewal pipeline for every deployment.

plan (recover what a dead run left, select by renewal window, claim) -> issue (key where the deployment says,
certificate from certmgr's profile, recorded ``pending`` before any effect) -> **deliver** (a step chosen by the
application's deployment: the store's files, or Part 12 push) -> prove (loopback, then the live endpoint) ->
commit, or roll back. Certificate statuses change only in services/lifecycle.py; delivery steps never write them.

Each application is its own unit: an unexpected error fails only its item (logged with its traceback) and the
batch goes on. The CRL is signed at most once per run after the batch (and once at the start when stale). A
SIGINT/SIGTERM makes every unfinished item whole (rolled back) before the command exits with 130.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

import ca
import db
import pki

from ..context import AppContext
from ..locks import exclusive
from ..owners import current_owner
from . import lifecycle
from .crls import sign_crl
from .hooks import DEFAULT_HOOK_TIMEOUT
from .publishing import publish_everywhere
from .recovery import recover
from .renewal_plan import Candidate, claim, release, select_candidates

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
    # push deployment (`certmgr push` sets these; a renewal always asks the server for a new key)
    regenerate_key: bool = True
    accept_server: str | None = None
    sign_only: bool = False


@dataclass
class RenewalResult:
    app_uri: str
    outcome: str
    reason: str
    old_thumbprint: str | None = None
    new_thumbprint: str | None = None
    not_after: datetime | None = None
    stage: str | None = None  # where a failure happened: keygen, stage, verify, switch, hook, live, push: <step>
    channels: list[dict] = field(default_factory=list)
    stale_claim: bool = False  # skipped for a claim whose holder seems gone (the command exits 1)
    report: object = None  # the push delivery's step report

    def as_dict(self) -> dict:
        return {
            "app_uri": self.app_uri, "outcome": self.outcome, "reason": self.reason, "old_thumbprint": self.old_thumbprint,
            "new_thumbprint": self.new_thumbprint, "not_after": self.not_after.isoformat() if self.not_after else None,
            "failed_stage": self.stage, "channels": self.channels,
        }


@dataclass
class Work:
    """One claimed application on its way through the pipeline."""

    candidate: Candidate
    result: RenewalResult
    token: str
    key: object = None
    cert: x509.Certificate | None = None
    cert_id: int | None = None  # its pending row: the intent
    store: pki.ApplicationStore | None = None
    previous: str | None = None  # thumbprint of the pair the store held before the switch
    switched: bool = False
    done: bool = False  # committed, or failed and made whole (files back, certificate failed and revoked)
    failure_recorded: bool = False  # its renewal.fail audit event is written

    @property
    def failed(self) -> bool:
        return self.result.outcome == FAILED

    def fail(self, stage: str, reason: str) -> None:
        if not self.failed:
            self.result.outcome, self.result.stage, self.result.reason = FAILED, stage, reason


def guarded(item: Work, stage: str, function, *args) -> None:
    """Run one step of one item; an unexpected error fails that item only, with its traceback in the log."""
    try:
        function(*args)
    except Exception as exc:
        log.exception("renewal of %s: unexpected error at %s", item.candidate.app_uri, stage)
        item.fail(stage, f"unexpected {type(exc).__name__}: {exc}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the renewal in progress is made whole, then the command exits."""


@contextmanager
def _interruptible():
    """SIGTERM raises Interrupted in the main thread while a batch runs (the daemon's job threads keep theirs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(_signum, _frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_held():
    """No second Ctrl-C may cut the clean-up short: the signals wait until it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _deliveries(ctx: AppContext, issuer: ca.Issuer, options: RenewOptions, progress):
    from .delivery_push import PushDelivery
    from .delivery_store import StoreDelivery

    return {"push": PushDelivery(ctx, issuer, options, progress), "file": StoreDelivery(ctx, issuer, options, progress)}


def renew(ctx: AppContext, options: RenewOptions, *, at: datetime | None = None, progress=None) -> list[RenewalResult]:
    """Renew what ``options`` selects; returns one result per selected application.

    ``progress``, if given, gets ``start(total)`` once the batch is claimed and ``advance(app_uri)`` per application.
    """
    with exclusive(ctx.home.lock_path, "certmgr renew"):
        revoked = 0 if options.dry_run else recover(ctx)  # what runs that died left behind
        now = at or ctx.now()
        selection = select_candidates(ctx, app_uris=options.app_uris, all_due=options.all_due, force=options.force, now=now,
                                      dry_run=options.dry_run)
        results = [RenewalResult(c.app_uri, SKIPPED, f"not due: {c.reason}", c.thumbprint) for c in selection.not_due]
        if options.dry_run:
            return results + [RenewalResult(c.app_uri, WOULD_RENEW, c.reason, c.thumbprint, not_after=c.not_after) for c in selection.due]
        if not selection.due:
            if revoked:
                publish_revocations(ctx, ctx.issuer())
            return results
        issuer = ctx.issuer()  # the passphrase before anything is claimed or generated
        _ensure_current_crl(ctx, issuer)
        token = current_owner()
        claimed = claim(ctx, selection.due, token, ctx.now())
        results += [RenewalResult(c.app_uri, SKIPPED, why, c.thumbprint, stale_claim=c.app_uri in claimed.stale)
                    for c, why in claimed.skipped]
        work = [Work(c, RenewalResult(c.app_uri, RENEWED, c.reason, c.thumbprint), token) for c in claimed.claimed]
        if progress is not None:
            progress.start(len(work))
        deliveries = _deliveries(ctx, issuer, options, progress)
        try:
            with _interruptible():
                for kind, delivery in deliveries.items():
                    delivery.run([w for w in work if (w.candidate.deploy == "push") == (kind == "push")])
        except BaseException:
            with _signals_held():
                _settle_all(ctx, work, deliveries, "interrupted before it finished")
            raise
        finally:
            with _signals_held():
                _settle_all(ctx, work, deliveries, "the run ended before this renewal finished")
                _finish(ctx, issuer, work, revoked, token)
        return results + [w.result for w in work]


def _settle_all(ctx: AppContext, work: list[Work], deliveries: dict, reason: str) -> None:
    for item in work:
        if item.done:
            continue
        item.fail("internal", reason)
        delivery = deliveries["push" if item.candidate.deploy == "push" else "file"]
        try:
            delivery.settle(item)
        except Exception:  # its pending row stays: the next command's recovery makes it whole
            log.exception("could not clean up the renewal of %s; the next certmgr command will", item.candidate.app_uri)


def _finish(ctx: AppContext, issuer: ca.Issuer, work: list[Work], revoked: int, token: str) -> None:
    """One CRL for every revocation of the run, the outcomes, and the claims released."""
    revoked += sum(1 for w in work if w.failed and w.cert_id is not None and w.done)
    try:
        if revoked:
            publish_revocations(ctx, issuer)
    finally:  # a CRL that cannot be signed now is caught by the next refresh; the outcomes and claims never wait
        try:
            _record_outcomes(ctx, [w for w in work if w.done])
        finally:
            release(ctx, [w.candidate.app_id for w in work if w.done], token)


def _ensure_current_crl(ctx: AppContext, issuer: ca.Issuer) -> None:
    """A CRL near its nextUpdate would make every proof fail with BadCertificateRevocationUnknown (as it
    would make every peer fail): re-sign and publish it first, as `certmgr crl refresh` would."""
    from .crl_refresh import needs_resign
    from .crls import current_crl

    if needs_resign(ctx, current_crl(ctx), ctx.now()):
        log.info("re-signing the CRL before renewing: less than a third of its validity is left")
        publish_revocations(ctx, issuer)


def publish_revocations(ctx: AppContext, issuer: ca.Issuer) -> None:
    now = ctx.now()
    crl_row = sign_crl(ctx, issuer, now)
    publish_everywhere(ctx, crl_row, issuer.certificate, now)


def _record_outcomes(ctx: AppContext, work: list[Work]) -> None:
    if not work:
        return
    now = ctx.now()
    with ctx.database().write() as session:
        for item in work:
            app = session.get(db.Application, item.candidate.app_id)
            lifecycle.set_renewal_outcome(session, app, ok=not item.failed, error=item.result.reason, now=now)
            if item.failed and not item.failure_recorded:  # failed before a certificate existed (keygen, store)
                lifecycle.note_failure(session, item.candidate.app_uri, stage=item.result.stage, reason=item.result.reason,
                                       now=now, actor=ctx.actor, deploy=item.candidate.deploy)
