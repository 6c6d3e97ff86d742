"""Emergency re-key of a fleet (`certmgr ca rollover --emergency --yes`) against the keygen floor of the same run."""

from __future__ import annotations

import time
from pathlib import Path

from . import section
from .common import new_home, timed

DEFAULT_N = 40  # CI-sized; `--n 1000` for the real measure (issue 16: 10,000 in under 15 minutes on 2 cores)
TARGET_APPS, TARGET_SECONDS = 10_000, 15 * 60


@section("rekey", "emergency re-key of N applications on local stores with loopback proofs; rate vs keygen-only rate")
def bench_rekey(work: Path, quick: bool = False, n: int | None = None) -> None:
    import ca
    from certmgr.services.rollover_emergency import emergency
    from certmgr.services.issuing import IssueRequest, issue_application
    from certmgr.services.keygen import default_workers, generate_keys

    count = n or (10 if quick else DEFAULT_N)
    ctx = new_home(work / "home")
    seed_key = ca.generate_rsa_key(2048)  # the fleet to re-key; its own keys are not what is measured
    for i in range(count):
        issue_application(ctx, IssueRequest(app_uri=f"urn:bench:rekey{i:05d}", store=work / "stores" / f"app{i:05d}",
                                            role="server", dns_names=("localhost",), ip_addresses=("127.0.0.1",)), key=seed_key)
    workers = default_workers()
    keygen = timed(lambda: generate_keys([2048] * (count + 1), workers=workers))
    keygen_rate = (count + 1) / keygen
    started = time.perf_counter()
    report = emergency(ctx)
    wall = time.perf_counter() - started
    renewed = sum(1 for r in report["renewals"] if r["outcome"] == "renewed")
    rate = renewed / wall
    print(f"emergency re-key: {renewed}/{len(report['renewals'])} applications (incl. certmgr's verifier) re-keyed, proven on "
          f"loopback channels and the old CA removed from {count + 1} stores in {wall:.1f} s: {rate:.1f} applications/s")
    print(f"keygen only, same {count + 1} RSA-2048 keys, {workers} workers: {keygen:.1f} s, {keygen_rate:.1f} keys/s; "
          f"re-key rate / keygen rate = {rate / keygen_rate:.2f}")
    projected = TARGET_APPS / rate if rate else float("inf")
    print(f"extrapolated to {TARGET_APPS:,} applications: {projected / 60:.1f} min (target {TARGET_SECONDS // 60} min; "
          f"keygen floor {TARGET_APPS / keygen_rate / 60:.1f} min)")
