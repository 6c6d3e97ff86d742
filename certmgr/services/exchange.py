"""``certmgr trust-exchange``: trust a third-party server in one step and hand its administrator what
to trust in return, so the first connection succeeds instead of failing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

import ca
import pki
from db import queries
from pki import atomic_write

from ..context import AppContext
from ..errors import InputError, OperationFailed
from .crls import current_crl
from .store_inspect import describe
from .triage import audit


def fetch_server_certificate(url: str, timeout: float = 10.0):
    from ..opcua.faults import describe_failure
    from ..opcua.proofs import endpoint_certificate

    try:
        certificate, _ = asyncio.run(endpoint_certificate(url, timeout))
    except Exception as exc:
        status, message = describe_failure(exc)
        raise OperationFailed(f"cannot read the endpoints of {url}: {message}", "check the URL and that the server runs") from None
    return certificate


def trust_exchange(
    ctx: AppContext, app_uri: str, url: str, *, confirm: Callable[[dict], None], export_dir: Path | None
) -> dict:
    ctx.require_initialised()
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None or not app.store_path:
            raise InputError(f"no application {app_uri!r} with a store is registered", "register it with `certmgr issue`")
        store = pki.ApplicationStore(app.store_path, app.layout)
    server_cert = fetch_server_certificate(url)
    details = describe(server_cert)
    details["conformance"] = [str(f) for f in ca.check_application_certificate(server_cert, at=ctx.now())]
    already = store.holds_certificate(server_cert, pki.TRUSTED)
    result = {"app_uri": app_uri, "store": str(store.root), "server_certificate": details, "already_trusted": already}
    if not already:
        confirm(details)
        result["trusted_file"] = str(store.add_certificate(server_cert, pki.TRUSTED))
        audit(ctx, "store.trust-exchange", store, thumbprint=details["thumbprint"], subject=details["subject"], endpoint=url)
    own = store.own()
    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    crl_row = current_crl(ctx)
    stem = pki.safe_stem(pki.common_name(ca_cert) or "certmgr CA")
    offer = {
        "ca_certificate": f"{stem} [{pki.thumbprint(ca_cert)}].der",
        "ca_crl": f"{stem} [{pki.thumbprint(ca_cert)}] crl{crl_row.number}.crl",
        "application_certificate": f"{pki.safe_stem(pki.common_name(own.certificate))} [{own.thumbprint}].der",
    }
    # a CA-signed application certificate alone cannot be validated: the server needs its issuer to build the chain
    result["application_is_ca_signed"] = own.certificate.issuer != own.certificate.subject
    from .peers import register_endpoint_peer  # issue 15: the server becomes a tracked peer

    result["peer"] = register_endpoint_peer(ctx, url, server_cert, "trust-exchange")
    if export_dir is not None:
        export_dir = Path(export_dir).expanduser()
        offer["readme"] = README
        export_dir.mkdir(exist_ok=True)
        atomic_write(export_dir / offer["ca_certificate"], ca_cert.public_bytes(serialization.Encoding.DER))
        atomic_write(export_dir / offer["ca_crl"], crl_row.der)
        atomic_write(export_dir / offer["application_certificate"], own.certificate.public_bytes(serialization.Encoding.DER))
        atomic_write(export_dir / README, readme_text(app_uri, url, offer, result["application_is_ca_signed"]).encode())
        result["exported_to"] = str(export_dir)
        from .peers import register_bundle_peer  # issue 15: listed after each revocation until refreshed

        result["bundle_peer"] = register_bundle_peer(ctx, export_dir, url, app_uri)
    result["for_the_server"] = offer
    return result


README = "README.txt"


def readme_text(app_uri: str, url: str, offer: dict, ca_signed: bool) -> str:
    """Which exported file goes where in the server's store: the export folder is not that store."""
    ca_file, crl_file, app_file = offer["ca_certificate"], offer["ca_crl"], offer["application_certificate"]
    only_app = [f"   {app_file}\n      -> the server's trusted certificates folder (trusted/certs)"]
    if ca_signed:
        only_app += [
            f"   and, because {app_file} is signed by certmgr's CA, the server also needs that CA to build the chain:",
            f"   {ca_file}\n      -> the server's issuer certificates folder (issuer/certs; node-opcua: issuers/certs)",
            f"   {crl_file}\n      -> the server's issuer CRL folder (issuer/crl; node-opcua: issuers/crl)",
            "   Repeat this at every renewal of the application (each renewal is a new certificate).",
        ]
    return "\n".join([
        f"Files for the administrator of the OPC UA server {url},",
        f"so that the application {app_uri} (managed by certmgr) can open a secure session with it.",
        "Copy them into the server's certificate store (this folder is not that store). Choose one:",
        "",
        "A. Trust certmgr's CA (covers every application certmgr issues, and every renewal):",
        f"   {ca_file}\n      -> the server's trusted certificates folder (trusted/certs)",
        f"   {crl_file}\n      -> the server's trusted CRL folder (trusted/crl); replace it with each new CRL of the CA",
        "",
        "B. Trust only this application:",
        *only_app,
        "",
        "If the server already refused this application, also delete the application's certificate from the",
        "server's rejected folder: node-opcua keeps refusing a certificate it holds there, even once the CA is trusted",
        "(restart the server if it still refuses: a running node-opcua can miss a file deleted seconds after it appeared).",
        "",
        "Where certmgr can write the server's store folder itself, A is one command:",
        f"   certmgr store import SERVER_STORE '{ca_file}' --trusted --crl '{crl_file}'",
        "",
    ])
