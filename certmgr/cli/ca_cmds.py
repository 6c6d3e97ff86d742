"""``certmgr init`` and ``certmgr ca ...``."""

from __future__ import annotations

from pathlib import Path

import click

from .ca_root_cmds import root_group, root_passphrase_file_option
from .options import KEY_SIZES, ca_secret_options, json_option, passphrase_file_option
from .output import emit_json, key_values


@click.command()
@click.option("--ca-name", metavar="CN", default=None, help='CA subject CN (default "certmgr CA").')
@click.option("--org", "organization", metavar="O", default=None, help="Organization for the CA and, by default, every certificate.")
@click.option("--ca-key-size", type=click.Choice(KEY_SIZES), default=None, help="CA RSA key size (default 4096).")
@click.option("--ca-days", type=int, default=None, help="CA validity in days (default 3650).")
@click.option("--crl-days", type=int, default=None, help="Days between CRL thisUpdate and nextUpdate (default 30).")
@click.option("--join", is_flag=True, help="Add this home as another node of an existing certmgr (shared --db and CA files).")
@click.option("--ca-cert", type=click.Path(dir_okay=False, path_type=Path), default=None, help="With --join: the shared CA certificate.")
@click.option("--ca-key", metavar="URI|FILE", default=None,
              help="The CA key on a PKCS#11 token: 'pkcs11:token=NAME;object=LABEL' (generated there unless a key has that "
              "label; PIN from CERTMGR_PKCS11_PIN or --pin-file). With --join: that URI, or the shared encrypted CA key file.")
