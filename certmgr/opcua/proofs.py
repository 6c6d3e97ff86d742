"""Proving certificates on real secure channels: loopback proofs for a batch, live proofs on endpoints.

Loopback proof: the candidate certificate plays its role (server, client or both) against certmgr's
verification identity on 127.0.0.1; each side validates the other with its own store. Live proof: after a
switch, the application's real endpoint must present the new certificate on a SignAndEncrypt channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

import pki

from .channel import (
    DEFAULT_CHANNEL_TIMEOUT,
    POLICY_NAMES,
    ChannelResult,
    Identity,
    LoopbackServer,
    try_channel,
)

log = logging.getLogger(__name__)


@dataclass
class Proof:
    """The channels opened for one candidate; ``ok`` only if every one succeeded."""

    channels: list[ChannelResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.channels) and all(c.ok for c in self.channels)

    def failure(self) -> ChannelResult | None:
        return next((c for c in self.channels if not c.ok), None)

    def summary(self) -> str:
        failed = self.failure()
        if failed is None:
            return f"{len(self.channels)} channels ok ({', '.join(sorted({c.policy for c in self.channels}))})"
        who = {"server": "the server side", "client": "the client side"}.get(failed.side or "", "a peer")
        return f"{failed.policy}: {failed.status} from {who}: {failed.message}"


class ProofRunner:
    """Runs loopback proofs concurrently (bounded), reusing asyncua servers between proofs.

    An asyncua server takes two to three seconds to initialise (it builds the standard address space)
    while a proof's three channels take about 50 ms, and client, server and crypto all share one thread:
    so server-role proofs borrow one of at most ``max_servers`` servers (default one) and switch its
    identity; client-role proofs share one verifier server. Concurrency pays off for the waiting parts.
    """

    def __init__(
        self,
        verifier_client: Identity,
        verifier_server: Identity,
        *,
        policies: Sequence[str] = POLICY_NAMES,
        concurrency: int = 4,
        max_servers: int = 1,
        timeout: float = DEFAULT_CHANNEL_TIMEOUT,
    ) -> None:
        self.verifier_client = verifier_client  # validates candidate servers (peer role "server")
        self.verifier_server = verifier_server  # validates candidate clients (peer role "client")
        self.policies = tuple(policies)
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._max_servers = max(1, max_servers)
        self._idle: asyncio.Queue[LoopbackServer] = asyncio.Queue()
        self._all: list[LoopbackServer] = []
        self._starting = 0
        self._verifier_server: LoopbackServer | None = None
        self._verifier_lock = asyncio.Lock()

    async def __aenter__(self) -> ProofRunner:
        return self

    async def __aexit__(self, *exc) -> None:
        for server in self._all:
            await server.stop()

    async def _borrow(self, identity: Identity) -> LoopbackServer:
        if self._idle.empty() and self._starting + len(self._all) - self._verifier_count() < self._max_servers:
            self._starting += 1
            try:
                server = await LoopbackServer(self.policies).start(identity)
            finally:
                self._starting -= 1
            self._all.append(server)
            return server
        server = await self._idle.get()
        await server.use(identity)
        return server

    def _verifier_count(self) -> int:
        return 1 if self._verifier_server is not None else 0

    async def _verifier_endpoint(self) -> LoopbackServer:
        async with self._verifier_lock:
            if self._verifier_server is None:
                self._verifier_server = await LoopbackServer(self.policies).start(self.verifier_server)
                self._all.append(self._verifier_server)
            return self._verifier_server

    async def prove(self, as_server: Identity | None, as_client: Identity | None) -> Proof:
        """Prove a candidate in the roles given: as a server (its validator checks clients) and/or as a
        client (its validator checks servers). Both identities carry the same certificate and key."""
        proof = Proof()
        async with self._slots:
            if as_server is not None:
                server = await self._borrow(as_server)
                try:
                    for policy in self.policies:
                        proof.channels.append(
                            await try_channel(
                                server.url, self.verifier_client, policy, server_certificate=as_server.certificate_der,
                                server_validator=as_server.validator, timeout=self.timeout,
                            )
                        )
                finally:
                    self._idle.put_nowait(server)
            if as_client is not None:
                verifier_server = await self._verifier_endpoint()
                for policy in self.policies:
                    proof.channels.append(
                        await try_channel(
                            verifier_server.url, as_client, policy, server_certificate=self.verifier_server.certificate_der,
                            server_validator=self.verifier_server.validator, timeout=self.timeout,
                        )
                    )
        return proof


@dataclass
class LiveProof:
    ok: bool
    seen: str | None  # thumbprint the endpoint presented last
    attempts: int
    message: str
    channels: list[ChannelResult] = field(default_factory=list)


async def endpoint_certificate(url: str, timeout: float = DEFAULT_CHANNEL_TIMEOUT):
    """(server certificate, SignAndEncrypt RSA policies offered) from GetEndpoints (probe's one reading of it)."""
    from .probe import read_endpoint  # probe imports this module: the import waits for the call

    read = await read_endpoint(url, timeout)
    return read.certificate, read.secure_policies


async def await_new_certificate(
    url: str, verifier: Identity, expected_thumbprint: str, *, timeout: float, poll: float = 1.0,
    user: tuple[str, str] | None = None,
) -> LiveProof:
    """Poll the endpoint until it presents ``expected_thumbprint``, then open a SignAndEncrypt channel
    with every RSA policy it offers. Servers take a moment to reload and drop channels meanwhile."""
    from .faults import describe_failure

    deadline = time.monotonic() + timeout
    attempts, seen, message = 0, None, "no answer yet"
    while True:
        attempts += 1
        try:
            certificate, policies = await endpoint_certificate(url, timeout=min(10.0, max(1.0, timeout)))
            seen = pki.thumbprint(certificate)
            if seen == expected_thumbprint.upper():
                channels = [
                    await try_channel(url, verifier, policy, server_certificate=_der(certificate), timeout=10.0, user=user)
                    for policy in (policies or ["Basic256Sha256"])
                ]
                failed = next((c for c in channels if not c.ok), None)
                if failed is None:
                    return LiveProof(True, seen, attempts, f"{url} presents {seen} on {len(channels)} secure channel(s)", channels)
                message = f"{url} presents the new certificate but {failed.policy} failed: {failed.status} ({failed.message})"
            else:
                message = f"{url} still presents {seen}"
        except Exception as exc:  # a restarting server refuses or drops connections for a while
            message = f"{url}: {describe_failure(exc)[1]}"
        if time.monotonic() + poll > deadline:
            return LiveProof(False, seen, attempts, f"after {timeout:.0f} s: {message}")
        await asyncio.sleep(poll)


def _der(certificate: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.DER)
