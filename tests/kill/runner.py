"""Build the LD_PRELOAD shim and run ``python -m certmgr`` under it, killed before its k-th mutation."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIM_SOURCE = Path(__file__).with_name("shim.c")
PASSPHRASE = "kill harness passphrase"


class ShimUnavailable(RuntimeError):
    pass


def build_shim(directory: Path) -> Path:
    """Compile shim.c into ``directory`` (once per source version: the name carries its hash)."""
    source = SHIM_SOURCE.read_bytes()
    target = Path(directory) / f"certmgr-kill-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.exists():
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ShimUnavailable("the kill harness needs gcc (or cc) to build its LD_PRELOAD shim")
    Path(directory).mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial), str(SHIM_SOURCE), "-ldl"],
                   check=True, capture_output=True)
    partial.replace(target)
    return target


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    mutations: list[str]  # "<n> <op> <path>" of each mutation the shim saw (when logging)

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def run_certmgr(home: Path, args: list[str], *, shim: Path | None = None, kill_at: int | None = None,
                log: Path | None = None, timeout: float = 180) -> Run:
    """``certmgr ARGS`` in a child process against ``home``; under the shim when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTMGR_", "LD_PRELOAD"))}
    env.update(CERTMGR_HOME=str(home), CERTMGR_CA_PASSPHRASE=PASSPHRASE, PYTHONPATH=str(ROOT),
               PYTHONDONTWRITEBYTECODE="1")  # a .pyc written by the child would be a mutation of its own
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
        if kill_at:
            env["CERTMGR_KILL_AT"] = str(kill_at)
        if log is not None:
            log.unlink(missing_ok=True)
            env["CERTMGR_KILL_LOG"] = str(log)
    done = subprocess.run([sys.executable, "-m", "certmgr", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    mutations = log.read_text().splitlines() if log is not None and log.exists() else []
    return Run(list(args), done.returncode, done.stdout, done.stderr, mutations)
