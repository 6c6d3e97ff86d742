#!/usr/bin/env python3
"""certmgr benchmarks. Each section prints its own baseline, measured in the same run, and the ratio.

    .venv/bin/python scripts/bench.py            # every section
    .venv/bin/python scripts/bench.py issue      # one section
    .venv/bin/python scripts/bench.py --list

Numbers are wall-clock on this machine; compare ratios, not absolute times, across machines.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import SECTIONS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the sections")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--n", type=int, default=None, help="the size, for sections that take one (rekey: applications)")
    args = parser.parse_args()
    if args.list:
        for name, (_, doc) in SECTIONS.items():
            print(f"{name:10} {doc}")
        return 0
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; see --list")
    os.environ.setdefault("CERTMGR_CA_PASSPHRASE", "bench passphrase")
    # as the CLI does: asyncua's per-connection warnings (session timeout, missing DNS name) would bury the numbers
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="certmgr-bench-") as scratch:
        for name in args.sections or list(SECTIONS):
            function, doc = SECTIONS[name]
            print(f"\n== {name}: {doc}")
            extra = {"n": args.n} if "n" in inspect.signature(function).parameters else {}
            function(Path(scratch) / name, quick=args.quick, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
