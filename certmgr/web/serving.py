"""Where and how the console listens: one check for `certmgr web serve` and `certmgr daemon` ([web] daemon = true),
uvicorn in the foreground or in a thread, and a TLS certificate that is reloaded when certmgr renews it."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

log = logging.getLogger("certmgr.web")
RELOAD_EVERY = 60.0  # seconds between looks at the TLS files (a renewal replaces them)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {text!r} is not HOST:PORT", "write it like 127.0.0.1:8440")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServePlan:
    listen: str
    host: str
    port: int
    tls_cert: Path | None
    tls_key: Path | None
    idle_seconds: float

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{self.listen}/"


def plan(settings, listen: str | None = None, tls_cert: Path | None = None, tls_key: Path | None = None) -> ServePlan:
    """The checked listening plan from the options, else [web]: exit 2 before anything starts when TLS is
    missing off loopback (the sign-in password would cross the network in clear) or the key is readable by others."""
    from ..durations import parse_duration
    from ..secrets import check_secret_file

    web = settings.web
    listen = listen or web.listen
    tls_cert = tls_cert or (Path(web.tls_cert) if web.tls_cert else None)
    tls_key = tls_key or (Path(web.tls_key) if web.tls_key else None)
    host, port = parse_listen(listen)
    if bool(tls_cert) != bool(tls_key):
        raise InputError("give both --tls-cert and --tls-key, or neither", "pass the certificate and its key")
    if not is_loopback(host) and not tls_cert:
        raise InputError(f"--listen {listen} is not a loopback address and no TLS is configured: passwords would cross the "
                         "network in clear", "pass --tls-cert FILE --tls-key FILE, or listen on 127.0.0.1")
    if tls_key:
        check_secret_file(tls_key, "TLS key")
    return ServePlan(listen, host, port, tls_cert, tls_key, parse_duration(web.idle_timeout).total_seconds())


def _server(ctx, serve_plan: ServePlan):
    import uvicorn

    from .app import make_app

    app = make_app(ctx, idle_seconds=serve_plan.idle_seconds, tls=bool(serve_plan.tls_cert))
    config = uvicorn.Config(app, host=serve_plan.host, port=serve_plan.port, log_level="warning",
                            ssl_certfile=str(serve_plan.tls_cert) if serve_plan.tls_cert else None,
                            ssl_keyfile=str(serve_plan.tls_key) if serve_plan.tls_key else None)
    return uvicorn.Server(config)


def _stamp(paths) -> tuple:
    try:
        return tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)
    except OSError:
        return ()


class CertificateReloader(threading.Thread):
    """Loads the TLS certificate and key again into the server's SSL context when their files change, so a
    certificate certmgr renews (an application with a PEM layout, e.g. node-opcua's own/certs/certificate.pem
    and own/private/private_key.pem) is served from the next handshake on, without a restart. uvicorn keeps
    the ssl.SSLContext it made at start; load_cert_chain on that same context replaces the pair it presents."""

    def __init__(self, server, serve_plan: ServePlan, every: float = RELOAD_EVERY) -> None:
        super().__init__(name="certmgr-web-tls-reload", daemon=True)
        self.server, self.plan, self.every = server, serve_plan, every
        self.stop = threading.Event()
        self.reloads = 0

    def check(self, last: tuple) -> tuple:
        paths = (self.plan.tls_cert, self.plan.tls_key)
        now = _stamp(paths)
        context = getattr(self.server.config, "ssl", None)
        if now and now != last and context is not None:
            try:
                context.load_cert_chain(str(self.plan.tls_cert), str(self.plan.tls_key))
            except (OSError, ValueError) as exc:  # half-written pair: try again at the next look, keep serving the old
                log.warning("TLS certificate %s not reloaded: %s", self.plan.tls_cert, exc)
                return last
            self.reloads += 1
            log.info("TLS certificate %s reloaded", self.plan.tls_cert)
        return now

    def run(self) -> None:
        last = _stamp((self.plan.tls_cert, self.plan.tls_key))
        while not self.stop.wait(self.every):
            last = self.check(last)


def serve_foreground(ctx, serve_plan: ServePlan, announce=None) -> None:
    """Serve until interrupted; ``announce`` runs once the app is built (the CA key loaded or refused), before it listens."""
    server = _server(ctx, serve_plan)
    if announce is not None:
        announce()
    reloader = CertificateReloader(server, serve_plan) if serve_plan.tls_cert else None
    if reloader:
        reloader.start()
    try:
        server.run()
    finally:
        if reloader:
            reloader.stop.set()


class BackgroundConsole:
    """The console in a thread of the daemon: started after the scheduler, stopped before it."""

    def __init__(self, ctx, serve_plan: ServePlan) -> None:
        self.plan = serve_plan
        self.server = _server(ctx, serve_plan)
        self.thread = threading.Thread(target=self._run, name="certmgr-web", daemon=True)
        self.reloader = CertificateReloader(self.server, serve_plan) if serve_plan.tls_cert else None

    def _run(self) -> None:
        import asyncio

        asyncio.run(self.server.serve())  # serve(), not run(): no signal handlers outside the main thread

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        if self.reloader:
            self.reloader.start()
        for _ in range(int(timeout * 20)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        if not self.server.started:
            raise InputError(f"the web console could not listen on {self.plan.listen}", "free the port or change [web] listen")

    def stop(self) -> None:
        if self.reloader:
            self.reloader.stop.set()
        self.server.should_exit = True
        self.thread.join(timeout=15)
