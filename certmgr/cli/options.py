"""Options shared by several commands, defined once (pip-tools style)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import constants

LAYOUT_CHOICES = constants.LAYOUT_NAMES
KEY_SIZES = tuple(str(bits) for bits in constants.KEY_SIZES)  # click choices are strings
ROLE_CHOICES = constants.ROLES


def _set_json(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().obj.json = True


def _set_passphrase_file(ctx: click.Context, _param, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().obj.passphrase_file = value


def _set_pin_file(ctx: click.Context, _param, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().obj.pin_file = value


json_option = click.option(
    "--json", "json_output", is_flag=True, expose_value=False, callback=_set_json, help="Print JSON instead of a table."
)
passphrase_file_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    expose_value=False,
    callback=_set_passphrase_file,
    help="File holding the CA passphrase (else CERTMGR_CA_PASSPHRASE, else a hidden prompt).",
)
pin_file_option = click.option(
    "--pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    expose_value=False,
    callback=_set_pin_file,
    help="When the CA key is on a PKCS#11 token: file (mode 0600) holding the token's user PIN "
    "(else CERTMGR_PKCS11_PIN, else a hidden prompt; never an argument).",
)


def ca_secret_options(command):
    """--passphrase-file and --pin-file: every command that signs with the CA key takes both, and uses the one
    the home's key custody needs (certmgr/ca_key.py)."""
    return passphrase_file_option(pin_file_option(command))


layout_option = click.option(
    "--layout",
    type=click.Choice(LAYOUT_CHOICES),
    default=None,
    help="Store layout of the application's OPC UA stack (default from certmgr.toml: ua-net).",
)
key_size_option = click.option(
    "--key-size", type=click.Choice(KEY_SIZES), default=None, help="RSA key size (default 2048)."
)
dns_option = click.option("--dns", "dns_names", multiple=True, metavar="NAME", help="DNS name for the SAN (repeatable).")
ip_option = click.option("--ip", "ip_addresses", multiple=True, metavar="ADDR", help="IP address for the SAN (repeatable).")
renew_before_option = click.option(
    "--renew-before", metavar="DURATION", default=None, help="Renew when less than this is left, e.g. 30d (default: a third of the lifetime)."
)

yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless --yes was given (never act silently)."""
    import sys

    from ..errors import InputError

    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(f"{question.rstrip('?')} needs confirmation and there is no terminal", "pass --yes")
    if not click.confirm(question, default=False, err=True):
        raise click.Abort()


def read_new_password(name: str, password_file) -> str:
    """A new user's password (`web user add`, `gds user add`): from a 0600 file, else a hidden prompt asked twice."""
    from ..errors import InputError
    from ..secrets import read_secret_file

    if password_file is None:
        return click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    try:
        return read_secret_file(password_file, "password file").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"the password file {password_file} is not UTF-8 text", "save it as UTF-8") from None


# `web user add` and `gds user add`: the same two options and the same list output
new_password_file_option = click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                        help="File holding the password (mode 0600); else a hidden prompt.")
replace_user_option = click.option("--replace", is_flag=True, help="Set a new password and role for an existing user.")


def show_users(app, rows: list[dict]) -> None:
    from .output import emit_json

    if app.json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['role']}\t{row['created_at']}")
