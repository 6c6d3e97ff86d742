"""The renewal pipeline's *store* delivery: certmgr writes the application's store folder.

Per batch: keys in parallel -> per item: certificate, pending row (the intent), staged pair in own/staged ->
loopback proofs (concurrent) -> per item: atomic switch, deploy hook -> live proofs on endpoints (concurrent).
A failure leaves or puts back the previous pair; ``settle`` makes a failed item whole.
"""

from __future__ import annotations

import asyncio
import logging

import ca
import db
import pki

from ..context import AppContext
from . import lifecycle, windows
from .hooks import run_deploy_hook
from .keygen import generate_keys
from .renewal_plan import touch
from .verifier import verifier_identity_uri, verifier_store

log = logging.getLogger(__name__)


def identity_of(c) -> ca.ApplicationIdentity:
    return ca.ApplicationIdentity(c.app_uri, ca.SubjectFields(c.name, c.organization), tuple(c.dns_names), tuple(c.ip_addresses))


class StoreDelivery:
    def __init__(self, ctx: AppContext, issuer: ca.Issuer, options, progress) -> None:
        self.ctx, self.issuer, self.options, self.progress = ctx, issuer, options, progress

    def _advance(self, item) -> None:
        if self.progress is not None:
            self.progress.advance(item.candidate.app_uri)

    def _touch(self, work) -> None:
        if work:
            touch(self.ctx, [w.candidate.app_id for w in work], work[0].token)

    def run(self, work: list) -> None:
        from .renewal import guarded

        if not work:
            return
        keys = generate_keys([w.candidate.key_size for w in work])
        for item, key in zip(work, keys):
            if isinstance(key, Exception):
                item.fail("keygen", f"key generation failed: {key}")
            else:
                item.key = key
                guarded(item, "stage", self._issue_and_stage, item)
            if item.failed:
                self._advance(item)
        self._touch(work)
        staged = [w for w in work if not w.failed]
        if self.options.verify:
            self._phase(staged, "internal", self._verify_all)
        else:
            with self.ctx.database().write() as session:
                from db import queries

                queries.add_audit(session, at=self.ctx.now(), actor=self.ctx.actor, action="renewal.verification_skipped",
                                  target=None, apps=[w.candidate.app_uri for w in staged])
        self._touch(work)
        for item in staged:
            if not item.failed:
                guarded(item, "switch", self._switch, item)
            if not item.failed:
                guarded(item, "hook", self._deploy, item)
        live = [w for w in staged if not w.failed and w.switched and w.candidate.endpoint and self.options.verify]
        if live:
            self._touch(work)
            self._phase(live, "live", self._live_all)
        for item in staged:
            if not item.failed:  # proven everywhere: only now the database calls it active (the intent ends)
                guarded(item, "commit", self._commit, item)
        for item in work:
            if not item.failed:
                item.done = True
                if not self.options.verify:
                    self._advance(item)
        for item in work:
            if item.failed:
                try:
                    self.settle(item)
                except Exception:  # its pending row stays for the next command's recovery; the others are done
                    log.exception("could not roll back the renewal of %s; the next certmgr command will", item.candidate.app_uri)
                    item.done = True

    def _phase(self, items: list, stage: str, coroutine) -> None:
        """A concurrent phase (proofs): each item's own failure is its result; a failure of the phase itself
        (the verifier's identity cannot be read, say) fails the items of that phase, never the run."""
        try:
            asyncio.run(coroutine(items))
        except Exception as exc:
            log.exception("renewal phase %s failed", coroutine.__name__)
            for item in items:
                item.fail(stage, f"unexpected {type(exc).__name__}: {exc}")

    # issue and stage ---------------------------------------------------------------------------------
    def _issue_and_stage(self, item) -> None:
        c, ctx = item.candidate, self.ctx
        if not c.store_path:
            item.fail("stage", "the application has no store folder certmgr can write")
            return
        now = ctx.now()
        try:
            item.cert = ca.build_application_certificate(identity_of(c), item.key.public_key(), self.issuer, now=now,
                                                         days=c.validity_days)
            item.store = pki.ApplicationStore(c.store_path, c.layout)
            if not item.store.root.is_dir():
                raise pki.StoreError(f"store folder {c.store_path} is missing")
        except (ca.CAError, pki.StoreError) as exc:
            item.fail("stage", str(exc))
            return
        due = windows.renew_after(item.cert.not_valid_before_utc, item.cert.not_valid_after_utc, c.renew_before_seconds,
                                  windows.default_window(ctx))
        with ctx.database().write() as session:  # the intent, before the first file
            from db import queries

            row = lifecycle.record_pending(session, item.cert, session.get(db.Application, c.app_id),
                                           queries.authority(session).id, now=now, renew_after=due,
                                           intent=lifecycle.RENEW, owner=item.token, previous=c.thumbprint,
                                           store=c.store_path, layout=c.layout)
            item.cert_id = row.id
        item.result.new_thumbprint = pki.thumbprint(item.cert)
        item.result.not_after = item.cert.not_valid_after_utc
        try:
            item.store.stage_own(item.cert, ca.private_key_pem(item.key), chain=(self.issuer.certificate,))
        except (OSError, pki.StoreError) as exc:
            item.fail("stage", str(exc))

    # proofs ------------------------------------------------------------------------------------------
    async def _verify_all(self, items: list) -> None:
        from ..opcua.channel import Identity
        from ..opcua.identities import identity_from_store
        from ..opcua.proofs import ProofRunner
        from ..opcua.validator import StoreValidator

        ctx = self.ctx
        store, uri = verifier_store(ctx), verifier_identity_uri(ctx)
        as_client = identity_from_store(store, uri, peer_role="server", clock=ctx.now)
        as_server = identity_from_store(store, uri, peer_role="client", clock=ctx.now)
        async with ProofRunner(as_client, as_server, concurrency=ctx.settings.verify.concurrency) as runner:

            async def one(item) -> None:
                c = item.candidate

                def side(peer_role: str) -> Identity:
                    return Identity(c.app_uri, item.cert, item.key, StoreValidator(item.store, peer_role, ctx.now))

                proof = await runner.prove(
                    side("client") if c.role in ("server", "both") else None,
                    side("server") if c.role in ("client", "both") else None,
                )
                item.result.channels = [ch.as_dict() for ch in proof.channels]
                if not proof.ok:
                    item.fail("verify", f"loopback proof failed: {proof.summary()}")
                self._advance(item)

            outcomes = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):  # one proof's crash fails that proof only
                log.error("loopback proof of %s crashed", item.candidate.app_uri, exc_info=outcome)
                item.fail("verify", f"unexpected {type(outcome).__name__}: {outcome}")

    async def _live_all(self, items: list) -> None:
        from ..opcua.identities import identity_from_store
        from ..opcua.proofs import await_new_certificate

        ctx = self.ctx
        verifier = identity_from_store(verifier_store(ctx), verifier_identity_uri(ctx), peer_role="server", clock=ctx.now)
        timeout = self.options.verify_timeout if self.options.verify_timeout is not None else ctx.settings.verify.timeout

        async def one(item) -> None:
            live = await await_new_certificate(item.candidate.endpoint, verifier, pki.thumbprint(item.cert), timeout=timeout)
            item.result.channels += [dict(ch.as_dict(), live=True) for ch in live.channels]
            if not live.ok:
                hint = "" if item.candidate.deploy_hook else (
                    "; the server must reload its certificate: give it a deploy hook that does "
                    f"(`certmgr app update --app-uri {item.candidate.app_uri} --deploy-hook CMD`) or use push deployment")
                item.fail("live", f"live proof failed: {live.message}{hint}")

        outcomes = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):
                log.error("live proof of %s crashed", item.candidate.app_uri, exc_info=outcome)
                item.fail("live", f"unexpected {type(outcome).__name__}: {outcome}")

    # switch, hook, roll back ---------------------------------------------------------------------------
    def _still_ours(self, item) -> str | None:
        """Before touching the store: the claim must still be this run's and the certificate still pending
        (a run taken for dead may have been recovered by another node meanwhile). Refreshes the claim."""
        with self.ctx.database().write() as session:
            app = session.get(db.Application, item.candidate.app_id)
            row = session.get(db.Certificate, item.cert_id)
            if app.renewal_claimed_by != item.token:
                return f"this run lost its claim to {app.renewal_claimed_by or 'a recovery'}"
            if row.status != db.CertStatus.PENDING:
                return f"the staged certificate is {row.status.value} now ({row.status_reason})"
            app.renewal_claimed_at = self.ctx.now()
        return None

    def _switch(self, item) -> None:
        """Make the new pair current in the store; the old pair goes to history. The database keeps the new
        certificate pending (the intent) until the hook and the live proof have passed: a crash or a rollback in
        between is then always marked, and recovery decides from what the store serves."""
        store, thumb = item.store, pki.thumbprint(item.cert)
        lost = self._still_ours(item)
        if lost is not None:
            item.fail("switch", lost)
            store.unstage(thumb)
            item.cert_id = None  # whoever took it over recorded and revoked it
            item.done = True
            return
        try:
            with store.locked():
                before = store.own()
                item.previous = before.thumbprint if before else None
                item.switched = True  # from here on a failure reverts (settle checks what the store really serves)
                store.install_own(item.cert, ca.private_key_pem(item.key), store.staged_chain(thumb),
                                  keep_history=self.ctx.settings.renew.keep_history)
                store.unstage(thumb)
        except (OSError, pki.StoreError) as exc:
            item.fail("switch", f"cannot switch the store to the new certificate: {exc}")

    def _commit(self, item) -> None:
        with self.ctx.database().write() as session:
            # each channel's policy and status code, in the audit event: the console's "last proof" shows them
            lifecycle.activate(session, session.get(db.Certificate, item.cert_id), now=self.ctx.now(), actor=self.ctx.actor,
                               action="certificate.renew", channels=item.result.channels)

    def _hook_variables(self, item, action: str) -> dict[str, str]:
        own = item.store.own()
        return {
            "CERTMGR_ACTION": action, "CERTMGR_APP_URI": item.candidate.app_uri, "CERTMGR_STORE": str(item.store.root),
            "CERTMGR_LAYOUT": item.store.layout.name, "CERTMGR_THUMBPRINT": own.thumbprint if own else "",
            "CERTMGR_OLD_THUMBPRINT": item.previous or "", "CERTMGR_CERT_PATH": str(own.cert_path) if own else "",
            "CERTMGR_KEY_PATH": str(own.key_path) if own else "",
        }

    def _deploy(self, item) -> None:
        if not item.candidate.deploy_hook:
            return
        outcome = run_deploy_hook(item.candidate.deploy_hook, self._hook_variables(item, "renewed"), self.options.hook_timeout)
        if not outcome.ok:
            item.fail("hook", outcome.message)

    def settle(self, item) -> None:
        """A failed item made whole: the previous pair current again (and the hook told), the staged files gone,
        the new certificate failed and revoked. Safe to call twice."""
        if item.done:
            return
        ctx, store = self.ctx, item.store
        if item.switched:
            with store.locked():
                own = store.own()
                if own is not None and own.thumbprint == pki.thumbprint(item.cert):  # the switch really happened
                    store.revert_own(item.previous, pki.thumbprint(item.cert))
        if store is not None and item.cert is not None:
            store.discard_pair(pki.thumbprint(item.cert))
        if item.cert_id is not None:
            with ctx.database().write() as session:
                row = session.get(db.Certificate, item.cert_id)
                if item.switched:
                    lifecycle.restore(session, item.candidate.app_id, item.previous,
                                      reason=f"restored after failed renewal ({item.result.stage})")
                if row.status in (db.CertStatus.PENDING, db.CertStatus.ACTIVE):
                    lifecycle.fail(session, row, stage=item.result.stage or "internal", reason=item.result.reason,
                                   now=ctx.now(), actor=ctx.actor, channels=item.result.channels)
            item.failure_recorded = True
        item.done = True
        if item.switched and item.candidate.deploy_hook:
            outcome = run_deploy_hook(item.candidate.deploy_hook, self._hook_variables(item, "rollback"), self.options.hook_timeout)
            if not outcome.ok:
                item.result.reason += f"; the rollback's {outcome.message}"
