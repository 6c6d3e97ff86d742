"""`certmgr agent`: the application's host side of the Part 12 pull model.

The key is made here and never leaves this host (it waits in the store's staging folder while the request waits
for approval). The first channel uses a self-signed certificate made from that key, with the one-time enrolment
token as user name token; later channels use the application's current certificate (ApplicationSelfAdmin).
The certificate, its issuers and the TrustList (CA certificates and CRLs) go into the store through pki's
staged, atomic switch, after a loopback proof on the store's own trust material; then the deploy hook runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import ca
import pki

from ..context import AppContext
from ..errors import CertmgrError, InputError, OperationFailed
from ..secrets import read_secret_file
from .agent_state import AgentApp, AgentState, load_state, refuse_ca_home, save_state
from .hooks import run_deploy_hook

PENDING = "BadNothingToDo"


@dataclass
class Outcome:
    app_uri: str
    action: str  # enrolled | pending | renewed | current | failed
    ok: bool = True
    message: str = ""
    thumbprint: str | None = None
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"app_uri": self.app_uri, "action": self.action, "ok": self.ok, "message": self.message,
                "thumbprint": self.thumbprint, "steps": self.steps}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


# --- the GDS's certificate: verified by the store's trust list, or pinned at first contact ---------------------

async def _gds_endpoint(ctx: AppContext, state: AgentState, app: AgentApp, accept: str | None):
    from ..opcua.faults import describe_failure
    from ..opcua.gds_client import read_endpoint
    from ..opcua.validator import StoreValidator

    try:
        endpoint = await read_endpoint(state.gds)
    except Exception as exc:
        raise OperationFailed(f"cannot reach the GDS at {state.gds}: {describe_failure(exc)[1]}",
                              "check the URL, the port (4845 by default) and that `certmgr gds serve` runs") from None
    thumb = pki.thumbprint(endpoint.certificate)
    store = pki.ApplicationStore(app.store, app.layout)
    if store.root.is_dir() and store.certificates(pki.TRUSTED):
        verdict = StoreValidator(store, "server", ctx.now).check(endpoint.certificate, None)
        if verdict.ok:
            return endpoint
    else:
        verdict = None
    wanted = (accept or "").replace(":", "").upper()
    if thumb == (state.gds_pin or "") or (len(wanted) >= 8 and thumb.startswith(wanted)):
        state.gds_pin = thumb
        return endpoint
    why = verdict.message if verdict is not None else "this host does not trust certmgr's CA yet"
    raise OperationFailed(f"cannot verify the GDS certificate {thumb} at {state.gds} ({why})",
                          f"compare it with the certificate `certmgr gds serve` prints at start on the CA host, then run again "
                          f"with --accept-gds {thumb[:16]}")


def _self_signed(key, app_uri: str, now: datetime) -> x509.Certificate:
    """The first channel's certificate: made here from the application's new key, accepted by the GDS only for a
    session with the enrolment token."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, app_uri.rsplit(":", 1)[-1][:64] or "agent")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(app_uri)]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(key, hashes.SHA256()))


def _csr(key, app_uri: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, app_uri.rsplit(":", 1)[-1][:64] or "agent")])
    return (x509.CertificateSigningRequestBuilder().subject_name(name)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(app_uri)]), False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _pending_key_path(store: pki.ApplicationStore, app_uri: str):
    return store.staging_dir / f"agent-request-{pki.safe_stem(app_uri)}.pem"


# --- enrol -----------------------------------------------------------------------------------------------------

def enrol(ctx: AppContext, *, gds: str, app_uri: str, store: str, layout: str, deploy_hook: str | None, token_file: str,
          accept_gds: str | None, wait: float | None, key_size: int = 2048, force: bool = False,
          prove: bool = True) -> Outcome:
    """First certificate of ``app_uri`` from the GDS (or the same request again, while it waits for approval)."""
    from urllib.parse import urlsplit

    refuse_ca_home(ctx.home)
    parts = urlsplit(gds)
    if parts.scheme != "opc.tcp" or not parts.hostname or not parts.port:
        raise InputError(f"--gds {gds!r} is not opc.tcp://HOST:PORT", "give it like opc.tcp://ca-host:4845")
    pki.get_layout(layout)
    ca.check_key_size(key_size)
    read_secret_file(token_file, "enrolment token")  # readable and private, before the first write
    target = pki.ApplicationStore(store, layout)
    try:
        target.check_usable()
    except pki.StoreError as exc:
        raise InputError(str(exc)) from None
    state = load_state(ctx.home)
    if state.gds and state.gds != gds:
        raise InputError(f"this agent home enrols with {state.gds}, not {gds}", "use another --home for another GDS")
    app = state.app(app_uri)
    if app is not None and app.thumbprint and not force:
        raise InputError(f"{app_uri} is enrolled already (certificate {app.thumbprint})",
                         "`certmgr agent run` renews it; `agent enrol --force` with a new token enrols it again (a revoked certificate)")
    if app is not None and force:  # a new key and a new request, authenticated by the new token
        app.thumbprint = app.request_id = None
    if app is None:
        app = AgentApp(app_uri, str(target.root.absolute()), layout, deploy_hook, str(token_file), key_size)
        state.apps.append(app)
    else:
        app.store, app.layout, app.deploy_hook, app.token_file = str(target.root.absolute()), layout, deploy_hook, str(token_file)
    state.gds = gds
    outcome = asyncio.run(_enrol(ctx, state, app, accept_gds, wait, prove=prove))
    save_state(ctx.home, state)
    if not outcome.ok:
        raise OperationFailed(f"{app_uri}: {outcome.message}")
    return outcome


