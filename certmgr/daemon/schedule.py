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

JOBS = ("renew-due", "crl-refresh", "expiry-scan")
DEFAULTS = {"renew-due": "cron 0 2 * * *", "crl-refresh": "every 6h", "expiry-scan": "cron 0 7 * * *"}
DEFAULT_JITTER = {"renew-due": "15m"}
SIGNING_JOBS = frozenset({"renew-due", "crl-refresh"})  # these need the CA key; the expiry scan only reads
# A job missed while the daemon was down runs once on start if it is not older than this.
MISFIRE_GRACE = {"renew-due": timedelta(hours=20), "crl-refresh": timedelta(hours=6), "expiry-scan": timedelta(hours=20)}


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


def daemon_settings(raw: dict) -> DaemonSettings:
    schedule = raw.get("schedule", {}) or {}
    daemon = raw.get("daemon", {}) or {}
    settings = DaemonSettings()
    if daemon.get("node"):
        settings.node = str(daemon["node"])
    if "metrics_listen" in daemon:
        settings.metrics_listen = str(daemon["metrics_listen"])
    for name in JOBS:
        key = name.replace("-", "_")
        jitter = str(schedule.get(f"{key}_jitter", DEFAULT_JITTER.get(name)) or "0")
        spread = None if jitter.strip() in ("0", "0s", "") else parse_duration(jitter)
        settings.jobs[name] = JobSpec(name, str(schedule.get(key, DEFAULTS[name])), spread)
    for spec in settings.jobs.values():
        spec.trigger()  # refuse a bad schedule at start, not at 02:00
    return settings
