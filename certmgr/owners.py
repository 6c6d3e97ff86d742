"""Who holds a claim or an intent: a token naming the host, the process and that process's instance.

A PID alone is not enough (PIDs are reused, and a host reboots), so the token also carries the process's start
time (from /proc) and the boot id. A token of this host whose process instance is gone is dead at once; a token
of another host can only time out (``[renew] claim_timeout``).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from functools import cache


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its closing parenthesis
    fields = text[text.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _host() -> str:
    return socket.gethostname()


def current_owner() -> str:
    """user@host:pid:start:boot:random, at most 200 characters (the database column)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    pid = os.getpid()
    return f"{user}@{_host()}:{pid}:{_start_time(pid) or '0'}:{_boot_id()}:{secrets.token_hex(3)}"[-200:]


def is_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process of this host that certainly no longer runs."""
    if not owner:
        return True
    try:
        who, pid_text, start, boot, _ = owner.rsplit(":", 4)
        host = who.split("@", 1)[1]
        pid = int(pid_text)
    except (ValueError, IndexError):
        return False  # an older or foreign token: only the timeout can free it
    if host != _host():
        return False
    if boot != _boot_id():
        return True  # this host rebooted since
    return _start_time(pid) != start


def is_local(owner: str | None) -> bool:
    """The token names a process of this host (its liveness can be checked here)."""
    try:
        who = owner.rsplit(":", 4)[0]
        return who.split("@", 1)[1] == _host() and len(owner.rsplit(":", 4)) == 5
    except (AttributeError, IndexError):
        return False


def describe(owner: str | None) -> str:
    """user@host:pid for messages."""
    if not owner:
        return "nobody"
    parts = owner.split(":")
    return ":".join(parts[:2]) if len(parts) >= 2 else owner
