"""Durations as operators write them: 30d, 12h, 2w, 90m, 45s, or combinations such as 1d12h."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import InputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    value = (text or "").strip().lower()
    if not value or _PART.sub("", value):
        raise InputError(f"{text!r} is not a duration", "write it like 30d, 12h, 2w or 1d12h")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds > MAX_SECONDS:
        raise InputError(f"duration {text!r} is longer than 100 years", "write it like 30d or 12h")
    if seconds <= 0:
        raise InputError(f"duration {text!r} must be greater than zero", "write it like 30d or 12h")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{sign}{seconds // size}{unit}"
    if seconds >= 86400:
        return f"{sign}{seconds // 86400}d{(seconds % 86400) // 3600}h"
    return f"{sign}{seconds}s"
