"""The OPC UA conversations of fleet trust: GetEndpoints-only reads, FindServers scans, canary probes.

Reads open no session (a peer's certificate and offered policies come from GetEndpoints on an
unauthenticated channel). A probe opens two SignAndEncrypt channels with sessions: certmgr's verifier
identity (must be accepted: the endpoint trusts certmgr's CA), then canaries (revoked in CRL n; refused
means the endpoint holds CRL n or newer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cryptography import x509

import pki

from .channel import DEFAULT_CHANNEL_TIMEOUT, POLICY_NAMES, ChannelResult, Identity, policy_name, try_channel
from .proofs import _der

WEAK_POLICIES = ("Basic128Rsa15", "Basic256")
# A canary refusal counts as proof only after the verifier identity was accepted on the same endpoint
# and policy: both are issued by the same CA with the same profile and differ only in revocation. Stacks
# hide the reason (UA-.NET: BadSecurityChecksFailed; node-opcua 2.157 sends an ERR message with an
# invalid code and closes, which asyncua reports as BadSecureChannelClosed), so any refusal but the
# statuses of an endpoint that did not answer counts; the statuses seen are reported.
UNREACHABLE_STATUSES = ("BadTimeout", "BadCommunicationError", "BadConnectionClosed", "BadServerNotConnected",
                        "BadNotConnected", "BadConnectionRejected", "BadTcpInternalError")
MAX_CANARY_ATTEMPTS = 4


@dataclass
class EndpointRead:
    url: str
    certificate: x509.Certificate
    offered: list[str]  # "Policy/Mode"
    flags: list[str]
    secure_policies: list[str]  # SignAndEncrypt RSA policies certmgr can use, best first


def _flags(pairs: list[tuple[str, str]]) -> list[str]:
    flags = []
    for policy, mode in pairs:
        if policy == "None" or mode == "None":
            flags.append(f"{policy}/{mode}: no security (anyone can connect unauthenticated)")
        elif policy in WEAK_POLICIES:
            flags.append(f"{policy}/{mode}: deprecated policy (SHA-1)")
    return sorted(set(flags))


async def read_endpoint(url: str, timeout: float = DEFAULT_CHANNEL_TIMEOUT) -> EndpointRead:
    """The server certificate and what the endpoint offers, from one GetEndpoints (no session)."""
    from asyncua import Client, ua
    from asyncua.crypto import uacrypto

    endpoints = await asyncio.wait_for(Client(url, timeout=timeout).connect_and_get_server_endpoints(), timeout)
    # asyncua spells MessageSecurityMode.None as "None_" (a Python keyword)
    pairs = [(policy_name(e.SecurityPolicyUri), e.SecurityMode.name.rstrip("_")) for e in endpoints]
    with_cert = [e for e in endpoints if e.ServerCertificate]
    if not with_cert:
        raise ConnectionError(f"{url} lists no endpoint with a certificate")
    secure = [e for e in with_cert if e.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt
              and policy_name(e.SecurityPolicyUri) in POLICY_NAMES]
    chosen = (secure or with_cert)[0]
    policies = sorted({policy_name(e.SecurityPolicyUri) for e in secure}, key=POLICY_NAMES.index)
    return EndpointRead(url, uacrypto.x509_from_der(chosen.ServerCertificate),
                        sorted({f"{p}/{m}" for p, m in pairs}), _flags(pairs), policies)


async def find_servers(url: str, timeout: float = DEFAULT_CHANNEL_TIMEOUT) -> list[dict]:
    """FindServers on ``url`` (an LDS or any server): one entry per server and discovery URL."""
    from asyncua import Client

    client = Client(url, timeout=timeout)
    await asyncio.wait_for(client.connect_socket(), timeout)
    try:
        await client.send_hello()
        await client.open_secure_channel()
        try:
            servers = await asyncio.wait_for(client.find_servers(), timeout)
        finally:
            await client.close_secure_channel()
    finally:
        client.disconnect_socket()
    found = []
    for server in servers:
        urls = list(server.DiscoveryUrls or []) or [url]
        for discovery in urls:
            found.append({"app_uri": server.ApplicationUri, "name": server.ApplicationName.Text, "discovery_url": discovery})
    return found


@dataclass
class ProbeOutcome:
    endpoint: str
    trusts_ca: bool | None
    crl_effective: int | None
    crl_current: int | None
    statuses: list[str] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    fix: str | None = None
    server_thumbprint: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.trusts_ca) and self.crl_current is not None and self.crl_effective == self.crl_current

    def as_dict(self) -> dict:
        return {"endpoint": self.endpoint, "trusts_ca": self.trusts_ca, "crl_effective": self.crl_effective,
                "crl_current": self.crl_current, "statuses": self.statuses, "attempts": self.attempts,
                "server_thumbprint": self.server_thumbprint, "ok": self.ok, "fix": self.fix}


def _fix(outcome: ProbeOutcome, good: ChannelResult | None, newest_canary: int | None) -> str | None:
    if outcome.trusts_ca is None:
        return "the endpoint did not answer: check that the server runs and the URL (certmgr peer show)"
    if not outcome.trusts_ca:
        if good is not None and good.status == "BadCertificateRevocationUnknown":
            return "the server trusts certmgr's CA but has no current CRL of it: deliver the CRL (certmgr crl refresh, or store import into its store) and reload the server"
        return "the server does not trust certmgr's CA: deliver the CA and CRL (certmgr trust-exchange / store import --crl) or push the TrustList (certmgr push)"
    if outcome.crl_current is None or outcome.crl_effective == outcome.crl_current:
        return None
    if newest_canary is not None and newest_canary < outcome.crl_current:
        return (f"this node holds no canary key for CRL {outcome.crl_current} (signed by another node): probe from that node")
    held = f"CRL {outcome.crl_effective}" if outcome.crl_effective else "no CRL that revokes a canary"
    return (f"the server runs with {held}, current is {outcome.crl_current}: deliver the CRL (certmgr crl refresh; "
            "push the TrustList for a push server), then reload or restart the server so it reads it")


async def probe_endpoint(url: str, good: Identity, canaries: list[tuple[int, Identity]], crl_current: int | None,
                         *, timeout: float = DEFAULT_CHANNEL_TIMEOUT) -> ProbeOutcome:
    """Two SignAndEncrypt attempts at least: ``good`` then the newest canary; when the newest canary is
    accepted, a binary search over older canaries (refusal is monotonic: holding CRL k refuses every
    canary <= k), at most MAX_CANARY_ATTEMPTS canary channels, so a server far behind costs a bounded
    number of handshakes and the answer is still a proven lower bound."""
    from .faults import describe_failure

    outcome = ProbeOutcome(url, None, None, crl_current)
    try:
        read = await read_endpoint(url, timeout)
    except Exception as exc:  # unreachable, refused, not OPC UA: all become the outcome's status
        status, message = describe_failure(exc)
        outcome.statuses.append(status)
        outcome.attempts.append({"identity": "GetEndpoints", "status": status, "message": message})
        outcome.fix = _fix(outcome, None, None)
        return outcome
    outcome.server_thumbprint = pki.thumbprint(read.certificate)
    policy = (read.secure_policies or ["Basic256Sha256"])[0]
    server_der = _der(read.certificate)

    async def attempt(label: str, identity: Identity) -> ChannelResult:
        result = await try_channel(url, identity, policy, server_certificate=server_der, timeout=timeout)
        outcome.statuses.append(result.status)
        outcome.attempts.append({"identity": label, "policy": policy, "status": result.status, "ok": result.ok})
        return result

    good_result = await attempt("verifier", good)
    if not good_result.ok:
        outcome.trusts_ca = None if good_result.status in UNREACHABLE_STATUSES else False
        outcome.fix = _fix(outcome, good_result, None)
        return outcome
    outcome.trusts_ca = True
    if not canaries:
        outcome.fix = "no canary key in this home yet: sign a CRL (certmgr crl refresh) and probe again"
        return outcome
    refused = lambda r: not r.ok and r.status not in UNREACHABLE_STATUSES  # noqa: E731
    newest_number, newest = canaries[0]
    if refused(await attempt(f"canary {newest_number}", newest)):
        outcome.crl_effective = newest_number
    else:
        # canaries[1:] newest first; find the first (newest) index refused.
        lo, hi, left, best = 1, len(canaries) - 1, MAX_CANARY_ATTEMPTS - 1, None
        while lo <= hi and left > 0:
            mid = (lo + hi) // 2
            number, identity = canaries[mid]
            left -= 1
            if refused(await attempt(f"canary {number}", identity)):
                best, hi = number, mid - 1
            else:
                lo = mid + 1
        outcome.crl_effective = best
    outcome.fix = _fix(outcome, good_result, newest_number)
    return outcome


async def probe_many(targets: list[str], good: Identity, canaries: list[tuple[int, Identity]], crl_current: int | None,
                     *, concurrency: int = 8, timeout: float = DEFAULT_CHANNEL_TIMEOUT) -> list[ProbeOutcome]:
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(url: str) -> ProbeOutcome:
        async with slots:
            return await probe_endpoint(url, good, canaries, crl_current, timeout=timeout)

    return list(await asyncio.gather(*(one(url) for url in targets)))
