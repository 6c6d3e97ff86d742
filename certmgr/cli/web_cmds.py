"""``certmgr web ...``: the operator console (serve) and its users."""

from __future__ import annotations

from pathlib import Path

import click

from .options import ca_secret_options, json_option, new_password_file_option, replace_user_option, show_users
from .output import emit_json

ROLE_NAMES = ("viewer", "operator", "admin")


@click.group("web")
def web_group() -> None:
    """The operator web console: fleet, rejected inbox, audit log (`certmgr web serve`)."""


@web_group.command("serve")
@click.option("--listen", default=None, help="HOST:PORT (default from [web] listen: 127.0.0.1:8440).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM server certificate (required off loopback).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM private key of --tls-cert, mode 0600.")
@ca_secret_options
@click.pass_obj
def web_serve(app, listen, tls_cert, tls_key) -> None:
    """Serve the console until interrupted.

    With the CA passphrase (CERTMGR_CA_PASSPHRASE or --passphrase-file), or the token PIN of a CA key on a PKCS#11
    token (CERTMGR_PKCS11_PIN or --pin-file), read once at start as the daemon does, operators can renew and admins
    revoke from the console; without it those buttons say why they are off.

    \b
    Examples:
      certmgr web serve
      certmgr web serve --passphrase-file /etc/certmgr/ca.pass
      certmgr web serve --pin-file /etc/certmgr/token.pin        # CA key on a PKCS#11 token
      certmgr web serve --listen 0.0.0.0:8440 --tls-cert /etc/certmgr/web.pem --tls-key /etc/certmgr/web.key
    """
    from ..web.serving import plan, serve_foreground

    serve_plan = plan(app.settings, listen, tls_cert, tls_key)  # exit 2 before anything listens
    app.require_initialised()
    serve_foreground(app, serve_plan, announce=lambda: click.echo(f"certmgr web console on {serve_plan.url}", err=True))


@web_group.group("user")
def web_user() -> None:
    """Console users and their roles."""


@web_user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
              help="viewer reads; operator also trusts rejected certificates; admin also revokes.")
@new_password_file_option
@replace_user_option
@json_option
@click.pass_obj
def web_user_add(app, name, role, password_file, replace) -> None:
    """Add a console user (the password is stored as a scrypt hash).

    \b
    Examples:
      certmgr web user add alice --role operator
      certmgr web user add grafana --role viewer --password-file /etc/certmgr/grafana.pw
    """
    from ..services.web_users import add_user
    from .options import read_new_password

    app.require_initialised()
    result = add_user(app, name, role, read_new_password(name, password_file), replace=replace)
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

    show_users(app, list_users(app))


COMMANDS = [web_group]
