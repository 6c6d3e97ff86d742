"""The exhaustive kill sweep of issue 14: every kill point of every scenario of tests/kill (CI runs a sample)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from . import section


def _point(mutation: str, root: Path) -> str:
    """'17 fsync /tmp/.../ws/stores/a/own/private' -> 'fsync stores/a/own/private'."""
    _, op, path = (mutation.split(" ", 2) + ["", ""])[:3]
    return f"{op} {path.replace(str(root) + '/', '')}"


@section("kill", "SIGKILL before every file/database mutation of init, issue, renew, revoke, crl refresh; invariants")
def kill_sweep(scratch: Path, quick: bool = False) -> None:
    from tests.kill import scenarios as kill
    from tests.kill.runner import build_shim

    shim = build_shim(scratch / "shim")
    ws = kill.Workspace(scratch / "ws")
    ws.prepare()
    total_points = total_bad = 0
    started_all = time.perf_counter()
    print(f"{'scenario':18} {'points':>6} {'broken':>6} {'violations':>10} {'wall':>8}   (--quick: CI sample only)" if quick
          else f"{'scenario':18} {'points':>6} {'broken':>6} {'violations':>10} {'wall':>8}")
    details: list[str] = []
    for name, scenario in kill.SCENARIOS.items():
        started = time.perf_counter()
        points = kill.kill_points(ws, scenario, shim)
        ks = kill.sample(len(points), scenario.sample, seed=name) if quick else range(1, len(points) + 1)
        by_code: dict[str, list[int]] = defaultdict(list)
        first: dict[str, str] = {}
        broken = violations = 0
        for k in ks:
            trial = kill.trial(ws, scenario, k, shim, _point(points[k - 1], ws.root))
            if not trial.killed:
                by_code["not-killed"].append(k)
            if trial.violations:
                broken += 1
                violations += len(trial.violations)
            for violation in trial.violations:
                code = kill.code_of(violation)
                if k not in by_code[code]:
                    by_code[code].append(k)
                first.setdefault(code, f"k={k} [{trial.point}] {violation}")
        wall = time.perf_counter() - started
        total_points += len(ks)
        total_bad += broken
        print(f"{name:18} {len(ks):>6} {broken:>6} {violations:>10} {wall:>7.1f}s")
        for code, ks_of in sorted(by_code.items()):
            details.append(f"  {name} / {code}: k = {_ranges(ks_of)}\n      first: {first.get(code, '')[:300]}")
    print(f"{'all':18} {total_points:>6} {total_bad:>6} {'':>10} {time.perf_counter() - started_all:>7.1f}s")
    if details:
        print("violations by scenario and invariant (k: kill before the k-th mutation):")
        print("\n".join(details))


def _ranges(values: list[int]) -> str:
    values = sorted(set(values))
    parts, start = [], None
    for i, value in enumerate(values):
        if start is None:
            start = value
        if i + 1 == len(values) or values[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)
