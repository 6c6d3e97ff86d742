"""Part 12 pull: an agent's renewal against `certmgr gds serve` (CSR, FinishRequest, install, local proof) vs a local
`renew` of the same kind of application in the same run; then N agents' renewals against one GDS."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import section
from .common import new_home, ratio_line, summary

ROUNDS = 3


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "certmgr", "--home", str(home), *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "CERTMGR_DB": ""})
    if done.returncode != 0:
        raise RuntimeError(f"certmgr {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(home: Path, uri: str, folder: Path) -> Path:
    path = folder / f"{uri.rsplit(':', 1)[-1]}.token"
    _cli(home, "gds", "enrol-token", "--app-uri", uri, "--valid", "1h", "--token-file", str(path))
    return path


@section("pull", "GDS pull renewal by `certmgr agent` vs a local renew; N agents' renewals per second")
def bench_pull(work: Path, quick: bool = False) -> None:
    from certmgr.context import AppContext
    from certmgr.services import agent as agent_service
    from certmgr.services.agent_state import load_state, save_state
    from certmgr.services.renewal import RenewOptions, renew

    count = int(os.environ.get("CERTMGR_BENCH_AGENTS", "3" if quick else "10"))
    work.mkdir(parents=True)
    ctx = new_home(work / "gds-home")
    home = ctx.home.root
    config = home / "certmgr.toml"  # no operator in a benchmark: [gds] approves on its own
    config.write_text(config.read_text().replace("auto_approve_new = false", "auto_approve_new = true")
                      .replace("auto_approve_renewals = false", "auto_approve_renewals = true"))
    # the local baseline: a store application of the same kind (client and server), renewed by certmgr itself
    _cli(home, "issue", "--app-uri", "urn:bench:local", "--store", str(work / "local-pki"), "--role", "both")
    uris = [f"urn:bench:agent{i}" for i in range(count)]
    for uri in uris:
        _cli(home, "app", "add", "--app-uri", uri, "--deploy", "pull", "--role", "both")
    url = f"opc.tcp://127.0.0.1:{_port()}"
    server = subprocess.Popen([sys.executable, "-m", "certmgr", "--home", str(home), "gds", "serve", "--listen", url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "CERTMGR_DB": ""})
    try:
        line = server.stderr.readline()
        if "certmgr GDS on" not in line:
            raise RuntimeError(f"gds serve did not start: {line}{server.stderr.read()}")
        thumb = None
        agents = []
        for i, uri in enumerate(uris):
            actx = AppContext(work / f"agent{i}")
            if thumb is None:
                import pki
                from certmgr.opcua.gds_client import read_endpoint

                thumb = pki.thumbprint(asyncio.run(read_endpoint(url)).certificate)
            agent_service.enrol(actx, gds=url, app_uri=uri, store=str(work / f"agent{i}-pki"), layout="ua-net", deploy_hook=None,
                                token_file=str(_token(home, uri, work)), accept_gds=thumb, wait=30, prove=i == 0)
            agents.append(actx)

        pull, local = [], []
        for _ in range(ROUNDS):  # interleaved, so both see the same machine load
            started = time.perf_counter()
            outcome, = agent_service.run(agents[0], force=True)
            pull.append(time.perf_counter() - started)
            assert outcome.action == "renewed", outcome.as_dict()
            started = time.perf_counter()
            result, = renew(ctx, RenewOptions(app_uris=("urn:bench:local",), force=True))
            local.append(time.perf_counter() - started)
            assert result.outcome == "renewed", result
        print(f"  pull renewal (agent run --force: trust list, CSR, FinishRequest, install, loopback proof): {summary(pull)}")
        print(f"  local renew of a store application (key, certificate, stage, loopback proofs, switch):     {summary(local)}")
        print("  " + ratio_line("pull / local", sum(pull) / len(pull), sum(local) / len(local), "<= 1.5x"))

        at_once = int(os.environ.get("CERTMGR_BENCH_AT_ONCE", "10"))

        async def all_agents(prove: bool, batch: list):
            # at most `at_once` sessions at a time, as agents on cron with jitter arrive: 100 handshakes at the same
            # instant overrun the clients' 10 s timeout on 2 cores (the GDS handles calls on one event loop)
            slots = asyncio.Semaphore(at_once)

            async def one(a, s):
                async with slots:
                    return await agent_service._renew(a, s, s.apps[0], True, prove=prove)

            states = [(a, load_state(a.home)) for a in batch]
            outcomes = await asyncio.gather(*(one(a, s) for a, s in states))
            failed = [o for o in outcomes if not o.ok]
            if failed:
                print(f"  {len(failed)} failed, e.g. {failed[0].message}")
            for (a, s) in states:
                save_state(a.home, s)
            return sum(1 for o in outcomes if o.ok and o.action == "renewed")

        proved = agents[:min(3, count)]
        started = time.perf_counter()
        renewed = asyncio.run(all_agents(True, proved))
        elapsed = time.perf_counter() - started
        print(f"  {len(proved)} agents renewing, {at_once} at a time, each with its loopback proof (all in this one process): "
              f"{elapsed:.1f} s, {renewed / elapsed:.2f} certificates/s")
        started = time.perf_counter()
        renewed = asyncio.run(all_agents(False, agents))
        elapsed = time.perf_counter() - started
        print(f"  {count} agents renewing, {at_once} at a time, against one GDS, the GDS's part (session, trust list, CSR, FinishRequest, "
              f"install; the proof runs on each agent's own host): {elapsed:.1f} s, {renewed}/{count} renewed, "
              f"{renewed / elapsed:.2f} certificates/s")
        print("  (CERTMGR_BENCH_AGENTS=N sets N, the issue asks for 100; CERTMGR_BENCH_AT_ONCE the concurrent sessions)")
    finally:
        server.terminate()
        server.wait(20)
        server.stderr.close()
