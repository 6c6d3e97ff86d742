"""A single-instance lock per certmgr home, so a scheduled renewal and a manual one never interleave."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OperationFailed

log = logging.getLogger(__name__)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another certmgr process"
    except OSError:
        return "another certmgr process"


@contextmanager
def exclusive(path: Path, purpose: str, *, wait: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path``. ``wait`` None waits forever, 0 fails at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    acquired = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if wait == 0:
                raise OperationFailed(f"{holder} holds {path}", "wait for it to finish, or stop it") from None
            log.warning("waiting for %s (lock %s)", holder, path)
            deadline = None if wait is None else time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise OperationFailed(f"{holder} still holds {path} after {wait:.0f} s", "try again later") from None
                    time.sleep(0.2)
        acquired = True
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({purpose})\n".encode())
        yield
    finally:
        if acquired:
            os.ftruncate(fd, 0)
        os.close(fd)  # closing releases the flock
