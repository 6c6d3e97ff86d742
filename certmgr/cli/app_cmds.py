"""``certmgr app update`` and ``certmgr app add``: registered applications."""

from __future__ import annotations

import click

from .options import KEY_SIZES, ROLE_CHOICES, dns_option, ip_option, json_option
from .output import emit_json


@click.group("app")
def app_group() -> None:
    """Registered applications."""


@app_group.command("update")
@click.option("--app-uri", required=True)
@dns_option
@ip_option
@click.option("--endpoint", default=None, metavar="URL", help='opc.tcp:// endpoint for live proofs ("" clears).')
@click.option("--renew-before", default=None, metavar="DURATION", help='Renewal window, e.g. 30d ("" restores the default).')
@click.option("--deploy-hook", default=None, metavar="CMD", help='Shell command run after a switch ("" clears).')
@click.option("--role", type=click.Choice(ROLE_CHOICES), default=None)
@click.option("--key-size", type=click.Choice(KEY_SIZES), default=None)
@click.option("--days", type=int, default=None, help="Validity of the next certificates.")
@click.option("--name", default=None, metavar="CN")
@click.option("--org", "organization", default=None, metavar="O")
@click.option("--deploy", type=click.Choice(("file", "push")), default=None, help="How certificates reach the application.")
@click.option("--admin-user", default=None, help="Push: a user with the SecurityAdmin role on the server.")
@click.option("--admin-password-file", default=None, metavar="FILE", help="Push: file holding that user's password (mode 600).")
@click.option("--warn-before", default=None, metavar="DURATION", help='Alert level warning below this ("" restores [alerts] warning).')
@click.option("--crit-before", default=None, metavar="DURATION", help='Alert level critical below this ("" restores [alerts] critical).')
@json_option
@click.pass_obj
def app_update(app, app_uri, dns_names, ip_addresses, endpoint, renew_before, deploy_hook, role, key_size, days, name, organization,
               deploy, admin_user, admin_password_file, warn_before, crit_before) -> None:
    """Change an application's record; names and hosts take effect with the next certificate.

    --dns and --ip replace the lists (give each host again to keep it).

    \b
    Examples:
      certmgr app update --app-uri urn:plant1:historian --dns historian.plant1.local --ip 10.0.0.12
      certmgr app update --app-uri urn:plant1:historian --endpoint opc.tcp://historian.plant1.local:4840 \\
          --deploy-hook 'systemctl reload historian' --renew-before 30d
    """
    from ..services.apps import AppChanges, update_application

    app.require_initialised()
    changes = AppChanges(
        dns_names=dns_names or None, ip_addresses=ip_addresses or None, endpoint=endpoint, renew_before=renew_before,
        deploy_hook=deploy_hook, key_size=int(key_size) if key_size else None, days=days, role=role, name=name,
        organization=organization, warn_before=warn_before, crit_before=crit_before, deploy=deploy, admin_user=admin_user,
        admin_password_file=admin_password_file,
    )
    changed = update_application(app, app_uri, changes)
    if app.json:
        emit_json({k: {"old": v[0], "new": v[1]} for k, v in changed.items()})
    elif not changed:
        click.echo("nothing changed")
    else:
        for field, (old, new) in changed.items():
            click.echo(f"{field}: {old} -> {new}")  # the password itself is never stored, so never shown
        if {"dns_names", "ip_addresses", "name", "organization", "key_size"} & set(changed):
            click.echo(f"the current certificate is unchanged; `certmgr renew --force --app-uri {app_uri}` applies it now")


@app_group.command("add")
@click.option("--app-uri", required=True)
@click.option("--endpoint", default=None, metavar="URL", help="Push: the server's opc.tcp:// endpoint.")
@click.option("--deploy", type=click.Choice(("push", "pull")), required=True,
              help="push: certmgr sends certificates over OPC UA Part 12; pull: the application asks certmgr's GDS.")
@click.option("--admin-user", default=None, help="A user with the SecurityAdmin role on the server.")
@click.option("--admin-password-file", default=None, metavar="FILE", help="File holding that user's password (mode 600).")
@click.option("--name", default=None, metavar="CN")
@click.option("--org", "organization", default=None, metavar="O")
@dns_option
@ip_option
@click.option("--role", type=click.Choice(ROLE_CHOICES), default="server", show_default=True)
@click.option("--key-size", type=click.Choice(KEY_SIZES), default=None)
@click.option("--days", type=int, default=None)
@click.option("--renew-before", default=None, metavar="DURATION")
@json_option
@click.pass_obj
def app_add(app, app_uri, endpoint, deploy, admin_user, admin_password_file, name, organization, dns_names, ip_addresses, role,
            key_size, days, renew_before) -> None:
    """Register an application certmgr cannot write files for: a server certmgr pushes to over OPC UA (then
    `certmgr push`), or an application that pulls from certmgr's GDS with a CSR (`certmgr gds serve`).

    (Applications whose store certmgr writes are registered by `certmgr issue`.)

    \b
    Examples:
      certmgr app add --app-uri urn:plant1:plc7 --endpoint opc.tcp://plc7.plant1.local:4840 --deploy push \\
          --admin-user certadmin --admin-password-file /etc/certmgr/plc7.pass --dns plc7.plant1.local --ip 10.0.1.7
      certmgr app add --app-uri urn:plant1:gateway --deploy pull --dns gw1.plant1.local --role both
    """
    from ..services.apps import add_push_application

    app.require_initialised()
    if deploy == "pull":
        from ..errors import InputError
        from ..services.gds import add_pull_application

        if endpoint or admin_user or admin_password_file:
            raise InputError("--endpoint, --admin-user and --admin-password-file are for push", "leave them out with --deploy pull")
        result = add_pull_application(app, app_uri, name=name, organization=organization, dns_names=dns_names,
                                      ip_addresses=ip_addresses, role=role, key_size=int(key_size) if key_size else None,
                                      days=days, renew_before=renew_before)
        emit_json(result) if app.json else click.echo(
            f"registered {app_uri} to pull (GDS ApplicationId {result['application_id']}); it asks `certmgr gds serve` with a CSR")
        return
    result = add_push_application(
        app, app_uri, endpoint=endpoint, admin_user=admin_user, admin_password_file=admin_password_file, name=name,
        organization=organization, dns_names=dns_names, ip_addresses=ip_addresses, role=role,
        key_size=int(key_size) if key_size else None, days=days, renew_before=renew_before,
    )
    emit_json(result) if app.json else click.echo(f"registered {app_uri} for push to {endpoint}; next: certmgr push --app-uri {app_uri}")


COMMANDS = [app_group]
