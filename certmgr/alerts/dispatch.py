"""Send each alert once per level change (again after ``repeat_critical`` while critical or expired), with
the state in the database so a restarted daemon does not resend everything. The log gets every change."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select

import db

from ..context import AppContext
from .channels import ChannelError, alert_text, make_channel
from .levels import Subject, scan
from .settings import AlertSettings, ChannelConfig, alert_settings, rank

log = logging.getLogger("certmgr.alerts")
LEVEL_ROW = ""  # the channel name under which the last computed level is kept


@dataclass
class ScanReport:
    subjects: list[Subject] = field(default_factory=list)
    changed: list[tuple[Subject, str]] = field(default_factory=list)  # (subject, previous level)
    sent: dict[str, int] = field(default_factory=dict)  # channel -> alerts delivered
    failed: dict[str, str] = field(default_factory=dict)  # channel -> error

    def counts(self) -> dict[str, int]:
        result = {"warning": 0, "critical": 0, "expired": 0}
        for subject in self.subjects:
            result[subject.level] += 1
        return result

    def as_dict(self) -> dict:
        return {
            "counts": self.counts(),
            "subjects": [s.as_dict() for s in self.subjects],
            "changed": [s.as_dict(previous) for s, previous in self.changed],
            "sent": self.sent,
            "failed": self.failed,
        }


def _due(subject: Subject, row, channel: ChannelConfig, settings: AlertSettings, now: datetime) -> bool:
    if rank(subject.level) < rank(channel.min_level):
        return False
    if row is None or row.level != subject.level:
        return True
    return rank(subject.level) >= rank("critical") and row.sent_at < now - settings.repeat_critical


def expiry_scan(ctx: AppContext, *, now: datetime | None = None, channels: list[str] | None = None, send: bool = True) -> ScanReport:
    now = now or ctx.now()
    settings = alert_settings(ctx.settings)
    report = ScanReport(list(scan(ctx, now, settings)))
    keys = {s.key for s in report.subjects}
    database = ctx.database()
    with database.write() as session:
        rows = {(r.subject_key, r.channel): r for r in session.scalars(select(db.AlertState))}
        stale = {key for key, _ in rows if key not in keys}
        if stale:  # back to ok, or gone (renewed): the next problem alerts afresh
            session.execute(delete(db.AlertState).where(db.AlertState.subject_key.in_(stale)))
        for subject in report.subjects:
            row = rows.get((subject.key, LEVEL_ROW))
            previous = row.level if row else "ok"
            if previous != subject.level:
                report.changed.append((subject, previous))
                log.log(logging.ERROR if rank(subject.level) >= 2 else logging.WARNING, "alert %s", alert_text(subject, previous))
            if row is None:
                session.add(db.AlertState(subject_key=subject.key, channel=LEVEL_ROW, level=subject.level, sent_at=now))
            else:
                row.level, row.sent_at = subject.level, now
    if not send:
        return report
    previous_levels = {s.key: p for s, p in report.changed}
    for channel in settings.channels:
        if channels is not None and channel.name not in channels:
            continue
        due = [(s, previous_levels.get(s.key, s.level)) for s in report.subjects
               if _due(s, rows.get((s.key, channel.name)), channel, settings, now)]
        if not due:
            continue
        try:
            sender = make_channel(channel)
            delivered = sender.send(due)
        except ChannelError as exc:
            report.failed[channel.name] = str(exc)
            log.warning("alert channel %s failed, retried next run: %s", channel.name, exc)
            continue
        except Exception as exc:  # a broken channel never stops the scan or the other channels
            report.failed[channel.name] = f"{type(exc).__name__}: {exc}"
            log.exception("alert channel %s failed", channel.name)
            continue
        if len(delivered) < len(due):
            why = getattr(sender, "last_error", None) or "not delivered"
            report.failed[channel.name] = f"{len(due) - len(delivered)} of {len(due)} alerts not delivered: {why}"
        report.sent[channel.name] = len(delivered)
        _remember(ctx, channel.name, delivered, now)
    return report


def _remember(ctx: AppContext, channel: str, delivered: list[Subject], now: datetime) -> None:
    if not delivered:
        return
    with ctx.database().write() as session:
        existing = {
            r.subject_key: r
            for r in session.scalars(
                select(db.AlertState).where(db.AlertState.channel == channel, db.AlertState.subject_key.in_([s.key for s in delivered]))
            )
        }
        for subject in delivered:
            row = existing.get(subject.key)
            if row is None:
                session.add(db.AlertState(subject_key=subject.key, channel=channel, level=subject.level, sent_at=now))
            else:
                row.level, row.sent_at = subject.level, now


def test_alert(ctx: AppContext, channel_name: str | None) -> dict[str, str]:
    """Send a made-up warning through each channel (or one); returns channel -> "ok" or the error."""
    settings = alert_settings(ctx.settings)
    now = ctx.now()
    sample = Subject("test:certmgr", "certificate", "urn:certmgr:alert-test", None, now, 12.0, "warning",
                     "test alert from `certmgr alerts test`; no action needed")
    results = {}
    chosen = [c for c in settings.channels if channel_name in (None, c.name)]
    if channel_name and not chosen:
        from ..errors import InputError

        raise InputError(f"no alert channel named {channel_name!r}", "see [[alerts.channel]] in certmgr.toml")
    for channel in chosen:
        try:
            sender = make_channel(channel)
            delivered = sender.send([(sample, None)])
            results[channel.name] = "ok" if delivered else f"failed: {getattr(sender, 'last_error', None) or 'not delivered'}"
        except Exception as exc:
            results[channel.name] = str(exc)
    return results


def alert_now(ctx: AppContext) -> None:
    """After a failed renewal or push run by hand: send what changed at once, not at the next scheduled
    scan. A channel that fails here is logged; it never hides the renewal's own result."""
    try:
        report = expiry_scan(ctx)
    except Exception as exc:  # the renewal already failed: report that, not an alerting problem
        log.warning("could not send alerts after the failed renewal: %s", exc)
        return
    for channel, error in report.failed.items():
        log.warning("alert channel %s failed: %s", channel, error)
