"""The [schedule] and [daemon] sections of certmgr.toml, turned into APScheduler 3 triggers.

    [schedule]
    renew_due = "cron 0 2 * * *"     # nightly at 02:00 local time
    renew_due_jitter = "15m"
    crl_refresh = "every 6h"
    expiry_scan = "cron 0 7 * * *"

    [daemon]
    node = "plant1-a"                # default: the host name (job ids and logs carry it)
    metrics_listen = "127.0.0.1:9464"  # "" turns the endpoint off
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta

from ..durations import parse_duration
from ..errors import InputError

JOBS = ("renew-due", "crl-refresh", "expiry-scan", "track-peers", "probe")
SIGNING_JOBS = frozenset({"renew-due", "crl-refresh"})  # these need the CA key; the expiry scan only reads
# A job missed while the daemon was down runs once on start if it is not older than this.
MISFIRE_GRACE = {"renew-due": timedelta(hours=20), "crl-refresh": timedelta(hours=6), "expiry-scan": timedelta(hours=20),
                 "track-peers": timedelta(hours=6), "probe": timedelta(hours=6)}


@dataclass
class JobSpec:
    name: str
    expression: str
    jitter: timedelta | None = None

    def trigger(self):
        kind, _, rest = self.expression.strip().partition(" ")
        jitter = int(self.jitter.total_seconds()) if self.jitter else None
        if kind == "cron":
            from apscheduler.triggers.cron import CronTrigger

            if len(rest.split()) != 5:
                raise InputError(f"schedule {self.name}: {self.expression!r} needs five cron fields", 'e.g. "cron 0 2 * * *"')
            try:
                trigger = CronTrigger.from_crontab(rest)  # crontab semantics: day-of-week 0 is Sunday
                trigger.jitter = jitter
                return trigger
            except ValueError as exc:
                raise InputError(f"schedule {self.name}: {exc}", 'e.g. "cron 0 2 * * *"') from None
        if kind == "every":
            from apscheduler.triggers.interval import IntervalTrigger

            return IntervalTrigger(seconds=parse_duration(rest).total_seconds(), jitter=jitter)
        raise InputError(f"schedule {self.name}: {self.expression!r} is neither cron nor every", 'write "cron 0 2 * * *" or "every 6h"')


@dataclass
class DaemonSettings:
    node: str = field(default_factory=socket.gethostname)
    metrics_listen: str = "127.0.0.1:9464"
    jobs: dict[str, JobSpec] = field(default_factory=dict)


def daemon_settings(settings) -> DaemonSettings:
    """The typed [schedule] and [daemon] sections as triggers; a bad schedule is refused at start, not at 02:00."""
    schedule, daemon = settings.schedule, settings.daemon
    result = DaemonSettings()
    if daemon.node:
        result.node = daemon.node
    result.metrics_listen = daemon.metrics_listen
    for name in JOBS:
        key = name.replace("-", "_")
        jitter = str(getattr(schedule, f"{key}_jitter") or "0")
        spread = None if jitter.strip() in ("0", "0s", "") else parse_duration(jitter)
        expression = getattr(schedule, key)
        if expression is None and name == "track-peers":  # peers are re-read as often as [fleet] says
            expression = f"every {int(settings.fleet.track_every_hours * 3600)}s"
        result.jobs[name] = JobSpec(name, expression, spread)
    for spec in result.jobs.values():
        spec.trigger()
    return result
