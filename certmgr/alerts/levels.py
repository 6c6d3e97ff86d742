"""The expiry scan: a level for every active certificate and every CRL that needs attention.

Certificates: expired (notAfter passed), critical (less than ``critical`` left, or the last renewal
failed), warning (less than ``warning`` left, or inside the renewal window if that is longer), ok. CRLs
(certmgr's and imported ones) by their nextUpdate. Only subjects above ok are returned; the query uses
the (status, not_after) and (status, renew_after) indexes, so it stays fast for large fleets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

import db
from db import queries

from ..context import AppContext
from .settings import AlertSettings


@dataclass
class Subject:
    key: str  # stable identity for alert state: cert:<THUMBPRINT>, crl:<CA THUMBPRINT>, xcrl:<CA>:<store>
    kind: str  # "certificate" or "crl"
    name: str  # application URI, or the CRL's issuer
    thumbprint: str | None
    not_after: datetime  # a CRL's nextUpdate
    days_left: float
    level: str
    reason: str
    store: str | None = None

    def as_dict(self, previous: str | None = None) -> dict:
        return {
            "kind": self.kind,
            "app_uri": self.name if self.kind == "certificate" else None,
            "issuer": self.name if self.kind == "crl" else None,
            "thumbprint": self.thumbprint,
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left, 1),
            "level": self.level,
            "previous_level": previous,
            "store": self.store,
            "reason": self.reason,
        }


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def certificate_level(
    not_after: datetime, renew_after: datetime | None, now: datetime, warn: timedelta, crit: timedelta, failed: bool
) -> tuple[str, str]:
    left = not_after - now
    if left <= timedelta(0):
        return "expired", f"expired {-_days(left):.1f} days ago"
    if failed:
        return "critical", f"the last renewal failed; {_days(left):.1f} days left"
    if left < crit:
        return "critical", f"{_days(left):.1f} days left (critical below {_days(crit):.0f})"
    if left < warn:
        return "warning", f"{_days(left):.1f} days left (warning below {_days(warn):.0f})"
    if renew_after is not None and renew_after <= now:
        return "warning", f"{_days(left):.1f} days left, inside the renewal window and not renewed yet"
    return "ok", f"{_days(left):.1f} days left"


class LevelCutoffs:
    """certificate_level's level alone, for many certificates at one moment with no renewal window and no failed
    renewal (fleet status of 10,000 rows): the same thresholds as comparisons of notAfter, no message formatted."""

    def __init__(self, now: datetime, warn: timedelta, crit: timedelta) -> None:
        self.now, self.critical_before, self.warning_before = now, now + crit, now + warn

    def __call__(self, not_after: datetime) -> str:
        if not_after <= self.now:  # left <= 0
            return "expired"
        if not_after < self.critical_before:  # left < crit
            return "critical"
        return "warning" if not_after < self.warning_before else "ok"


def crl_level(next_update: datetime, now: datetime, settings: AlertSettings) -> tuple[str, str]:
    left = next_update - now
    if left <= timedelta(0):
        return "expired", f"CRL is past its nextUpdate by {-_days(left):.1f} days: peers refuse with BadCertificateRevocationUnknown"
    if left < settings.crl_critical:
        return "critical", f"CRL goes stale in {left.total_seconds() / 3600:.1f} hours"
    if left < settings.crl_warning:
        return "warning", f"CRL goes stale in {_days(left):.1f} days"
    return "ok", f"CRL current for {_days(left):.1f} more days"


def _chain(*results):
    for result in results:
        yield from result


def scan(ctx: AppContext, now: datetime, settings: AlertSettings) -> Iterator[Subject]:
    """Every subject above ok. Certificates come from one indexed query."""
    with ctx.database().read() as session:
        overrides = session.execute(
            select(func.max(db.Application.warn_before_seconds), func.max(db.Application.crit_before_seconds))
        ).one()
        widest = max(settings.warning, settings.critical, timedelta(seconds=overrides[0] or 0), timedelta(seconds=overrides[1] or 0))
        seen: set[int] = set()
        near = session.execute(queries.attention_statement(now, widest).execution_options(yield_per=1000))
        for row in _chain(near, session.execute(queries.failed_renewal_statement())):
            if row.id in seen:
                continue
            seen.add(row.id)
            warn = timedelta(seconds=row.warn_before_seconds) if row.warn_before_seconds else settings.warning
            crit = timedelta(seconds=row.crit_before_seconds) if row.crit_before_seconds else settings.critical
            failed = row.last_renewal_status == "failed"
            level, reason = certificate_level(row.not_after, row.renew_after, now, warn, crit, failed)
            if level != "ok":
                if failed and row.last_renewal_error:
                    reason += f" ({row.last_renewal_error[:200]})"
                yield Subject(f"cert:{row.thumbprint}", "certificate", row.app_uri, row.thumbprint, row.not_after,
                              _days(row.not_after - now), level, reason, row.store_path)
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
        if latest is not None:
            level, reason = crl_level(latest.next_update, now, settings)
            if level != "ok":
                yield Subject(f"crl:{authority.thumbprint}", "crl", authority.subject, authority.thumbprint, latest.next_update,
                              _days(latest.next_update - now), level, f"certmgr's {reason}; run `certmgr crl refresh`")
        externals = list(session.scalars(select(db.ExternalCrl).order_by(db.ExternalCrl.next_update)))
    import pki

    from ..services.ca_chain import load_chain

    chain = load_chain(ctx.home)
    root = _root_crl_subject(chain, now, settings) if chain is not None else None
    if root is not None:
        yield root
    # `crl import` of the root's CRL records it per store as well; the home's copy is the one the alert is about
    # (the same file reached every store), so it is said once, not once more per store
    root_thumbprint = pki.thumbprint(chain.root) if chain is not None else None
    yield from _external_subjects([e for e in externals if e.issuer_thumbprint != root_thumbprint], now, settings)
    # the fleet: peer certificates (expiry, a certificate that changed) and endpoints where a probe failed
    from ..services.peers import peer_subjects
    from ..services.probe import probe_subjects

    yield from peer_subjects(ctx, now, settings)
    yield from probe_subjects(ctx, now)


def _root_crl_subject(chain, now: datetime, settings: AlertSettings) -> Subject | None:
    """An issuing CA's home: the root's CRL, kept in the home (services/ca_chain.py). Stacks refuse every chain
    once it is past its nextUpdate, and only the root's machine can renew it."""
    import pki

    next_update = chain.root_crl.next_update_utc
    level, reason = crl_level(next_update, now, settings)
    if level == "ok":
        return None
    return Subject(f"rootcrl:{pki.thumbprint(chain.root)}", "crl", chain.root.subject.rfc4514_string(),
                   pki.thumbprint(chain.root), next_update, _days(next_update - now), level,
                   f"the root's {reason}; renew it where the root is (`certmgr ca root sign-crl`), then "
                   "`certmgr crl import root.crl`")


def _external_subjects(externals, now: datetime, settings: AlertSettings) -> Iterator[Subject]:
    for external in externals:
        level, reason = crl_level(external.next_update, now, settings)
        if level != "ok":
            yield Subject(f"xcrl:{external.issuer_thumbprint}:{external.store_path}", "crl", external.issuer_subject,
                          external.issuer_thumbprint, external.next_update, _days(external.next_update - now), level,
                          f"imported {reason}; import a fresh one with `certmgr crl import`", external.store_path)
