"""Server-side sessions: a random cookie names a session in memory; idle ones expire; each has a CSRF token."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "certmgr_session"


@dataclass
class Session:
    user: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self, idle_seconds: float, clock=time.monotonic) -> None:
        self.idle, self.clock = idle_seconds, clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, role: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[token] = Session(user, role, seen=self.clock())
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_id.get(token)
            if session is None:
                return None
            now = self.clock()
            if now - session.seen > self.idle:
                del self._by_id[token]
                return None
            session.seen = now
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_id.pop(token or "", None)
