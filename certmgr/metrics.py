"""Prometheus metrics, read from the database at each scrape so they always match it.

    certmgr_certificate_not_after_timestamp_seconds{app_uri,thumbprint,store}
    certmgr_crl_next_update_timestamp_seconds{issuer}
    certmgr_renewal_last_success_timestamp_seconds
    certmgr_renewal_failures_total
    certmgr_peer_certificate_not_after_timestamp_seconds{endpoint}
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

import db
from db import queries

from .context import AppContext


class CertmgrCollector:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def describe(self):
        return []  # no describe-time database access; collect() is the truth

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        not_after = GaugeMetricFamily(
            "certmgr_certificate_not_after_timestamp_seconds", "notAfter of each active certificate (Unix time).",
            labels=["app_uri", "thumbprint", "store"],
        )
        crl = GaugeMetricFamily("certmgr_crl_next_update_timestamp_seconds", "nextUpdate of each CA's CRL (Unix time).", labels=["issuer"])
        with self.ctx.database().read() as session:
            for cert, app in queries.active_certificates(session):
                not_after.add_metric([app.app_uri, cert.thumbprint, app.store_path or ""], cert.not_after.timestamp())
            next_updates: dict[str, float] = {}
            authority = queries.authority(session)
            latest = queries.latest_crl(session, authority.id) if authority else None
            if latest is not None:
                next_updates[authority.subject] = latest.next_update.timestamp()
            for subject, next_update in session.execute(
                select(db.ExternalCrl.issuer_subject, func.min(db.ExternalCrl.next_update)).group_by(db.ExternalCrl.issuer_subject)
            ):
                value = _timestamp(next_update)
                next_updates[subject] = min(value, next_updates.get(subject, value))
            for issuer, value in next_updates.items():
                crl.add_metric([issuer], value)
            last_success = session.scalar(
                select(func.max(db.Application.last_renewal_at)).where(db.Application.last_renewal_status == "renewed")
            )
            # every failed renewal leaves one audit event (append-only), also those that failed before a certificate existed
            failures = session.scalar(select(func.count()).select_from(db.AuditEvent).where(db.AuditEvent.action == queries.RENEWAL_FAILED))
        from .services.peers import peer_expiry_metric

        peers = GaugeMetricFamily("certmgr_peer_certificate_not_after_timestamp_seconds",
                                  "notAfter of each peer endpoint's certificate (Unix time).", labels=["endpoint"])
        for labels, value in peer_expiry_metric(self.ctx):
            peers.add_metric([labels["endpoint"]], value)
        yield not_after
        yield peers
        yield crl
        last = GaugeMetricFamily("certmgr_renewal_last_success_timestamp_seconds", "When a renewal last succeeded (Unix time; 0: never).")
        last.add_metric([], _timestamp(last_success))
        yield last
        failed = CounterMetricFamily("certmgr_renewal_failures", "Renewals that failed, at any stage (file or push deployment).")
        failed.add_metric([], float(failures or 0))
        yield failed


def _timestamp(value) -> float:
    if value is None:
        return 0.0
    if hasattr(value, "timestamp"):
        if value.tzinfo is None:  # SQLite hands aggregates back without the UTC decorator
            from datetime import timezone

            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    from datetime import datetime, timezone

    return datetime.fromisoformat(str(value)).replace(tzinfo=timezone.utc).timestamp()


def registry_for(ctx: AppContext):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CertmgrCollector(ctx))
    return registry


def write_textfile(ctx: AppContext, path: Path) -> None:
    """For node_exporter's textfile collector; prometheus_client writes a temp file and renames it."""
    from prometheus_client import write_to_textfile

    write_to_textfile(str(path), registry_for(ctx))


def serve(ctx: AppContext, listen: str):
    """Serve /metrics on ``host:port``; returns the server (stop it with .shutdown())."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry_for(ctx))
    return server
