"""The operations the kill harness sweeps, and one trial: restore a prepared home, run the command killed
before its k-th mutation, check the invariants, run the follow-up, check them again.

A workspace is one folder holding the home (``home/``) and the stores (``stores/<name>``). Stores are
registered by absolute path, so a prepared state is restored into the SAME folder (remove, copy back a
pristine copy) rather than copied elsewhere.

Follow-up: the same command again (what an operator or cron does after a crash: run it again); for
``revoke`` then also ``crl refresh`` (revoking twice changes nothing, so a revocation committed before the
kill reaches the stores through the refresh, as the daemon's CRL job would do). The goal check then says
whether the operation's effect was reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import invariants
from .invariants import DbView, Snapshot
from .runner import Run, run_certmgr

INIT = ["init", "--ca-name", "Kill CA", "--org", "Kill", "--ca-key-size", "2048"]
HOSTS = ["--dns", "localhost", "--ip", "127.0.0.1"]
BATCH_URIS = ("urn:kill:batch1", "urn:kill:batch2", "urn:kill:batch3")
PUSH_PASSWORDS = {"admin": "kill-admin-pw", "operator": "kill-operator-pw"}


class Workspace:
    """A home and its stores under ``root``, with pristine copies of the prepared states to restore."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pristine: dict[str, Path] = {}
        self.push_port = 0  # set when the push state is prepared

    @property
    def home(self) -> Path:
        return self.root / "home"

    def store(self, name: str) -> Path:
        return self.root / "stores" / name

    def _reset(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def prepare(self) -> None:
        """The two states every scenario starts from: ``empty`` and ``fleet`` (a CA and three stores)."""
        self._reset()
        self.root.mkdir(parents=True)
        self._keep("empty")
        for args in (
            INIT,
            ["issue", "--app-uri", "urn:kill:a", "--store", str(self.store("a")), *HOSTS],
            ["issue", "--app-uri", "urn:kill:b", "--store", str(self.store("b")), "--layout", "node-opcua", *HOSTS],
            ["issue", "--app-uri", "urn:kill:c", "--store", str(self.store("c")), *HOSTS],
        ):
            run = run_certmgr(self.home, args)
            if run.returncode != 0:
                raise RuntimeError(f"preparing the kill workspace: certmgr {' '.join(args)} exited {run.returncode}: {run.stderr}")
        (self.root / "batch.csv").write_text(
            "app_uri,store,dns,ip\n" + "".join(f"{uri},{self.store(uri.rsplit(':', 1)[1])},localhost,127.0.0.1\n" for uri in BATCH_URIS)
        )
        self._keep("fleet")

    def prepare_push(self) -> None:
        """The ``push`` state: the fleet plus a node-opcua push server (its PKI folder under the workspace, so a
        restore resets it too) registered with deployment push and already serving a certificate of certmgr's."""
        if "push" in self.pristine:
            return
        from tests.helpers import NODE_PUSH_DIR, NODE_PUSH_URI, npm_installed

        npm_installed(NODE_PUSH_DIR, "node-opcua-server-configuration")
        self.restore("fleet")
        with socket.socket() as probe:  # one fixed port: the registration names it, every trial's server reuses it
            probe.bind(("127.0.0.1", 0))
            self.push_port = probe.getsockname()[1]
        self.push_pki.mkdir()
        crl = next((self.home / "verifier" / "trusted" / "crl").iterdir())
        admin = self.root / "admin.pass"
        admin.write_text(PUSH_PASSWORDS["admin"] + "\n")
        admin.chmod(0o600)
        self._run(["store", "import", str(self.push_pki), str(self.home / "ca" / "ca.der"), "--trusted", "--crl", str(crl),
                   "--layout", "node-opcua"])
        with self.push_server():
            self._run(["app", "add", "--app-uri", NODE_PUSH_URI, "--endpoint", f"opc.tcp://127.0.0.1:{self.push_port}",
                       "--deploy", "push", "--admin-user", "admin", "--admin-password-file", str(admin), *HOSTS])
            from certmgr.opcua.proofs import endpoint_certificate

            import pki

            served, _ = asyncio.run(endpoint_certificate(f"opc.tcp://127.0.0.1:{self.push_port}"))
            self._run(["push", "--app-uri", NODE_PUSH_URI, "--accept-server", pki.thumbprint(served)])
        self._keep("push")

    @property
    def push_pki(self) -> Path:
        return self.root / "node-pki"

    @contextlib.contextmanager
    def push_server(self):
        from tests.helpers import NodeServer

        server = NodeServer(self.push_pki, PUSH_PASSWORDS, port=self.push_port)
        try:
            yield server
        finally:
            server.stop()

    def _run(self, args: list[str]) -> None:
        run = run_certmgr(self.home, args)
        if run.returncode != 0:
            raise RuntimeError(f"preparing the kill workspace: certmgr {' '.join(args)} exited {run.returncode}: {run.stderr}")

    def _keep(self, state: str) -> None:
        target = self.root.with_name(f"{self.root.name}.{state}")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(self.root, target, symlinks=True)
        self.pristine[state] = target

    def restore(self, state: str) -> None:
        self._reset()
        shutil.copytree(self.pristine[state], self.root, symlinks=True)

    def active_thumbprint(self, app_uri: str) -> str:
        view = invariants.read_database(self.home)
        return next(c["thumbprint"] for c in view.certificates if c["app_uri"] == app_uri and c["status"] == "active")


Goal = Callable[[DbView, Snapshot], list[str]]


def _active_changed(app_uri: str) -> Goal:
    def goal(view: DbView, before: Snapshot) -> list[str]:
        active = [c["thumbprint"] for c in view.certificates if c["app_uri"] == app_uri and c["status"] == "active"]
        if not active or active[0] == before.actives.get(app_uri):
            return [f"goal: {app_uri} has no new active certificate"]
        return []
    return goal


def _registered(*uris: str) -> Goal:
    def goal(view: DbView, before: Snapshot) -> list[str]:
        active = {c["app_uri"] for c in view.certificates if c["status"] == "active"}
        return [f"goal: {uri} has no active certificate" for uri in uris if uri not in active]
    return goal


def _revoked(app_uri: str) -> Goal:
    def goal(view: DbView, before: Snapshot) -> list[str]:
        thumb = before.actives.get(app_uri)
        status = next((c["status"] for c in view.certificates if c["thumbprint"] == thumb), None)
        return [] if status == "revoked" else [f"goal: {app_uri}'s certificate {thumb} is {status}, not revoked"]
    return goal


def _new_crl(view: DbView, before: Snapshot) -> list[str]:
    return [] if view.crl_number > before.db_crl_number else [f"goal: no CRL after number {before.db_crl_number}"]


def _no_goal(view: DbView, before: Snapshot) -> list[str]:
    return []  # init's goal is the settled home itself (invariants' init-incomplete)


@dataclass(frozen=True)
class Scenario:
    name: str
    state: str  # the prepared state it starts from
    command: Callable[[Workspace], list[str]]
    goal: Goal
    stores: dict[str, str] = field(default_factory=dict)  # target stores to inspect even if unregistered
    sample: int = 2  # kill points in the CI sample (scripts/bench.py kill sweeps every one); CI stays under 15 min
    then: tuple[tuple[str, ...], ...] = ()  # follow-up commands after the same command again
    settled_check: Callable[[Workspace], list[str]] | None = None  # a goal beyond the database (another home)
    server: bool = False  # the push server runs around the killed command and its follow-up (state ``push``)

    def running(self, ws: Workspace):
        return ws.push_server() if self.server else contextlib.nullcontext()

    def follow_up(self, args: list[str]) -> list[list[str]]:
        """``args``: the killed command, computed before it ran (revoke's target is read from the database)."""
        return [args, *[list(then) for then in self.then]]

    def target_stores(self, ws: Workspace) -> dict[str, str]:
        return {str(ws.store(name)): layout for name, layout in self.stores.items()}


def _join(ws: Workspace) -> list[str]:
    """A second node joining the workspace's database and CA files (SQLite here: one host, the same file)."""
    return ["--home", str(ws.root / "node-b"), "--db", f"sqlite:///{ws.home / 'certmgr.db'}", "init", "--join",
            "--ca-cert", str(ws.home / "ca" / "ca.der"), "--ca-key", str(ws.home / "ca" / "private" / "ca-key.pem"),
            "--node", "node-b"]


def _joined(ws: Workspace) -> list[str]:
    """The joined home works: its settings are there, its marker is gone, a command that needs the CA runs."""
    node = ws.root / "node-b"
    problems = [] if (node / "certmgr.toml").exists() else ["goal: node-b has no certmgr.toml"]
    if (node / "init.incomplete").exists():
        problems.append("goal: node-b still holds init.incomplete")
    shown = run_certmgr(node, ["--db", f"sqlite:///{ws.home / 'certmgr.db'}", "ca", "show"])
    if shown.returncode != 0:
        problems.append(f"goal: `ca show` on node-b exited {shown.returncode}: {shown.stderr.strip()[:160]}")
    return problems


def _serves_active(ws: Workspace) -> list[str]:
    """Push: the server serves the certificate the database names active (a kill cut neither side's view)."""
    from certmgr.opcua.proofs import endpoint_certificate
    from tests.helpers import NODE_PUSH_URI

    import pki

    served, _ = asyncio.run(endpoint_certificate(f"opc.tcp://127.0.0.1:{ws.push_port}"))
    active = ws.active_thumbprint(NODE_PUSH_URI)
    return [] if pki.thumbprint(served) == active else [
        f"push-served: the server serves {pki.thumbprint(served)[:12]}, the database's active is {active[:12]}"]


def _renew(app: str, *extra: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["renew", "--app-uri", f"urn:kill:{app}", "--force", *extra]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("init", "empty", lambda ws: INIT, _no_goal),
    Scenario("issue", "fleet", lambda ws: ["issue", "--app-uri", "urn:kill:new", "--store", str(ws.store("new")), *HOSTS],
             _registered("urn:kill:new"), {"new": "ua-net"}),
    Scenario("issue-force", "fleet",
             lambda ws: ["issue", "--app-uri", "urn:kill:a", "--store", str(ws.store("a")), *HOSTS, "--force"],
             _active_changed("urn:kill:a")),
    Scenario("issue-batch", "fleet", lambda ws: ["issue", "--batch", str(ws.root / "batch.csv")],
             _registered(*BATCH_URIS), {uri.rsplit(":", 1)[1]: "ua-net" for uri in BATCH_URIS}),
    Scenario("renew-ua-net", "fleet", _renew("a", "--no-verify"), _active_changed("urn:kill:a")),
    Scenario("renew-node-opcua", "fleet", _renew("b", "--no-verify"), _active_changed("urn:kill:b")),
    Scenario("renew-proof", "fleet", _renew("c"), _active_changed("urn:kill:c"), sample=1),
    Scenario("revoke", "fleet",
             lambda ws: ["revoke", ws.active_thumbprint("urn:kill:c"), "--reason", "keyCompromise", "--yes"],
             _revoked("urn:kill:c"), sample=1, then=(("crl", "refresh"),)),
    Scenario("crl-refresh", "fleet", lambda ws: ["crl", "refresh", "--force"], _new_crl),
    Scenario("init-join", "fleet", _join, _registered("urn:certmgr:verifier:node-b"), sample=1, settled_check=_joined),
    Scenario("renew-push", "push", lambda ws: ["renew", "--app-uri", "urn:certmgr:test:nodeopcua-server", "--force"],
             _active_changed("urn:certmgr:test:nodeopcua-server"), sample=1, settled_check=_serves_active, server=True),
)}