async def _enrol(ctx: AppContext, state: AgentState, app: AgentApp, accept: str | None, wait: float | None, *,
                 prove: bool = True) -> Outcome:
    from ..opcua.channel import Identity
    from ..opcua.gds_client import GdsCallError, GdsClient, node_id_from_text

    outcome = Outcome(app.app_uri, "enrolled")
    store = pki.ApplicationStore(app.store, app.layout)
    endpoint = await _gds_endpoint(ctx, state, app, accept)
    store.create()
    key_path = _pending_key_path(store, app.app_uri)
    if app.request_id and key_path.exists():
        key = ca.load_private_key_pem(key_path.read_bytes())
    else:  # a new key, made on this host; written 0600 into the store's staging folder only
        key = ca.generate_rsa_key(app.key_size)
        pki.atomic_write(key_path, ca.private_key_pem(key), pki.KEY_MODE, store.staging_dir)
        app.request_id, app.pending_key = None, str(key_path)
    token = read_secret_file(app.token_file, "enrolment token").decode().strip()
    identity = Identity(app.app_uri, _self_signed(key, app.app_uri, ctx.now()), key)
    try:
        async with GdsClient(state.gds, identity, endpoint.certificate, endpoint.policies, user=(app.app_uri, token)) as gds:
            if app.app_id is None:
                found = await gds.find_application_id(app.app_uri)
                if found is None:
                    return _failed(outcome, f"{app.app_uri} is not registered on the GDS; on the CA host: "
                                            f"`certmgr app add --app-uri {app.app_uri} --deploy pull`")
                app.app_id = found.to_string()
            app_id = node_id_from_text(app.app_id)
            if app.request_id is None:
                request_id = await gds.start_signing_request(app_id, _csr(key, app.app_uri))
                app.request_id = request_id.to_string()
                outcome.steps.append(f"StartSigningRequest: request {request_id.Identifier}")
            done = await _finish(gds, app_id, node_id_from_text(app.request_id), wait)
            if done is None:
                number = node_id_from_text(app.request_id).Identifier
                outcome.action, outcome.message = "pending", (
                    f"request {number} waits for approval; on the CA host: `certmgr gds approve {number}`, "
                    f"then `certmgr agent run` (or enrol again) here")
                return outcome
            trust = await gds.read_trust_list(app_id)
    except GdsCallError as exc:
        return _failed(outcome, _explain(exc))
    await _install(ctx, app, store, key, done, trust, outcome, action="enrolled", prove=prove)
    if app.thumbprint:  # installed in own/private (a failed hook is retried, not the request); the staging copy goes
        pki.destroy_secret(key_path)
        app.request_id = app.pending_key = None
        app.token_file = None  # spent
    return outcome


async def _finish(gds, app_id, request_id, wait: float | None):
    """FinishRequest: the certificate, or None while the request waits (polling up to ``wait`` seconds)."""
    from ..opcua.gds_client import GdsCallError

    deadline = time.monotonic() + (wait or 0)
    while True:
        try:
            return await gds.finish_request(app_id, request_id)
        except GdsCallError as exc:
            if exc.status != PENDING:
                raise
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(min(2.0, max(0.2, deadline - time.monotonic())))


def _explain(exc) -> str:
    hints = {
        "BadUserAccessDenied": "the GDS refused the token or this application's certificate: make a new token with "
                               "`certmgr gds enrol-token --app-uri URI` on the CA host",
        "BadCertificateUntrusted": "the GDS does not know this certificate: enrol with a token",
        "BadCertificateRevoked": "this application's certificate is revoked: enrol again with a new token",
        "BadRequestNotAllowed": "the operator denied the request",
        "BadCertificateUriInvalid": "the CSR's ApplicationUri is not the registration's",
        "BadNotFound": "the application is not registered (or was unregistered) on the GDS",
    }
    return f"{exc.step}: {exc.status}; {hints.get(exc.status, 'see the GDS log and `certmgr gds pending`')}"


