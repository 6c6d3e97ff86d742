"""Structured log lines (logfmt): ts=... level=... job=... app_uri=... outcome=... msg="..."."""

from __future__ import annotations

import logging
from datetime import datetime, timezone


def _value(value) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields.update(getattr(record, "fields", {}) or {})
        fields["msg"] = record.getMessage()
        line = " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            line += " exc=" + _value(self.formatException(record.exc_info).splitlines()[-1])
        return line


def event(logger: logging.Logger, message: str, severity: int = logging.INFO, **fields) -> None:
    logger.log(severity, message, extra={"fields": fields})
