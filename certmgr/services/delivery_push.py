"""The renewal pipeline's *push* delivery: OPC UA Part 12 ServerConfiguration, no file access.

The OPC UA conversation lives in services/push.py (`conversation`) and certmgr/opcua/push.py; here it is one
pipeline step: the certificate the server's CSR yields is recorded pending (the intent) before it is sent, and
the outcome goes through services/lifecycle.py like any other renewal. No CRL is signed here: the pipeline signs
one after the batch.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import ca
import db
import pki
from db import queries

from ..context import AppContext
from . import lifecycle, windows
from .crls import current_crl
from .push import PushReport, _load, conversation

log = logging.getLogger(__name__)


class PushDelivery:
    def __init__(self, ctx: AppContext, issuer: ca.Issuer, options, progress) -> None:
        self.ctx, self.issuer, self.options, self.progress = ctx, issuer, options, progress

    def run(self, work: list) -> None:
        from .renewal import guarded

        for item in work:
            guarded(item, "push", self._push, item)
            self.settle(item)
            if self.progress is not None:
                self.progress.advance(item.candidate.app_uri)

    def _record(self, item, app, certificate) -> None:
        ctx, now = self.ctx, self.ctx.now()
        due = windows.renew_after(certificate.not_valid_before_utc, certificate.not_valid_after_utc, app.renew_before,
                                  windows.default_window(ctx))
        with ctx.database().write() as session:
            row = lifecycle.record_pending(session, certificate, session.get(db.Application, app.id),
                                           queries.authority(session).id, now=now, renew_after=due, intent=lifecycle.PUSH,
                                           owner=item.token, previous=app.active_thumbprint)
            item.cert_id = row.id
        item.cert = certificate

    def _push(self, item) -> None:
        ctx, options = self.ctx, self.options
        app = _load(ctx, item.candidate.app_uri)
        report = PushReport(app.uri, old_thumbprint=app.active_thumbprint)
        item.result.report = report
        timeout = options.verify_timeout if options.verify_timeout is not None else ctx.settings.verify.timeout
        crl_number = current_crl(ctx).number  # what the TrustList step sends, or a newer one: never recorded too high
        try:
            asyncio.run(conversation(ctx, app, self.issuer, report, lambda cert: self._record(item, app, cert),
                                     regenerate_key=options.regenerate_key, accept_server=options.accept_server,
                                     sign_only=options.sign_only, timeout=timeout))
        except Exception as exc:  # any failure after the certificate exists must still be recorded and revoked
            log.exception("push to %s", app.endpoint)
            if not report.failed_step:
                report.fail("push", type(exc).__name__, str(exc))
        self._as_peer(app, report, item, crl_number)
        item.result.new_thumbprint = report.new_thumbprint
        item.result.channels = [s.as_dict() for s in report.steps]
        if report.not_after:
            item.result.not_after = datetime.fromisoformat(report.not_after)
        if not report.ok:
            item.fail(f"push: {report.failed_step}", report.message)
        self._commit(item, report)

    def _as_peer(self, app, report: PushReport, item, crl_number: int) -> None:
        """Issue 15: the server's TrustList now holds certmgr's CA, so the server is registered as a peer (its served
        certificate is tracked: a vendor stack regenerating it is reported) and what its TrustList read back is noted,
        so that after each revocation it is listed until it holds the new CRL. Said in the report as a step."""
        from .fleet import note_trust_list
        from .peers import PUSH_SOURCE, register_endpoint_peer

        trust_list = next((s for s in report.steps if s.name == "TrustList"), None)
        if trust_list is None:
            return
        try:
            if trust_list.status == "Good":
                note_trust_list(self.ctx, app.endpoint, crl_number, self.ctx.now())
            if (report.ok or report.served) and item.cert is not None:
                if register_endpoint_peer(self.ctx, app.endpoint, item.cert, PUSH_SOURCE):
                    report.add("peer", "Registered", f"{app.endpoint} is now a tracked peer (certmgr peer show {app.endpoint}): "
                               "a certificate the server makes itself is reported; its TrustList is listed after each revocation")
        except Exception:  # bookkeeping never turns a served certificate into a failed (and revoked) one
            log.exception("registering push server %s as a peer", app.endpoint)

    def _commit(self, item, report: PushReport) -> None:
        """ok: the pushed certificate is active. Served although the proof failed: revoking it would cut the server
        off, so it stays active and the renewal counts as failed. Otherwise: failed and revoked."""
        if item.cert_id is None:
            return
        ctx, now = self.ctx, self.ctx.now()
        steps = [s.as_dict() for s in report.steps]
        with ctx.database().write() as session:
            row = session.get(db.Certificate, item.cert_id)
            if report.ok or report.served:
                reason = None if report.ok else f"served, but the live proof failed: {report.message}"[:2000]
                lifecycle.activate(session, row, now=now, actor=ctx.actor, action="certificate.push", reason=reason, steps=steps)
                if not report.ok:
                    lifecycle.note_failure(session, item.candidate.app_uri, stage=item.result.stage, reason=report.message,
                                           now=now, actor=ctx.actor, deploy="push", thumbprint=row.thumbprint)
                    item.failure_recorded = True
                    item.cert_id = None  # in use: nothing to revoke
            else:
                lifecycle.fail(session, row, stage=item.result.stage, reason=report.message, now=now, actor=ctx.actor,
                               deploy="push", steps=steps)
                item.failure_recorded = True
        item.done = True

    def settle(self, item) -> None:
        """A push cut short after its certificate existed (Ctrl-C during the live proof, say): the server may have
        taken it already. Serving it: it stays active (revoking it would cut the server off); else failed and
        revoked."""
        from .recovery import serves

        if item.done:
            return
        if item.cert_id is not None:
            served = item.cert is not None and serves(item.candidate.endpoint, pki.thumbprint(item.cert))
            with self.ctx.database().write() as session:
                row = session.get(db.Certificate, item.cert_id)
                if row.status == db.CertStatus.PENDING and served:
                    lifecycle.activate(session, row, now=self.ctx.now(), actor=self.ctx.actor, action="certificate.push",
                                       reason=f"served after an interrupted push ({item.result.reason})"[:2000])
                    item.cert_id = None  # in use: nothing to revoke
                elif row.status == db.CertStatus.PENDING:
                    lifecycle.fail(session, row, stage=item.result.stage or "push", reason=item.result.reason,
                                   now=self.ctx.now(), actor=self.ctx.actor, deploy="push")
                    item.failure_recorded = True
        item.done = True