def _failed(outcome: Outcome, message: str) -> Outcome:
    outcome.ok, outcome.action, outcome.message = False, "failed", message
    return outcome


# --- install: trust list, then staged pair, loopback proof, atomic switch, hook ---------------------------------

def install_trust_list(store: pki.ApplicationStore, trust) -> int | None:
    """The GDS's CA certificates and CRLs into the store (trusted and issuer parts); each CRL replaces that CA's
    older ones (pki publish_crl never rolls back). Returns the newest CRL number written."""
    newest = None
    for kind, certs, crls in ((pki.TRUSTED, trust.TrustedCertificates, trust.TrustedCrls),
                              (pki.ISSUER, trust.IssuerCertificates, trust.IssuerCrls)):
        parsed = [pki.parse_certificate(der) for der in certs or []]
        for cert in parsed:
            if not store.holds_certificate(cert, kind):
                store.add_certificate(cert, kind)
        for der in crls or []:
            crl = x509.load_der_x509_crl(der)
            issuer = next((c for c in parsed if pki.crl_signed_by(crl, c)), None)
            number = pki.crl_number(crl)
            if issuer is None or number is None:
                continue  # a CRL without its CA (or without a number) is not what a store can keep current
            store.publish_crl(der, issuer, number, kind)
            newest = max(newest or 0, number)
    return newest


async def _install(ctx: AppContext, app: AgentApp, store: pki.ApplicationStore, key, done, trust, outcome: Outcome, *,
                   action: str, prove: bool = True) -> None:
    certificate_der, issuer_ders = done
    cert = x509.load_der_x509_certificate(certificate_der)
    if not ca.key_matches_certificate(key, cert.public_key()):
        _failed(outcome, "the GDS returned a certificate for another key")
        return
    app.crl_number = install_trust_list(store, trust)
    app.last_trust_list = _iso(ctx.now())
    chain = tuple(pki.parse_certificate(d) for d in issuer_ders)
    thumb = pki.thumbprint(cert)
    store.stage_own(cert, ca.private_key_pem(key), chain=chain)
    # prove=False only for scripts/bench.py's GDS throughput figure (the proof costs the agent's host, not the GDS)
    proof = await self_proof(ctx, store, app.app_uri, cert, key) if prove else None
    if proof is not None and not proof.ok:
        store.unstage(thumb)
        _failed(outcome, f"loopback proof failed: {proof.summary()}")
        return
    outcome.steps.append(f"loopback proof: {proof.summary()}" if proof else "loopback proof: skipped (not a client-and-server certificate)")
    with store.locked():
        before = store.own()
        store.install_own(cert, ca.private_key_pem(key), store.staged_chain(thumb), keep_history=1)
        store.unstage(thumb)
    outcome.steps.append(f"installed {thumb} into {store.root}")
    _hook(app, store, action, before.thumbprint if before else "", outcome)
    app.thumbprint, app.not_after = thumb, _iso(cert.not_valid_after_utc)
    app.last_renewal = _iso(ctx.now())
    outcome.thumbprint = thumb
    outcome.action = action


def _hook(app: AgentApp, store: pki.ApplicationStore, action: str, old_thumbprint: str, outcome: Outcome) -> None:
    """The deploy hook with store delivery's CERTMGR_* variables. A failure leaves the new certificate in place (the
    GDS has it as current already) and the hook runs again at the next `agent run`."""
    if not app.deploy_hook:
        return
    pair = store.own()
    hook = run_deploy_hook(app.deploy_hook, {
        "CERTMGR_ACTION": action, "CERTMGR_APP_URI": app.app_uri, "CERTMGR_STORE": str(store.root),
        "CERTMGR_LAYOUT": store.layout.name, "CERTMGR_THUMBPRINT": pair.thumbprint if pair else "",
        "CERTMGR_OLD_THUMBPRINT": old_thumbprint, "CERTMGR_CERT_PATH": str(pair.cert_path) if pair else "",
        "CERTMGR_KEY_PATH": str(pair.key_path) if pair else ""})
    outcome.steps.append(hook.message)
    app.hook_failed = not hook.ok
    if not hook.ok:
        outcome.ok, outcome.message = False, hook.message


