"""The [alerts] section of certmgr.toml.

    [alerts]
    warning = "30d"          # or less than the renewal window, if that is longer
    critical = "7d"
    crl_warning = "5d"
    crl_critical = "1d"
    repeat_critical = "24h"

    [[alerts.channel]]
    name = "ops-mail"
    type = "smtp"            # smtp | webhook
    min_level = "warning"    # warning | critical | expired
    ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..durations import parse_duration
from ..errors import InputError

LEVELS = ("ok", "warning", "critical", "expired")


def rank(level: str) -> int:
    return LEVELS.index(level)


@dataclass
class ChannelConfig:
    name: str
    type: str
    min_level: str = "warning"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertSettings:
    warning: timedelta = timedelta(days=30)
    critical: timedelta = timedelta(days=7)
    crl_warning: timedelta = timedelta(days=5)
    crl_critical: timedelta = timedelta(days=1)
    repeat_critical: timedelta = timedelta(hours=24)
    channels: list[ChannelConfig] = field(default_factory=list)


def alert_settings(settings) -> AlertSettings:
    """The typed [alerts] section (certmgr.config checked keys and durations at load) as timedeltas."""
    section = settings.alerts
    result = AlertSettings()
    for key in ("warning", "critical", "crl_warning", "crl_critical", "repeat_critical"):
        setattr(result, key, parse_duration(getattr(section, key)))
    names = set()
    for entry in section.channel:
        if not entry.get("name"):
            raise InputError(f"[[alerts.channel]] of type {entry.get('type')} has no name", "give each channel a name")
        if entry["name"] in names:
            raise InputError(f"two alert channels are named {entry['name']!r}", "give each [[alerts.channel]] its own name")
        names.add(entry["name"])
        level = entry.get("min_level", "warning")
        if level not in LEVELS[1:]:
            raise InputError(f"alert channel {entry['name']}: min_level {level!r}", "use warning, critical or expired")
        options = {k: v for k, v in entry.items() if k not in ("name", "type", "min_level")}
        result.channels.append(ChannelConfig(entry["name"], entry["type"], level, options))
    return result
