"""``certmgr gds ...``: certmgr as an OPC UA Global Discovery Server (Part 12 pull) and its operator side."""

from __future__ import annotations

from pathlib import Path

import click

from .options import json_option, new_password_file_option, replace_user_option, show_users
from .output import emit_json

ROLE_NAMES = ("DiscoveryAdmin", "CertificateAuthorityAdmin", "RegistrationAuthorityAdmin")


@click.group("gds")
def gds_group() -> None:
    """The GDS: applications ask for certificates with a CSR and pull the trust list (`certmgr gds serve`)."""


def _listen(text: str) -> tuple[str, str]:
    from ..config import opc_tcp_host
    from ..errors import InputError

    host = opc_tcp_host(text)
    if host is None:
        raise InputError(f"--listen {text!r} is not opc.tcp://HOST:PORT", "write it like opc.tcp://127.0.0.1:4845")
    return text, host


@gds_group.command("serve")
@click.option("--listen", default=None, metavar="URL", help="opc.tcp://HOST:PORT (default from [gds] listen: opc.tcp://127.0.0.1:4845).")
@click.pass_obj
def gds_serve(app, listen) -> None:
    """Serve the GDS until interrupted (SignAndEncrypt only: Basic256Sha256, Aes128_Sha256_RsaOaep,
    Aes256_Sha256_RsaPss). The CA passphrase is read at start (CERTMGR_CA_PASSPHRASE or a prompt).

    \b
    Examples:
      certmgr gds serve
      certmgr gds serve --listen opc.tcp://0.0.0.0:4845
    """
    import asyncio

    from ..opcua.gds_server import serve
    from ..services.gds_identity import ensure

    url, host = _listen(listen or app.settings.gds.listen)
    app.require_initialised()
    app.issuer()  # the passphrase now, not at the first FinishRequest
    identity = ensure(app, host)
    thumb = identity.store.own().thumbprint

    def ready(server) -> None:
        click.echo(f"certmgr GDS on {url} (certificate {thumb}{', new' if identity.reissued else ''})", err=True)

    try:
        asyncio.run(serve(app, url, identity, ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, or the address is not this host's
        from ..errors import OperationFailed

        raise OperationFailed(f"cannot listen on {url}: {exc.strerror or exc}",
                              "stop what holds the port, or give another with --listen") from None


@gds_group.group("user")
def gds_user() -> None:
    """GDS users and their Part 12 roles."""


@gds_user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
              help="DiscoveryAdmin registers applications; CertificateAuthorityAdmin and RegistrationAuthorityAdmin "
                   "request certificates for any registered application.")
@new_password_file_option
@replace_user_option
@json_option
@click.pass_obj
def gds_user_add(app, name, role, password_file, replace) -> None:
    """Add a GDS user (the password is stored as a scrypt hash).

    \b
    Examples:
      certmgr gds user add registrar --role DiscoveryAdmin
      certmgr gds user add enrol --role CertificateAuthorityAdmin --password-file /etc/certmgr/enrol.pw
    """
    from ..services.gds_users import add_user
    from .options import read_new_password

    app.require_initialised()
    result = add_user(app, name, role, read_new_password(name, password_file), replace=replace)
    emit_json(result) if app.json else click.echo(f"GDS user {result['name']} ({result['role']}) saved")


@gds_user.command("list")
@json_option
@click.pass_obj
def gds_user_list(app) -> None:
    """GDS users and their roles."""
    from ..services.gds_users import list_users

    show_users(app, list_users(app))


@gds_group.command("enrol-token")
@click.option("--app-uri", required=True, help="The pull application the token is for (`app add --deploy pull`).")
@click.option("--valid", default="24h", show_default=True, metavar="DURATION", help="How long it may be used.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the token to this new file (mode 0600) instead of printing it.")
@json_option
@click.pass_obj
def gds_enrol_token(app, app_uri, valid, token_file) -> None:
    """A one-time enrolment token: the application signs in with its ApplicationUri as user name and the token
    as password, from a self-signed certificate, and may then request its first certificate (only its own).
    Only a hash is stored; the token is spent when its certificate is handed out.

    \b
    Examples:
      certmgr gds enrol-token --app-uri urn:plant1:gateway --valid 2h
      certmgr gds enrol-token --app-uri urn:plant1:gateway --token-file /tmp/gateway.token
    """
    import pki

    from ..errors import InputError
    from ..services.gds_tokens import make_token

    if token_file is not None and (token_file.exists() or not token_file.parent.is_dir()):
        raise InputError(f"{token_file} exists or its folder does not", "name a new file in an existing folder")
    result = make_token(app, app_uri, valid)
    if token_file is not None:
        pki.atomic_write(token_file, result["token"].encode(), mode=0o600)
        result = {**result, "token": None, "token_file": str(token_file)}
    if app.json:
        emit_json(result)
    elif token_file is not None:
        click.echo(f"token {result['token_id']} for {app_uri} written to {token_file} (valid until {result['expires_at']})")
    else:
        click.echo(result["token"])
        click.echo(f"token {result['token_id']} for {app_uri}, valid until {result['expires_at']}, shown once", err=True)


@gds_group.command("pending")
@json_option
@click.pass_obj
def gds_pending(app) -> None:
    """Certificate requests waiting for a decision.

    \b
    Example:
      certmgr gds pending
    """
    from ..services.gds_requests import pending

    rows = pending(app)
    if app.json:
        emit_json(rows)
    elif not rows:
        click.echo("no pending requests")
    else:
        for r in rows:
            renewal = " (renewal by the application)" if r["self_renewal"] else ""
            click.echo(f"{r['id']}\t{r['app_uri']}\t{r['requested_by']}{renewal}\tCSR {r['csr_subject']} "
                       f"{', '.join(r['csr_uris'])} RSA {r['key_size']}\t{r['created_at']}")


@gds_group.command("approve")
@click.argument("request_id", type=int)
@json_option
@click.pass_obj
def gds_approve(app, request_id) -> None:
    """Approve a request: its next FinishRequest gets the certificate (built from the registration).

    \b
    Example:
      certmgr gds approve 7
    """
    from ..services.gds_requests import decide

    result = decide(app, request_id, approve=True)
    emit_json(result) if app.json else click.echo(f"request {request_id} for {result['app_uri']} approved")


@gds_group.command("deny")
@click.argument("request_id", type=int)
@click.option("--reason", default=None, help="Why (audited, and told to the application's FinishRequest log).")
@json_option
@click.pass_obj
def gds_deny(app, request_id, reason) -> None:
    """Deny a request: its FinishRequest is answered BadRequestNotAllowed.

    \b
    Example:
      certmgr gds deny 7 --reason "unknown host"
    """
    from ..services.gds_requests import decide

    result = decide(app, request_id, approve=False, reason=reason)
    emit_json(result) if app.json else click.echo(f"request {request_id} for {result['app_uri']} denied")


COMMANDS = [gds_group]
