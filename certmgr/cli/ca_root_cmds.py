"""``certmgr ca root ...``: the offline root CA (no home or database needed)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import KEY_SIZES, json_option
from .output import emit_json, key_values

root_passphrase_file_option = click.option(
    "--root-passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (mode 0600) holding the root's own passphrase (else CERTMGR_ROOT_PASSPHRASE); never the CA passphrase.",
)
root_dir_option = click.option(
    "--root-dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="The offline root's folder."
)
crl_days_option = click.option("--crl-days", type=int, default=None, help="Days until the root CRL's nextUpdate (default 365).")


def _show(app, result: dict, rows: list[tuple[str, str]]) -> None:
    if app.json:
        emit_json(result)
    else:
        click.echo(key_values([(label, result[key]) for label, key in rows]))


@click.group("root")
def root_group() -> None:
    """The offline root CA above issuing CAs: create it, renew its CRL, sign issuing CAs."""


@root_group.command("create")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New folder for the root.")
@click.option("--name", metavar="CN", default=None, help='Root subject CN (default "certmgr Root CA").')
@click.option("--org", "organization", metavar="O", default=None, help="Organization of the root's subject.")
@click.option("--days", type=int, default=None, help="Root validity in days (default 7300).")
@click.option("--key-size", type=click.Choice(KEY_SIZES), default="4096", show_default=True, help="Root RSA key size.")
@crl_days_option
@root_passphrase_file_option
@json_option
@click.pass_obj
def root_create(app, out, name, organization, days, key_size, crl_days, root_passphrase_file) -> None:
    """Create an offline root: DIR/root.der (+ .pem), DIR/root.crl, DIR/private/root-key.pem, DIR/root-state.json.

    \b
    Example:
      export CERTMGR_ROOT_PASSPHRASE='a passphrase of the root alone'
      certmgr ca root create --out /media/root-ca --name "Plant 1 Root CA" --org "Plant 1"
    """
    from ..services.ca_root import create_root, read_root_passphrase

    passphrase = read_root_passphrase(root_passphrase_file, confirm=True)
    result = create_root(out, passphrase, now=app.now(), name=name, organization=organization, days=days,
                         key_size=int(key_size), crl_days=crl_days)
    _show(app, result, [("root", "subject"), ("thumbprint", "thumbprint"), ("not after", "not_after"),
                        ("certificate", "certificate"), ("key", "key"), ("key encryption", "key_encryption"),
                        ("CRL", "crl"), ("CRL next update", "crl_next_update")])


@root_group.command("sign-crl")
@root_dir_option
@click.option("--revoke", "revoke", multiple=True, metavar="SERIAL", help="Revoke an issuing CA by serial (hex; repeatable).")
@click.option("--reason", default="keyCompromise", show_default=True,
              type=click.Choice(["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified"]))
@crl_days_option
@root_passphrase_file_option
@json_option
@click.pass_obj
def root_sign_crl(app, root_dir, revoke, reason, crl_days, root_passphrase_file) -> None:
    """Renew the root's CRL (CRL number + 1), optionally revoking issuing CAs.

    \b
    Example:
      certmgr ca root sign-crl --root-dir /media/root-ca
      certmgr ca root sign-crl --root-dir /media/root-ca --revoke 5f3a9c01d2
    """
    from ..services.ca_root import read_root_passphrase, sign_root_crl

    passphrase = read_root_passphrase(root_passphrase_file)
    result = sign_root_crl(root_dir, passphrase, now=app.now(), revoke=list(revoke), reason=reason, crl_days=crl_days)
    _show(app, result, [("CRL", "crl"), ("CRL number", "crl_number"), ("next update", "crl_next_update"), ("revoked", "revoked_serials")])


@root_group.command("sign-csr")
@click.argument("csr", type=click.Path(dir_okay=False, path_type=Path))
@root_dir_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Certificate to write (.der, or .pem for PEM).")
@click.option("--days", type=int, default=None, help="Issuing CA validity in days (default 1825, never past the root).")
@root_passphrase_file_option
@json_option
@click.pass_obj
def root_sign_csr(app, csr, root_dir, out, days, root_passphrase_file) -> None:
    """Sign an issuing CA's CSR with the offline root (the profile sets the extensions, not the CSR).

    \b
    Example:
      certmgr ca root sign-csr issuing.csr --root-dir /media/root-ca --out issuing-ca.der
    """
    from ..services.ca_root import read_root_passphrase, sign_issuing_csr

    passphrase = read_root_passphrase(root_passphrase_file)
    result = sign_issuing_csr(csr, root_dir, out, passphrase, now=app.now(), days=days)
    _show(app, result, [("certificate", "certificate"), ("subject", "subject"), ("serial", "serial"),
                        ("thumbprint", "thumbprint"), ("not after", "not_after"), ("issuer", "issuer")])


COMMANDS: list[click.Command] = []  # `root` is a subgroup of `ca` (cli/ca_cmds.py), not a top-level command
