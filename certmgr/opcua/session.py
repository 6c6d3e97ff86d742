"""A connection attempt taken stage by stage (TCP, secure channel, session, user), so a failure can be
reported with the stage and the side that refused."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cryptography import x509

import pki

from .channel import DEFAULT_CHANNEL_TIMEOUT, Identity, policy_class

log = logging.getLogger(__name__)

TCP, CHANNEL, SESSION, USER = "tcp", "secure channel", "session", "user"


@dataclass
class Attempt:
    ok: bool
    policy: str
    stage: str  # the stage that failed, or USER when everything worked
    status: str = "Good"
    side: str | None = None  # "client" (we refused the server) or "server" (the server refused us)
    message: str = ""
    server_thumbprint: str | None = None
    client: object = None  # the connected asyncua Client when asked to keep it open

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "policy": self.policy, "failed_stage": None if self.ok else self.stage, "status": self.status,
            "refused_by": self.side, "message": self.message, "server_thumbprint": self.server_thumbprint,
        }


async def attempt_session(
    url: str,
    identity: Identity,
    policy: str,
    server_certificate: x509.Certificate,
    *,
    user: tuple[str, str] | None = None,
    server_app_uri: str | None = None,
    timeout: float = DEFAULT_CHANNEL_TIMEOUT,
    sign_only: bool = False,
    keep: bool = False,
) -> Attempt:
    from asyncua import Client, ua

    from .faults import describe_failure, install_service_fault_decoding

    install_service_fault_decoding()
    client = Client(url, timeout=timeout)
    client.application_uri = identity.app_uri
    client.name = "certmgr diagnose"
    # parsed objects, not bytes: see open_session in channel.py
    mode = ua.MessageSecurityMode.Sign if sign_only else ua.MessageSecurityMode.SignAndEncrypt
    client.security_policy = policy_class(policy)(
        server_certificate, identity.certificate, identity.private_key, mode, host_cert_chain=[]
    )
    client.uaclient.set_security(client.security_policy)
    validator = identity.validator
    if validator is not None:
        validator.forget()
        client.certificate_validator = validator
    thumb = pki.thumbprint(server_certificate)
    if validator is not None:
        # Clients check the server certificate from GetEndpoints before opening a channel (UA-.NETStandard
        # does); asyncua would only check it after CreateSession, when the server has judged us first.
        verdict = validator.check(server_certificate, server_app_uri)
        if not verdict.ok:
            return Attempt(False, policy, CHANNEL, verdict.status, "client", verdict.message, thumb)
    stage = TCP
    try:
        await asyncio.wait_for(client.connect_socket(), timeout)
        stage = CHANNEL
        await asyncio.wait_for(client.send_hello(), timeout)
        await asyncio.wait_for(client.open_secure_channel(), timeout)
        stage = SESSION
        await asyncio.wait_for(client.create_session(), timeout)
        stage = USER
        await asyncio.wait_for(
            client.activate_session(username=user[0] if user else None, password=user[1] if user else None), timeout
        )
        await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
        if keep:
            kept, client = client, None  # the caller closes it (close_attempt)
            return Attempt(True, policy, USER, server_thumbprint=thumb, message="secure session established", client=kept)
        return Attempt(True, policy, USER, server_thumbprint=thumb, message="secure session established")
    except Exception as exc:  # every failure is reported with its stage and status code
        status, message = describe_failure(exc)
        refusal = validator.refusal_for(None) if validator is not None else None
        side = "client" if refusal is not None and stage in (CHANNEL, SESSION) else "server"
        if side == "client":
            status, message = refusal.status, refusal.message
        return Attempt(False, policy, stage, status, side if stage != TCP else None, message, thumb)
    finally:
        if client is not None:
            await _close(client)


async def close_attempt(attempt: Attempt) -> None:
    if attempt.client is not None:
        await _close(attempt.client)
        attempt.client = None


async def _close(client) -> None:
    for step in ("close_session", "close_secure_channel"):
        try:
            await asyncio.wait_for(getattr(client, step)(), 2)
        except Exception:
            pass
    try:
        client.disconnect_socket()
    except Exception:
        pass
