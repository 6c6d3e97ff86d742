"""``certmgr web ...``: the operator console (serve) and its users."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from .options import json_option, passphrase_file_option
from .output import emit_json

ROLE_NAMES = ("viewer", "operator", "admin")


@click.group("web")
def web_group() -> None:
    """The operator web console: fleet, rejected inbox, audit log (`certmgr web serve`)."""


def parse_listen(text: str) -> tuple[str, int]:
    from ..errors import InputError

    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {text!r} is not HOST:PORT", "write it like 127.0.0.1:8440")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web_group.command("serve")
@click.option("--listen", default=None, help="HOST:PORT (default from [web] listen: 127.0.0.1:8440).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM server certificate (required off loopback).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM private key of --tls-cert, mode 0600.")
@passphrase_file_option
@click.pass_obj
def web_serve(app, listen, tls_cert, tls_key) -> None:
    """Serve the console until interrupted.

    With the CA passphrase (CERTMGR_CA_PASSPHRASE or --passphrase-file, read once at start, as the daemon does)
    operators can renew and admins revoke from the console; without it those buttons say why they are off.

    \b
    Examples:
      certmgr web serve
      certmgr web serve --passphrase-file /etc/certmgr/ca.pass
      certmgr web serve --listen 0.0.0.0:8440 --tls-cert /etc/certmgr/web.pem --tls-key /etc/certmgr/web.key
    """
    from ..durations import parse_duration
    from ..errors import InputError
    from ..secrets import check_secret_file

    settings = app.settings.web
    listen = listen or settings.listen
    tls_cert = tls_cert or (Path(settings.tls_cert) if settings.tls_cert else None)
    tls_key = tls_key or (Path(settings.tls_key) if settings.tls_key else None)
    host, port = parse_listen(listen)
    if bool(tls_cert) != bool(tls_key):
        raise InputError("give both --tls-cert and --tls-key, or neither", "pass the certificate and its key")
    if not is_loopback(host) and not tls_cert:
        raise InputError(f"--listen {listen} is not a loopback address and no TLS is configured: passwords would cross the "
                         "network in clear", "pass --tls-cert FILE --tls-key FILE, or listen on 127.0.0.1")
    if tls_key:
        check_secret_file(tls_key, "TLS key")
    app.require_initialised()
    import uvicorn

    from ..web.app import make_app

    web = make_app(app, idle_seconds=parse_duration(settings.idle_timeout).total_seconds(), tls=bool(tls_cert))
    click.echo(f"certmgr web console on {'https' if tls_cert else 'http'}://{listen}/", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning", ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None)


@web_group.group("user")
def web_user() -> None:
    """Console users and their roles."""


@web_user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
              help="viewer reads; operator also trusts rejected certificates; admin also revokes.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding the password (mode 0600); else a hidden prompt.")
@click.option("--replace", is_flag=True, help="Set a new password and role for an existing user.")
@json_option
@click.pass_obj
def web_user_add(app, name, role, password_file, replace) -> None:
    """Add a console user (the password is stored as a scrypt hash).

    \b
    Examples:
      certmgr web user add alice --role operator
      certmgr web user add grafana --role viewer --password-file /etc/certmgr/grafana.pw
    """
    from ..errors import InputError
    from ..secrets import read_secret_file
    from ..services.web_users import add_user

    app.require_initialised()
    if password_file is not None:
        try:
            password = read_secret_file(password_file, "password file").decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"the password file {password_file} is not UTF-8 text", "save it as UTF-8") from None
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    result = add_user(app, name, role, password, replace=replace)
    emit_json(result) if app.json else click.echo(f"web user {result['name']} ({result['role']}) saved")


@web_user.command("list")
@json_option
@click.pass_obj
def web_user_list(app) -> None:
    """Console users and their roles.

    \b
    Example:
      certmgr web user list
    """
    from ..services.web_users import list_users

    rows = list_users(app)
    if app.json:
        emit_json(rows)
    else:
        for row in rows:
            click.echo(f"{row['name']}\t{row['role']}\t{row['created_at']}")


COMMANDS = [web_group]
