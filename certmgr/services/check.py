"""``certmgr check``: the expiry scan as one line and a monitoring exit code (no alerts are sent)."""

from __future__ import annotations

from ..alerts.levels import scan
from ..alerts.settings import alert_settings, rank
from ..context import AppContext
from ..durations import parse_duration

CODES = {"ok": 0, "warning": 1, "critical": 2, "expired": 2}
NAMES = {0: "OK", 1: "WARNING", 2: "CRITICAL"}


def check(ctx: AppContext, *, warn: str | None = None, crit: str | None = None) -> dict:
    ctx.require_initialised()
    settings = alert_settings(ctx.settings)
    if warn:
        settings.warning = parse_duration(warn)
    if crit:
        settings.critical = parse_duration(crit)
    now = ctx.now()
    subjects = sorted(scan(ctx, now, settings), key=lambda s: (-rank(s.level), s.days_left))
    code = max((CODES[s.level] for s in subjects), default=0)
    counts = {level: sum(1 for s in subjects if s.level == level) for level in ("expired", "critical", "warning")}
    if subjects:
        worst = ", ".join(f"{s.name} ({s.level}, {s.days_left:.0f}d)" for s in subjects[:5])
        more = f" and {len(subjects) - 5} more" if len(subjects) > 5 else ""
        detail = f"{', '.join(f'{n} {k}' for k, n in counts.items() if n)}: {worst}{more}"
    else:
        detail = "all certificates and CRLs are fine"
    perfdata = " ".join(f"{k}={n}" for k, n in counts.items())
    return {
        "code": code,
        "status": NAMES[code],
        "line": f"CERTMGR {NAMES[code]} - {detail} | {perfdata}",
        "counts": counts,
        "subjects": [s.as_dict() for s in subjects],
    }
