"""The daemon's jobs. Each calls the same service functions as the CLI and logs one structured line per
certificate and per outcome. On PostgreSQL a job first takes an advisory lock, so among several certmgr
nodes sharing one database exactly one runs it; the others log that they skipped."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from ..context import AppContext
from ..errors import CertmgrError
from .logfmt import event

log = logging.getLogger("certmgr.daemon")
_context: AppContext | None = None  # the daemon's context; APScheduler stores only the job name


def bind(ctx: AppContext) -> None:
    global _context
    _context = ctx


def scheduled(name: str) -> bool:
    """The function APScheduler calls (by reference "certmgr.daemon.jobs:scheduled")."""
    if _context is None:
        raise RuntimeError("no daemon context bound")
    return run_locked(_context, name)


def advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"certmgr:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def job_lock(ctx: AppContext, name: str) -> Iterator[bool]:
    """True when this node may run the job now (always on SQLite, where the home lock applies)."""
    database = ctx.database()
    if database.is_sqlite:
        yield True
        return
    key = advisory_key(name)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        try:
            yield got
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def run_locked(ctx: AppContext, name: str) -> bool:
    with job_lock(ctx, name) as got:
        if not got:
            event(log, "another certmgr node runs this job now; skipped", job=name, outcome="skipped")
            return True
        return run_job(ctx, name)


def run_job(ctx: AppContext, name: str) -> bool:
    event(log, "job started", job=name, outcome="started")
    try:
        ok = JOBS[name](ctx)
    except CertmgrError as exc:
        event(log, exc.one_line(), logging.ERROR, job=name, outcome="failed")
        ok = False
    except Exception:  # a job never takes the daemon down
        log.exception("job %s crashed", name, extra={"fields": {"job": name, "outcome": "failed"}})
        ok = False
    event(log, "job finished", logging.INFO if ok else logging.ERROR, job=name, outcome="ok" if ok else "failed")
    return ok


def _renew_due(ctx: AppContext) -> bool:
    from ..services.renewal import FAILED, RenewOptions, renew

    results = renew(ctx, RenewOptions(all_due=True))
    for r in results:
        level = logging.ERROR if r.outcome == FAILED else logging.INFO
        event(log, r.reason, level, job="renew-due", app_uri=r.app_uri, thumbprint=r.new_thumbprint or r.old_thumbprint,
              outcome=r.outcome, stage=r.stage)
    if not results:
        event(log, "nothing is due", job="renew-due", outcome="none")
    scanned = _expiry_scan(ctx, job="renew-due")  # the levels change after a renewal run
    return scanned and not any(r.outcome == FAILED for r in results)


def _crl_refresh(ctx: AppContext) -> bool:
    from ..services.crl_refresh import refresh

    report = refresh(ctx)
    event(log, f"CRL {report.crl_number}, next update {report.next_update:%Y-%m-%d %H:%M} UTC", job="crl-refresh",
          outcome="resigned" if report.resigned else "current", crl_number=report.crl_number)
    for check in report.checks:
        for line in check.repaired:
            event(log, line, logging.WARNING, job="crl-refresh", store=check.store, outcome="repaired")
        for line in check.problems:
            event(log, line, logging.ERROR, job="crl-refresh", store=check.store, outcome="problem")
    return report.ok


def _expiry_scan(ctx: AppContext, job: str = "expiry-scan") -> bool:
    from ..alerts.dispatch import expiry_scan

    report = expiry_scan(ctx)
    for subject, previous in report.changed:
        event(log, subject.reason, logging.WARNING, job=job, app_uri=subject.name if subject.kind == "certificate" else None,
              issuer=subject.name if subject.kind == "crl" else None, thumbprint=subject.thumbprint, alert_level=subject.level,
              previous_level=previous, outcome="level-changed")
    for channel, count in report.sent.items():
        event(log, f"{count} alert(s) sent", job=job, channel=channel, outcome="sent")
    for channel, error in report.failed.items():
        event(log, error, logging.ERROR, job=job, channel=channel, outcome="channel-failed")
    counts = report.counts()
    event(log, "expiry scan done", job=job, outcome="ok", **counts)
    return not report.failed


def _track_peers(ctx: AppContext) -> bool:
    from ..services.peers import track_peers

    for change in track_peers(ctx):
        event(log, f"peer certificate changed: {change.old_thumbprint} -> {change.new_thumbprint}", logging.WARNING,
              job="track-peers", endpoint=change.endpoint, outcome="changed")
    return _expiry_scan(ctx, job="track-peers")  # a changed or expiring peer alerts now


def _probe(ctx: AppContext) -> bool:
    from ..services.probe import probe, probe_targets

    outcomes = probe(ctx, probe_targets(ctx, all_=True, app_uri=None, peer=None))
    for outcome in outcomes:
        event(log, outcome.fix or "revocation in effect", logging.INFO if outcome.ok else logging.ERROR, job="probe",
              endpoint=outcome.endpoint, crl_effective=outcome.crl_effective, outcome="ok" if outcome.ok else "not-effective")
    return _expiry_scan(ctx, job="probe") and all(o.ok for o in outcomes)


JOBS = {"renew-due": _renew_due, "crl-refresh": _crl_refresh, "expiry-scan": _expiry_scan, "track-peers": _track_peers,
        "probe": _probe}
