"""The expiry timeline: an SVG of the next DAYS days drawn on the server (no script, no CDN)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from html import escape

DAYS = 400
WIDTH, HEIGHT, LEFT, RIGHT = 1000, 120, 40, 20
ORDER = ("expired", "critical", "warning", "ok", "None")
COLOURS = {"expired": "#7a0000", "critical": "#d00000", "warning": "#e69500", "ok": "#2e7d32", "None": "#777777"}


def timeline_svg(rows: list[dict], now: datetime) -> str:
    """One tick per certificate at its notAfter (expired ones at the left edge), today marked."""
    span = WIDTH - LEFT - RIGHT
    end = now + timedelta(days=DAYS)
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
              f'aria-label="Certificate expiry over the next {DAYS} days" class="timeline">'),
             f'<line x1="{LEFT}" y1="90" x2="{WIDTH - RIGHT}" y2="90" stroke="#444"/>']
    for day in range(0, DAYS + 1, 50):
        x = LEFT + span * day / DAYS
        parts.append(f'<line x1="{x:.0f}" y1="88" x2="{x:.0f}" y2="95" stroke="#444"/>'
                     f'<text x="{x:.0f}" y="110" font-size="11" text-anchor="middle">+{day}d</text>')
    buckets: dict[int, dict[str, list[dict]]] = {}  # one bar per pixel column and level: size stays bounded
    for row in rows:
        if not row.get("not_after"):
            continue
        not_after = datetime.fromisoformat(row["not_after"])
        if not_after > end:
            continue
        days = max((not_after - now).total_seconds() / 86400, 0)
        x = round(LEFT + span * days / DAYS)
        buckets.setdefault(x, {}).setdefault(str(row.get("level")), []).append(row)
    for x, levels in sorted(buckets.items()):
        top = 88
        for level in ORDER:
            group = levels.get(level)
            if not group:
                continue
            height = min(6 + 4 * math.log2(len(group)), 30)
            top -= height + 1
            first = group[0]
            what = (f"{first.get('app_uri') or first.get('store')}" if len(group) == 1 else f"{len(group)} certificates")
            title = escape(f"{what}: {level}, notAfter {first['not_after'][:10]}")
            parts.append(f'<rect class="tick level-{escape(level)}" x="{x - 2}" y="{top:.0f}" width="4" height="{height:.0f}" '
                         f'fill="{COLOURS.get(level, "#777777")}"><title>{title}</title></rect>')
    parts.append(f'<line x1="{LEFT}" y1="5" x2="{LEFT}" y2="95" stroke="#000" stroke-width="2" class="today"/>'
                 f'<text x="{LEFT + 4}" y="14" font-size="12">today {now:%Y-%m-%d}</text></svg>')
    return "".join(parts)