@click.option("--pkcs11-module", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --ca-key pkcs11:...: the token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.")
@click.option("--node", default=None, help="With --join: this node's name (default: host name).")
@click.option("--issuing-ca", is_flag=True, help="Make the CA an issuing CA under a root (with --root-dir).")
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --issuing-ca: the offline root's folder (`certmgr ca root create`); it signs the CA now.")
@click.option("--csr-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --issuing-ca: write the CA's CSR here for an enterprise root; `certmgr ca import-signed` completes the home.")
@root_passphrase_file_option
@ca_secret_options
@json_option
@click.pass_obj
def init(app, ca_name, organization, ca_key_size, ca_days, crl_days, join, ca_cert, ca_key, pkcs11_module, node,
         issuing_ca, root_dir, csr_out, root_passphrase_file) -> None:
    """Create the certmgr home, database, root CA (key encrypted at rest) and first CRL.

    \b
    Examples:
      export CERTMGR_CA_PASSPHRASE='correct horse battery staple'
      certmgr init --ca-name "Plant 1 CA" --org "Plant 1"
      CERTMGR_PKCS11_PIN=... certmgr init --ca-name "Plant 1 CA" \\
          --ca-key 'pkcs11:token=certmgr;object=plant1-ca' --pkcs11-module /usr/lib/softhsm/libsofthsm2.so
      CERTMGR_ROOT_PASSPHRASE=... certmgr init --issuing-ca --root-dir /media/root-ca --ca-name "Plant 1 CA"
      certmgr --db postgresql+psycopg://certmgr@db1/certmgr init --join \\
          --ca-cert /srv/certmgr-ca/ca.der --ca-key /srv/certmgr-ca/ca-key.pem --node site-b
    """
    from ..ca_key import read_ca_secret
    from ..services.setup import InitOptions, init_custody, initialise
    from ..services.setup_join import join_custody

    module = str(pkcs11_module) if pkcs11_module is not None else None
    if join:
        import socket

        from ..errors import InputError
        from ..services.setup_join import join as join_node

        if ca_cert is None or ca_key is None:
            raise InputError("--join needs the shared CA files", "pass --ca-cert FILE --ca-key FILE")
        if app.home.config_path.exists() and not app.home.init_marker.exists():
            raise InputError(f"{app.home.root} already holds a certmgr home", "give --home an empty or new folder")
        where = join_custody(app, ca_key, module)  # which secret to ask for: the key file's passphrase or the PIN
        result = join_node(app, node=node or socket.gethostname(), ca_cert=ca_cert, ca_key=ca_key, pkcs11_module=module,
                           passphrase=read_ca_secret(where, app.passphrase_file, app.pin_file))
        emit_json(result) if app.json else click.echo(key_values(list(result.items())))
        return

    from ..errors import InputError

    if issuing_ca != (root_dir is not None or csr_out is not None) or (root_dir is not None and csr_out is not None):
        raise InputError("--issuing-ca needs one of --root-dir DIR (an offline root here) or --csr-out FILE (another root)",
                         "pass --issuing-ca --root-dir DIR, or --issuing-ca --csr-out FILE")
    from ca.pkcs11 import is_pkcs11_uri

    if ca_key is not None and not is_pkcs11_uri(ca_key):
        raise InputError(f"--ca-key {ca_key}: a new CA's key is made by init, a key file is given only with --join",
                         "drop --ca-key for a key file in the home, or give a token key as --ca-key 'pkcs11:token=NAME;object=LABEL'")
    options = InitOptions(ca_name, organization, int(ca_key_size) if ca_key_size else None, ca_days, crl_days,
                          csr_out=csr_out, key_uri=ca_key, pkcs11_module=module)
    if app.home.ca_cert_path.exists() and not app.home.init_marker.exists():
        initialise(app, options, b"unused")  # refuses before asking for a passphrase
    where = init_custody(app, options)  # the token's PIN or the key file's passphrase: decided before asking
    passphrase = read_ca_secret(where, app.passphrase_file, app.pin_file,
                                confirm=not app.home.init_marker.exists() and not where.on_token)
    if root_dir is not None and not app.home.ca_cert_path.exists():  # a resumed init past signing needs no root
        from ..services.ca_root import read_root_passphrase

        options.root_dir, options.root_passphrase = root_dir, read_root_passphrase(root_passphrase_file)
    result = initialise(app, options, passphrase)
    if result.get("pending"):
        emit_json(result) if app.json else click.echo(key_values([("home", result["home"]), ("CA", result["ca_subject"]),
                                                                  ("CSR", result["csr"]), ("next", result["next"])]))
        return
    if app.json:
        emit_json(result)
        return
    click.echo(
        key_values(
            [
                ("home", result["home"]),
                ("CA", result["ca_subject"]),
                ("CA thumbprint", result["ca_thumbprint"]),
                ("CA not after", result["ca_not_after"]),
                ("CA certificate", result["ca_certificate"]),
                ("first CRL", f"number {result['crl_number']}"),
                ("database", result["database"]),
                ("verifier", f"{result['verifier_uri']} [{result['verifier_thumbprint']}]"),
            ]
        )
    )


@click.group("ca")
def ca_group() -> None:
    """The certificate authority."""


@ca_group.command("show")
@json_option
@click.pass_obj
def ca_show(app) -> None:
    """Show the CA certificate, its key file and its current CRL.

    \b
    Example:
      certmgr ca show --json
    """
    from ..services.ca_chain import root_summary
    from ..services.setup import ca_summary

    summary = {**ca_summary(app), "root": root_summary(app.home)}
    root = summary["root"]
    if app.json:
        emit_json(summary)
        return
    click.echo(
        key_values(
            [
                ("subject", summary["subject"]),
                ("thumbprint", summary["thumbprint"]),
                ("serial", summary["serial"]),
                ("valid", f"{summary['not_before']} .. {summary['not_after']}"),
                ("key", f"RSA {summary['key_size']} " + (f"on a PKCS#11 token: {summary['key']}" if summary["key_on_token"]
                                                         else f"({summary['key_file']}, encrypted)")),
                ("certificate", summary["certificate_file"]),
                ("CRL", f"number {summary['crl_number']}, next update {summary['crl_next_update']}, {summary['crl_revoked']} revoked"),
                ("root", f"{root['subject']} ({root['thumbprint']}), valid until {root['not_after']}; its CRL number "
                         f"{root['crl_number']}, next update {root['crl_next_update']}" if root else "none (the CA is its own root)"),
                ("findings", summary["findings"] or "none"),
            ]
        )
    )


@ca_group.command("import-signed")
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--root", "root", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The root CA certificate (DER or PEM).")
@click.option("--root-crl", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The root's current CRL.")
@ca_secret_options
@json_option
@click.pass_obj
def ca_import_signed(app, cert, root, root_crl) -> None:
    """Complete a home made by `init --issuing-ca --csr-out` with the certificate the root signed.

    \b
    Example:
      certmgr ca import-signed plant1-ca.der --root enterprise-root.der --root-crl enterprise-root.crl
    """
    from ..ca_key import custody, read_ca_secret
    from ..services.setup import import_signed

    result = import_signed(app, cert, root, root_crl, read_ca_secret(custody(app.home), app.passphrase_file, app.pin_file))
    emit_json(result) if app.json else click.echo(key_values([("home", result["home"]), ("CA", result["ca_subject"]),
                                                              ("CA thumbprint", result["ca_thumbprint"])]))


@ca_group.command("passphrase")
@click.option("--new-passphrase-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File (mode 0600) holding the new CA passphrase (else CERTMGR_NEW_CA_PASSPHRASE, else a prompt).")
@passphrase_file_option
@json_option
@click.pass_obj
def ca_passphrase(app, new_passphrase_file) -> None:
    """Re-encrypt the CA key with a new passphrase and the current KDF (scrypt); upgrades an old PBKDF2 key file.

    \b
    Example:
      CERTMGR_NEW_CA_PASSPHRASE='the new one' certmgr ca passphrase
    """
    from ..passphrase import read_passphrase, read_secret
    from ..services.setup import change_passphrase, refuse_on_token

    app.require_initialised()
    refuse_on_token(app, "`certmgr ca passphrase`")  # before any prompt: there is no passphrase to ask for
    old = read_passphrase(app.passphrase_file)
    new = read_secret(new_passphrase_file, env="CERTMGR_NEW_CA_PASSPHRASE", what="new CA passphrase",
                      option="--new-passphrase-file", confirm=True)
    result = change_passphrase(app, old, new)
    emit_json(result) if app.json else click.echo(key_values([("key", result["key"]), ("key encryption", result["key_encryption"])]))


ca_group.add_command(root_group)
from .ca_rollover_cmds import rollover_group  # noqa: E402  (click only: imports nothing heavy)

ca_group.add_command(rollover_group)

COMMANDS = [init, ca_group]
