"""The GDS's own application certificate: issued from certmgr's CA into ``<home>/gds`` and recorded like the
verification identity (an internal application), so list, expiry alerts, revoke and the CRL see it.

`certmgr gds serve` calls ``ensure`` at start: it issues the first one, and reissues when the renewal window
has opened or a name the GDS is reached by (the listen host, [gds] dns_names / ip_addresses) is missing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from cryptography import x509

import pki
from db import queries

from ..context import AppContext
from . import windows
from .issuing import IssueRequest, issue_application


@dataclass
class GdsIdentity:
    app_uri: str
    store: pki.ApplicationStore
    reissued: bool


def gds_uri() -> str:
    return f"urn:certmgr:gds:{socket.gethostname()}"


def _names(ctx: AppContext, host: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns, ips = ["localhost", *ctx.settings.gds.dns_names], ["127.0.0.1", *ctx.settings.gds.ip_addresses]
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified:
            ips.append(str(address))
    except ValueError:
        dns.append(host)
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def _covers(cert: x509.Certificate, dns: tuple[str, ...], ips: tuple[str, ...]) -> bool:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= have_dns and set(ips) <= have_ips


def ensure(ctx: AppContext, host: str) -> GdsIdentity:
    uri = gds_uri()
    store = pki.ApplicationStore(ctx.home.root / "gds", "ua-net")
    dns, ips = _names(ctx, host)
    own = store.own() if store.root.is_dir() else None
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, uri)
        active = queries.active_certificate(session, app.id) if app else None
    current = (own is not None and active is not None and active.thumbprint == own.thumbprint
               and _covers(own.certificate, dns, ips)
               and windows.renew_after(active.not_before, active.not_after, None, windows.default_window(ctx)) > ctx.now())
    if current:
        return GdsIdentity(uri, store, False)
    issue_application(ctx, IssueRequest(app_uri=uri, store=store.root, layout="ua-net", name="certmgr GDS",
                                        dns_names=dns, ip_addresses=ips, role="server", internal=True,
                                        force=app is not None))
    return GdsIdentity(uri, store, True)
