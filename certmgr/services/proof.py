"""``certmgr verify``: prove on real loopback secure channels that current certificates work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pki
from db import queries

from ..context import AppContext
from ..errors import InputError

ROLE_SIDES = {"server": ("server",), "client": ("client",), "both": ("server", "client")}


@dataclass
class ProofReport:
    app_uri: str
    peer_uri: str
    runs: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r["ok"] for r in self.runs)

    def as_dict(self) -> dict:
        return {"app_uri": self.app_uri, "peer_uri": self.peer_uri, "ok": self.ok, "channels": self.runs}


def _application(ctx: AppContext, app_uri: str):
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None:
            raise InputError(f"no application {app_uri!r} is registered", "see `certmgr list`")
        if not app.store_path:
            raise InputError(f"{app_uri} has no store certmgr can read", "loopback proofs need the store's files")
        return app


def _verifier(ctx: AppContext):
    from .verifier import verifier_application

    with ctx.database().read() as session:
        return verifier_application(ctx, session)


def verify_pair(ctx: AppContext, app_uri: str, peer_uri: str | None, policies) -> ProofReport:
    from ..opcua.channel import prove_pair
    from ..opcua.identities import identity_from_store

    app = _application(ctx, app_uri)
    peer = _application(ctx, peer_uri) if peer_uri else _verifier(ctx)
    if peer is None:
        raise InputError("certmgr's verification identity is missing", "re-run `certmgr init` in a new home")
    report = ProofReport(app.app_uri, peer.app_uri)

    def identity(application, peer_role):
        store = pki.ApplicationStore(application.store_path, application.layout)
        return identity_from_store(store, application.app_uri, peer_role=peer_role, clock=ctx.now)

    pairs = []
    for side in ROLE_SIDES[app.role.value]:
        if side == "server":
            if peer_uri and peer.role.value == "server":
                continue
            pairs.append((app, peer))
        else:
            if peer_uri and peer.role.value == "client":
                continue
            pairs.append((peer, app))
    if not pairs:
        raise InputError(f"{app.app_uri} ({app.role.value}) and {peer.app_uri} ({peer.role.value}) cannot talk", "pair a server with a client")

    async def run() -> None:
        for server_app, client_app in pairs:
            server = identity(server_app, "client")
            client = identity(client_app, "server")
            for result in await prove_pair(server, client, policies):
                row = result.as_dict()
                row.update(server=server_app.app_uri, client=client_app.app_uri)
                report.runs.append(row)

    asyncio.run(run())
    return report