async def self_proof(ctx: AppContext, store: pki.ApplicationStore, app_uri: str, cert, key):
    """The new certificate as server and as client against itself on 127.0.0.1, each side validating the other
    with the store's trust material (the CA and CRL just installed): what the application will meet. An agent has
    no verifier identity of certmgr's, so this needs a certificate for both roles; None when it is not."""
    from ..opcua.channel import POLICY_NAMES, Identity, LoopbackServer, try_channel
    from ..opcua.proofs import Proof
    from ..opcua.validator import StoreValidator

    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages:
        return None
    der = cert.public_bytes(serialization.Encoding.DER)
    server_side = Identity(app_uri, cert, key, StoreValidator(store, "client", ctx.now))
    client_side = Identity(app_uri, cert, key, StoreValidator(store, "server", ctx.now))
    proof = Proof()
    async with LoopbackServer(POLICY_NAMES[:1]) as server:
        await server.start(server_side)
        proof.channels.append(await try_channel(server.url, client_side, POLICY_NAMES[0], server_certificate=der,
                                                server_validator=server_side.validator))
    return proof


# --- run: renew inside the window as ApplicationSelfAdmin, pull the trust list each run --------------------------

def run(ctx: AppContext, *, force: bool = False) -> list[Outcome]:
    refuse_ca_home(ctx.home)
    state = load_state(ctx.home)
    if not state.apps:
        raise InputError(f"no application is enrolled in {ctx.home.root}", "enrol one with `certmgr agent enrol`")
    outcomes = []
    for app in state.apps:
        try:
            if app.thumbprint is None:
                outcome = asyncio.run(_enrol(ctx, state, app, None, None))
            else:
                outcome = asyncio.run(_renew(ctx, state, app, force))
        except CertmgrError as exc:  # this application's problem (GDS unreachable, token file gone): the others go on
            outcome = _failed(Outcome(app.app_uri, "failed"), exc.one_line())
        app.last_run, app.last_result = _iso(ctx.now()), outcome.action if outcome.ok else f"failed: {outcome.message}"[:300]
        outcomes.append(outcome)
        save_state(ctx.home, state)  # each application's result kept even when a later one crashes
    return outcomes


async def _renew(ctx: AppContext, state: AgentState, app: AgentApp, force: bool, *, prove: bool = True) -> Outcome:
    from ..opcua.gds_client import GdsCallError, GdsClient, node_id_from_text
    from ..opcua.identities import identity_from_store

    outcome = Outcome(app.app_uri, "current", thumbprint=app.thumbprint)
    store = pki.ApplicationStore(app.store, app.layout)
    endpoint = await _gds_endpoint(ctx, state, app, None)
    identity = identity_from_store(store, app.app_uri, peer_role="server", clock=ctx.now)
    identity.validator = None  # the GDS certificate was verified above by the same store
    app_id = node_id_from_text(app.app_id)
    key_path = _pending_key_path(store, app.app_uri)
    try:
        async with GdsClient(state.gds, identity, endpoint.certificate, endpoint.policies) as gds:
            trust = await gds.read_trust_list(app_id)
            number = install_trust_list(store, trust)
            if number != app.crl_number:
                outcome.steps.append(f"CRL {app.crl_number} -> {number}")
            app.crl_number, app.last_trust_list = number, _iso(ctx.now())
            if app.hook_failed:  # the last install's hook failed: the application may still serve the old pair
                _hook(app, store, "renewed", "", outcome)
                if not outcome.ok:
                    return outcome
            if app.request_id is None and not force and not await gds.update_required(app_id):
                outcome.message = "certificate current; trust list pulled"
                return outcome
            if app.request_id and key_path.exists():
                key = ca.load_private_key_pem(key_path.read_bytes())
            else:
                key = ca.generate_rsa_key(app.key_size)
                pki.atomic_write(key_path, ca.private_key_pem(key), pki.KEY_MODE, store.staging_dir)
                request_id = await gds.start_signing_request(app_id, _csr(key, app.app_uri))
                app.request_id, app.pending_key = request_id.to_string(), str(key_path)
            done = await _finish(gds, app_id, node_id_from_text(app.request_id), None)
            if done is None:
                number = node_id_from_text(app.request_id).Identifier
                outcome.action = "pending"
                outcome.message = f"renewal request {number} waits for approval (`certmgr gds approve {number}` on the CA host)"
                return outcome
    except GdsCallError as exc:
        return _failed(outcome, _explain(exc))
    await _install(ctx, app, store, key, done, trust, outcome, action="renewed", prove=prove)
    if app.thumbprint != pki.thumbprint(identity.certificate):  # installed (a failed hook is retried, not the request)
        pki.destroy_secret(key_path)
        app.request_id = app.pending_key = None
    return outcome


def status(ctx: AppContext) -> dict:
    refuse_ca_home(ctx.home)
    state = load_state(ctx.home)
    rows = []
    for app in state.apps:
        row = {k: getattr(app, k) for k in ("app_uri", "store", "layout", "thumbprint", "not_after", "last_run",
                                            "last_renewal", "last_trust_list", "crl_number", "last_result")}
        row["pending_request"] = app.request_id
        rows.append(row)
    return {"gds": state.gds, "gds_pin": state.gds_pin, "apps": rows}
