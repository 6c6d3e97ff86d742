"""Benchmark sections for scripts/bench.py; each module registers itself in SECTIONS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SECTIONS: dict[str, tuple[Callable[[Path], None], str]] = {}


def section(name: str, doc: str):
    def register(function):
        SECTIONS[name] = (function, doc)
        return function

    return register


from . import crl, fleet, issue, issue_cli, kill, probe, pull, rekey, renew, web  # noqa: E402,F401  (each registers its sections)