@dataclass
class Trial:
    k: int
    point: str  # the mutation the process was killed before
    killed: bool
    violations: list[str]  # "killed: ..." (right after the kill) and "settled: ..." (after the follow-up)
    seconds: float


def kill_points(ws: Workspace, scenario: Scenario, shim: Path) -> list[str]:
    """The mutations of an unkilled run (its length is N, each names a kill point)."""
    if scenario.state == "push":
        ws.prepare_push()
    ws.restore(scenario.state)
    with scenario.running(ws):
        run = run_certmgr(ws.home, scenario.command(ws), shim=shim, log=ws.root.with_name(ws.root.name + ".log"))
    if run.returncode != 0:
        raise RuntimeError(f"{scenario.name}: the unkilled run exited {run.returncode}: {run.stderr.strip()}")
    return run.mutations


def trial(ws: Workspace, scenario: Scenario, k: int, shim: Path, point: str = "") -> Trial:
    started = time.perf_counter()
    if scenario.state == "push":
        ws.prepare_push()
    ws.restore(scenario.state)
    extra = scenario.target_stores(ws)
    args = scenario.command(ws)
    before = invariants.snapshot(ws.home, extra)
    with scenario.running(ws):
        killed = run_certmgr(ws.home, args, shim=shim, kill_at=k)
        violations = [f"killed: {v}" for v in invariants.check(
            ws.home, before, phase=invariants.KILLED, stderrs=[killed.stderr], extra_stores=extra)]
        follows: list[Run] = [run_certmgr(ws.home, follow) for follow in scenario.follow_up(args)]
        settled = invariants.check(ws.home, before, phase=invariants.SETTLED,
                                   stderrs=[killed.stderr, *[f.stderr for f in follows]], extra_stores=extra)
        view = invariants.read_database(ws.home)
        if view is not None:
            settled += scenario.goal(view, before)
        if scenario.settled_check is not None:
            settled += scenario.settled_check(ws)
    violations += [f"settled: {v}" for v in settled]
    return Trial(k, point, killed.killed, violations, time.perf_counter() - started)


def sample(n: int, count: int, seed: str) -> list[int]:
    """``count`` points spread over 1..n, one seeded pick inside each of ``count`` equal slices (the same points in
    every run, so a failure is reproduced by its k). No point is forced: the exhaustive sweep covers every one."""
    if n <= count:
        return list(range(1, n + 1))
    rng = random.Random(seed)
    width = n / count
    return sorted({rng.randint(1 + int(i * width), max(1 + int(i * width), int((i + 1) * width))) for i in range(count)})


def code_of(violation: str) -> str:
    """'settled: own-pair: a: ...' -> 'own-pair'."""
    parts = violation.split(": ")
    return parts[1] if len(parts) > 1 else parts[0]
