"""Helpers shared by benchmark sections."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def summary(samples: list[float]) -> str:
    return f"mean {statistics.fmean(samples) * 1000:7.1f} ms, median {statistics.median(samples) * 1000:7.1f} ms (n={len(samples)})"


def new_home(path: Path, *, ca_key_size: int = 2048, db_url: str | None = None):
    """An initialised certmgr home and its context, for in-process benchmarks."""
    import os

    from certmgr.context import AppContext
    from certmgr.services.setup import InitOptions, initialise

    ctx = AppContext(path, db_url=db_url)
    initialise(ctx, InitOptions(ca_key_size=ca_key_size), os.environ["CERTMGR_CA_PASSPHRASE"].encode())
    return ctx


def ratio_line(label: str, value: float, baseline: float, target: str) -> str:
    return f"{label}: {value / baseline:.2f}x  (target {target})"
