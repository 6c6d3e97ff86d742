"""``certmgr store ...``, ``certmgr trust-exchange`` and ``certmgr diagnose``."""

from __future__ import annotations

from pathlib import Path

import click

from .options import LAYOUT_CHOICES, confirm, json_option, yes_option
from .output import emit_json, key_values, table, warn

layout_of_store = click.option(
    "--layout", type=click.Choice(LAYOUT_CHOICES), default=None, help="Store layout (default: as registered, else detected)."
)
store_argument = click.argument("store_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))


@click.group("store")
def store_group() -> None:
    """Inspect application stores and triage certificates (any OPC UA store, managed or not)."""


@store_group.command("status")
@store_argument
@layout_of_store
@json_option
@click.pass_obj
def store_status(app, store_dir, layout) -> None:
    """Everything a store holds and everything wrong with it; exit 1 if anything is an error.

    \b
    Example:
      certmgr store status /opt/historian/pki
    """
    from ..errors import OperationFailed
    from ..services.store_inspect import inspect_store, open_store

    store = open_store(app, store_dir, layout)
    report = inspect_store(store, app.now())
    from ..services.fleet import stale_crl_problem  # issue 15: a store behind certmgr's current CRL is an error

    stale = stale_crl_problem(app, store)
    if stale is not None:
        report.problems.append(stale)
    if app.json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    if not report.ok:
        errors = sum(1 for p in report.problems if p.severity == "error")
        raise OperationFailed(f"{errors} problem(s) in {report.root}", "see the lines marked ERROR")


def _print_report(report) -> None:
    click.echo(f"store {report.root} ({report.layout})")
    own = report.own
    if own:
        click.echo(key_values([
            ("own certificate", own["subject"]), ("application URI", own["app_uri"]), ("thumbprint", own["thumbprint"]),
            ("issuer", own["issuer"]), ("not after", own["not_after"]), ("key", own["key"]), ("signature", own["signature"]),
        ]))
    for label, rows in (("trusted", report.trusted), ("issuers", report.issuers)):
        click.echo(f"\n{label}:")
        click.echo(table(rows, [("subject", "SUBJECT"), ("thumbprint", "THUMBPRINT"), ("not_after", "NOT AFTER")]) if rows else "  none")
    click.echo("\nCRLs:")
    click.echo(table(report.crls, [("issuer", "ISSUER"), ("number", "NUMBER"), ("next_update", "NEXT UPDATE"), ("signature_valid", "SIGNED")]) if report.crls else "  none")
    click.echo(f"\nrejected: {len(report.rejected)}")
    for problem in report.problems:
        click.echo(f"{problem.severity.upper()}: {problem.message} ({problem.where})")
    if not report.problems:
        click.echo("no problems")


@store_group.command("rejected")
@click.argument("store_dir", metavar="DIR", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--all", "all_stores", is_flag=True, help="Every registered store.")
@click.option("--app-uri", default=None, help="A push-managed server: its GetRejectedList over OPC UA.")
@layout_of_store
@json_option
@click.pass_obj
def store_rejected(app, store_dir, all_stores, app_uri, layout) -> None:
    """Certificates that peers presented and the store's application refused.

    \b
    Examples:
      certmgr store rejected /opt/historian/pki
      certmgr store rejected --all --json
      certmgr store rejected --app-uri urn:plant1:plc7      # push-managed: GetRejectedList
    """
    from ..errors import InputError
    from ..services.store_inspect import describe, open_store, registered_store_list, rejected_entries

    if sum(bool(x) for x in (store_dir, all_stores, app_uri)) != 1:
        raise InputError("say which stores", "give DIR, --all or --app-uri")
    if app_uri:
        from cryptography import x509

        from ..services.push import rejected_list

        app.require_initialised()
        rows = [{**describe(x509.load_der_x509_certificate(der)), "store": app_uri} for der in rejected_list(app, app_uri)]
        stores = []
    elif all_stores:
        app.require_initialised()
        stores = registered_store_list(app)
    else:
        stores = [open_store(app, store_dir, layout)]
    if not app_uri:
        rows = [{**entry, "store": str(store.root)} for store in stores for entry in rejected_entries(store)]
    if app.json:
        emit_json(rows)
    elif rows:
        click.echo(table(rows, [("store", "STORE"), ("subject", "SUBJECT"), ("app_uri", "APPLICATION URI"), ("issuer", "ISSUER"),
                                ("thumbprint", "THUMBPRINT"), ("not_after", "NOT AFTER"), ("first_seen", "FIRST SEEN")]))
    else:
        click.echo("no rejected certificates")


def _triage(app, store_dir, layout, prefix, kinds, to_kind, action, question, yes) -> None:
    from ..services.store_inspect import open_store
    from ..services.triage import check_before_trust, find, find_file, move, remove_file

    app.require_initialised()
    store = open_store(app, store_dir, layout)
    named = find_file(store, prefix, kinds) if to_kind is None else None
    if named is not None:  # `store remove` of a file by name: the way to remove an unreadable file
        confirm(f"Remove {named}?", yes)
        remove_file(app, store, named)
        emit_json({"thumbprint": None, "from": str(named), "to": None}) if app.json else click.echo(f"{named} -> removed")
        return
    match = find(store, prefix, kinds)
    if to_kind == "trusted":
        check_before_trust(app, store, match.certificate, warn)
    if not app.json:
        click.echo(key_values(list(match.details().items())), err=True)
    confirm(question.format(subject=match.certificate.subject.rfc4514_string()), yes)
    target = move(app, store, match, to_kind, action)
    result = {"thumbprint": match.details()["thumbprint"], "from": str(match.path), "to": str(target) if target else None}
    emit_json(result) if app.json else click.echo(f"{result['from']} -> {result['to'] or 'removed'}")


def _triage_command(name: str, help_text: str, kinds: tuple[str, ...], to_kind: str | None, question: str):
    """trust, reject and remove differ only in where they look, where the certificate goes, and the question."""

    @store_group.command(name, help=help_text)
    @store_argument
    @click.argument("thumbprint")
    @layout_of_store
    @yes_option
    @json_option
    @click.pass_obj
    def command(app, store_dir, thumbprint, layout, yes) -> None:
        _triage(app, store_dir, layout, thumbprint, kinds, to_kind, f"store.{name}", question, yes)

    return command


store_trust = _triage_command(
    "trust",
    "Move a rejected certificate to trusted/certs (thumbprint prefix of 8+ hex digits).\n\n"
    "\b\nExample:\n  certmgr store trust /opt/historian/pki 35FE16F0E016BFF2",
    ("rejected",), "trusted", "Trust {subject}?",
)
store_reject = _triage_command(
    "reject",
    "Move a trusted certificate back to rejected.\n\n\b\nExample:\n  certmgr store reject /opt/historian/pki 35FE16F0E016BFF2 --yes",
    ("trusted",), "rejected", "Stop trusting {subject}?",
)
store_remove = _triage_command(
    "remove",
    "Delete a trusted, issuer or rejected certificate from a store: by thumbprint prefix, or by file name (relative to\n"
    "its folder or to the store), which also removes a file that is not a readable certificate.\n\n"
    "\b\nExamples:\n  certmgr store remove /opt/historian/pki 35FE16F0E016BFF2\n  certmgr store remove /opt/historian/pki trusted/certs/garbage.der",
    ("trusted", "issuer", "rejected"), None, "Remove {subject}?",
)


@store_group.command("import")
@store_argument
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trusted", "kind", flag_value="trusted", help="Into trusted/certs (peers and CAs you trust).")
@click.option("--issuer", "kind", flag_value="issuer", help="Into issuer(s)/certs (CAs needed only to build chains).")
@click.option("--crl", "crl_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The CA's CRL (required for a CA, or peers fail).")
@layout_of_store
@json_option
@click.pass_obj
def store_import(app, store_dir, file, kind, crl_file, layout) -> None:
    """Import a PEM or DER certificate or CA into a store.

    \b
    Examples:
      certmgr store import /opt/historian/pki kepware.der --trusted
      certmgr store import /opt/historian/pki vendor-ca.pem --trusted --crl vendor-ca.crl
    """
    from ..errors import InputError
    from ..services.store_inspect import open_store
    from ..services.triage import import_certificate

    if kind is None:
        raise InputError("say where the certificate goes", "pass --trusted or --issuer")
    app.require_initialised()
    result = import_certificate(app, open_store(app, store_dir, layout), file, kind, crl_file, warn)
    emit_json(result) if app.json else click.echo(f"imported {result['certificate']['subject']} into {result['file']}" + (f", CRL {result['crl']}" if result["crl"] else ""))
    if result.get("peer") and not app.json:
        click.echo(f"registered {result['store']} as a peer store: it receives every new CRL (certmgr peer list)")


@click.command("trust-exchange")
@click.option("--app-uri", required=True, help="The managed application that will connect to the server.")
@click.option("--endpoint", required=True, metavar="URL", help="The third-party server, opc.tcp://HOST:PORT.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write what the server must trust (CA certificate, CA CRL, application certificate, README.txt) here.")
@yes_option
@json_option
@click.pass_obj
def trust_exchange(app, app_uri, endpoint, export_dir, yes) -> None:
    """Trust a third-party server now, and give its administrator what to trust in return.

    Reads the server certificate from the server's endpoints, shows it for inspection, trusts it in the
    application's store on confirmation, and exports what the server must trust in return: certmgr's CA
    certificate and current CRL, the application's own certificate, and a README.txt saying which file
    goes where in the server's store. The first connection then succeeds.

    \b
    Example:
      certmgr trust-exchange --app-uri urn:plant1:historian --endpoint opc.tcp://kepware01:49320 --export ./for-kepware
    """
    from ..services.exchange import trust_exchange as exchange
    from .output_paths import check_output_dir

    if export_dir is not None:
        export_dir = check_output_dir(export_dir, "--export")

    def ask(details: dict) -> None:
        if not app.json:
            click.echo(key_values([(k, v) for k, v in details.items()]), err=True)
        confirm(f"Trust {details['subject']} in the store of {app_uri}?", yes)

    result = exchange(app, app_uri, endpoint, confirm=ask, export_dir=export_dir)
    if app.json:
        emit_json(result)
        return
    state = "was already trusted" if result["already_trusted"] else f"is now trusted ({result['trusted_file']})"
    click.echo(f"server certificate {result['server_certificate']['thumbprint']} {state}")
    if result.get("peer"):
        click.echo(f"registered {endpoint} as a peer: its certificate is tracked (certmgr peer show {endpoint})")
    if result.get("bundle_peer"):
        click.echo(f"registered {result['exported_to']} as an exported bundle: after each revocation certmgr lists it until "
                   "you run this command again (certmgr peer list)")
    offer = result["for_the_server"]
    if "exported_to" in result:
        where = f"exported to {result['exported_to']}; {offer['readme']} there says which file goes where"
    else:
        where = "use --export DIR to write them"
    click.echo(f"The server's administrator must copy these files into the server's certificate store ({where}):")
    click.echo(f"  either certmgr's CA: {offer['ca_certificate']} into trusted/certs and its CRL {offer['ca_crl']} into trusted/crl "
               "(covers every certmgr application and every renewal)")
    only = f"  or only this application: {offer['application_certificate']} into trusted/certs"
    if result["application_is_ca_signed"]:
        only += (f"; the server then also needs certmgr's CA {offer['ca_certificate']} in its issuer store (issuer/certs) and "
                 f"its CRL {offer['ca_crl']} (issuer/crl) to build the chain")
    click.echo(only)


@click.command()
@click.argument("url", metavar="opc.tcp://HOST:PORT")
@click.option("--app-uri", default=None, help="Connect as this managed application (default: certmgr's verifier).")
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Connect with this store's identity.")
@click.option("--user", default=None, help="User name for the session (default: anonymous).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File holding the user's password.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per step.")
@json_option
@click.pass_obj
def diagnose(app, url, app_uri, store_dir, user, password_file, timeout) -> None:
    """Check our own certificate (dates, revocation by certmgr, profile), audit a server's endpoints and
    test a secure session; name the failing stage, the side that refused and the fix. Exit 0 when a secure
    session works with a valid, unrevoked certificate of ours, 1 otherwise. The password file must be
    readable by its owner only (chmod 600).

    \b
    Examples:
      certmgr diagnose opc.tcp://kepware01:49320 --app-uri urn:plant1:historian
      certmgr diagnose opc.tcp://plc7:4840 --store /opt/scada/pki --user operator --password-file ~/.plc7
    """
    from ..errors import InputError, OperationFailed
    from ..services.diagnose import diagnose as run

    credentials = None
    if user:
        if password_file is None:
            raise InputError("--user needs --password-file", "put the password in a file readable only by you")
        from ..secrets import read_secret_file

        try:
            password = read_secret_file(password_file, "password file").decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"the password file {password_file} is not UTF-8 text", "save it as UTF-8") from None
        credentials = (user, password)
    result = run(app, url, app_uri=app_uri, store_dir=store_dir, user=credentials, timeout=timeout)
    if app.json:
        emit_json(result.as_dict())
    else:
        click.echo(f"identity: {result.identity.get('app_uri')} [{result.identity.get('thumbprint')}]")
        if result.endpoints:
            click.echo(table(result.endpoints, [("mode", "MODE"), ("policy", "POLICY"), ("user_tokens", "USER TOKENS")]))
        if result.server_certificate:
            cert = result.server_certificate
            click.echo(f"server certificate: {cert['subject']} [{cert['thumbprint']}] until {cert['not_after']}")
        for finding in result.findings:
            click.echo(f"{finding['severity'].upper()}: {finding['message']}")
        connection = result.connection or {}
        if connection.get("ok"):
            click.echo(f"secure session OK ({connection['policy']}, SignAndEncrypt)")
        elif connection:
            side = {"client": "certmgr's side (we refused the server)", "server": "the server"}.get(connection.get("refused_by"))
            click.echo(f"FAILED at {connection['failed_stage']}: {connection['status']}" + (f", refused by {side}" if side else ""))
            click.echo(f"  {connection['message']}")
        if result.fix:
            click.echo(f"fix: {result.fix}")
    if not result.ok:
        # the fix is in the report on stdout (or in the JSON): stderr only says that it failed
        raise OperationFailed(f"no secure session with {url}")


COMMANDS = [store_group, trust_exchange, diagnose]
