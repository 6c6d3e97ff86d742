"""What a registered application's next certificate holds: one validator for `issue`, `issue --batch`,
`app add` and `app update`, so every way in refuses the same inputs with the same words."""

from __future__ import annotations

from dataclasses import dataclass

import ca
import pki

from .. import constants as C
from ..context import AppContext
from ..durations import parse_duration
from ..errors import InputError


@dataclass(frozen=True)
class AppSpec:
    identity: ca.ApplicationIdentity
    role: str
    key_size: int
    days: int
    renew_before_seconds: int | None  # the application's own window; None: the default rule


def default_common_name(app_uri: str) -> str:
    """The last meaningful part of the URI: urn:plant1:historian -> historian."""
    import re

    parts = [p for p in re.split(r"[:/?#]+", app_uri) if p and p.lower() not in ("urn", "http", "https", "opc.tcp")]
    candidate = (parts[-1] if parts else app_uri)[:64]
    return candidate if candidate and not candidate.startswith(".") else "application"


def check_role(role: str) -> str:
    if role not in C.ROLES:
        raise InputError(f"unknown role {role!r}", f"use one of {', '.join(C.ROLES)}")
    return role


def check_days(days: int) -> int:
    if days <= 0:
        raise InputError(f"--days {days} is not allowed", "give a whole number of days greater than 0")
    if days > C.MAX_DAYS:
        raise InputError(f"--days {days} is more than {C.MAX_DAYS} (100 years)", "give a realistic validity, e.g. 365")
    return days


def window_seconds(renew_before: str | None, days: int) -> int | None:
    """A renewal window in seconds, refused when it is not shorter than the lifetime (it would renew nightly)."""
    if not renew_before:
        return None
    seconds = int(parse_duration(renew_before).total_seconds())
    check_window(seconds, days, renew_before)
    return seconds


def check_window(seconds: int | None, days: int, shown: str | None = None) -> None:
    if seconds is not None and seconds >= days * 86400:
        raise InputError(
            f"the renewal window {shown or f'({seconds // 86400} days)'} is not shorter than the {days}-day lifetime: "
            "the certificate would renew every night",
            "choose a shorter --renew-before or a longer --days, e.g. a third of the validity",
        )


def build_spec(
    ctx: AppContext, *, app_uri: str, name: str | None, organization: str | None, dns_names=(), ip_addresses=(),
    role: str = "both", key_size: int | None = None, days: int | None = None, renew_before: str | None = None,
) -> AppSpec:
    """Every input checked before anything is written; each problem is an InputError (exit 2)."""
    defaults = ctx.settings.defaults
    check_role(role)
    try:
        identity = ca.ApplicationIdentity(
            app_uri=app_uri,
            subject=ca.SubjectFields(
                common_name=name or default_common_name(app_uri),
                organization=organization or defaults.organization or ctx.settings.ca.organization,
            ),
            dns_names=tuple(dns_names),
            ip_addresses=tuple(ip_addresses),
        )
        pki.safe_stem(identity.subject.common_name)
        size = ca.check_key_size(key_size or defaults.key_size)
    except (ca.ProfileError, pki.UnsafeNameError) as exc:
        raise InputError(str(exc)) from None
    validity = check_days(days if days is not None else defaults.days)
    # the default window ([defaults] renew_before) must fit this lifetime too, but is not stored per application
    window_seconds(defaults.renew_before, validity)
    return AppSpec(identity, role, size, validity, window_seconds(renew_before, validity))
