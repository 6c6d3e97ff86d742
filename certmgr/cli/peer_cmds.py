"""``certmgr peer``, ``certmgr probe`` and ``certmgr fleet``: the endpoints certmgr does not issue for,
proof that trust and revocation took effect on live endpoints, and one health view."""

from __future__ import annotations

from pathlib import Path

import click

from .options import LAYOUT_CHOICES, confirm, json_option, yes_option
from .output import emit_json, key_values, table

PEER_COLUMNS = [("name", "NAME"), ("endpoint", "ENDPOINT"), ("store", "STORE"), ("thumbprint", "THUMBPRINT"),
                ("not_after", "NOT AFTER"), ("flags", "FLAGS")]


@click.group("peer")
def peer_group() -> None:
    """Endpoints and stores certmgr does not issue for (vendor servers, third-party applications)."""


@peer_group.command("add")
@click.option("--endpoint", default=None, metavar="URL", help="The peer's endpoint, opc.tcp://HOST:PORT (read with GetEndpoints).")
@click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A store folder of the peer that holds certmgr's CA (receives every new CRL).")
@click.option("--layout", type=click.Choice(LAYOUT_CHOICES), default="ua-net", show_default=True, help="Layout of that store.")
@click.option("--name", default=None, help="A name for the peer (default: the endpoint or the store folder's name).")
@json_option
@click.pass_obj
def peer_add(app, endpoint, store_dir, layout, name) -> None:
    """Register a peer; its certificate, profile findings and offered policies are recorded.

    \b
    Examples:
      certmgr peer add --endpoint opc.tcp://kepware01:49320 --name kepware01
      certmgr peer add --store /srv/vendor-gw/pki --layout node-opcua
    """
    from ..services.peers import add_peer

    data = add_peer(app, endpoint=endpoint, store=store_dir, name=name, layout=layout)
    emit_json(data) if app.json else _print_peer(data)


def _print_peer(data: dict) -> None:
    click.echo(key_values([(k, ", ".join(v) if isinstance(v, list) else v) for k, v in data.items() if not isinstance(v, dict)]))
    if data.get("last_probe"):
        click.echo(key_values([(f"probe {k}", v) for k, v in data["last_probe"].items()]))


@peer_group.command("list")
@json_option
@click.pass_obj
def peer_list(app) -> None:
    """List registered peers.

    \b
    Example:
      certmgr peer list --json
    """
    from ..services.peers import list_peers

    rows = list_peers(app)
    if app.json:
        emit_json(rows)
        return
    shown = [{**r, "flags": str(len(r["flags"])) if r["flags"] else "", "not_after": (r["not_after"] or "")[:19]} for r in rows]
    click.echo(table(shown, PEER_COLUMNS) if shown else "no peers")


@peer_group.command("show")
@click.argument("key", metavar="URL|NAME|STORE")
@json_option
@click.pass_obj
def peer_show(app, key) -> None:
    """Show a peer and its last probe.

    \b
    Example:
      certmgr peer show opc.tcp://kepware01:49320
    """
    from ..services.peers import show_peer

    data = show_peer(app, key)
    emit_json(data) if app.json else _print_peer(data)


@peer_group.command("remove")
@click.argument("key", metavar="URL|NAME|STORE")
@yes_option
@json_option
@click.pass_obj
def peer_remove(app, key, yes) -> None:
    """Forget a peer (its store receives no more CRLs from certmgr).

    \b
    Example:
      certmgr peer remove kepware01 --yes
    """
    from ..services.peers import remove_peer, show_peer

    shown = show_peer(app, key)  # bad input fails before the question
    confirm(f"Remove peer {shown['endpoint'] or shown['store']}?", yes)
    data = remove_peer(app, key)
    emit_json(data) if app.json else click.echo(f"removed peer {data['name']}")


@peer_group.command("scan")
@click.argument("url", metavar="opc.tcp://HOST:PORT")
@click.option("--add", "add_found", is_flag=True, help="Register every server found that is not registered yet.")
@json_option
@click.pass_obj
def peer_scan(app, url, add_found) -> None:
    """Find servers through FindServers (an LDS or any server) and list what each offers, weak policies flagged.

    \b
    Examples:
      certmgr peer scan opc.tcp://lds01:4840
      certmgr peer scan opc.tcp://lds01:4840 --add --json
    """
    from ..errors import CertmgrError
    from ..services.peers import add_peer, scan

    app.require_initialised()
    found = scan(app, url)
    if add_found:
        for entry in found:
            if entry.get("error"):
                continue
            try:
                entry["added"] = bool(add_peer(app, endpoint=entry["endpoint"], store=None, name=entry.get("name"), source="peer scan"))
            except CertmgrError as exc:
                entry["added"], entry["not_added"] = False, exc.one_line()
    if app.json:
        emit_json(found)
        return
    for entry in found:
        click.echo(f"{entry['endpoint']}  {entry.get('app_uri') or ''}  {entry.get('thumbprint') or entry.get('error')}")
        for offered in entry.get("offered", []):
            click.echo(f"    offers {offered}")
        for flag in entry.get("flags", []):
            click.echo(f"    FLAG {flag}")


@click.command("probe")
@click.option("--all", "all_", is_flag=True, help="Every application and peer endpoint.")
@click.option("--app-uri", default=None, help="One managed application's endpoint.")
@click.option("--peer", default=None, metavar="URL", help="One peer endpoint.")
@json_option
@click.pass_obj
def probe_cmd(app, all_, app_uri, peer) -> None:
    """Prove on live endpoints that they trust certmgr's CA and which CRL they have in effect.

    Two SignAndEncrypt attempts per endpoint: certmgr's verifier (must be accepted) and a canary revoked
    in the newest CRL (must be refused). Exit 0 when every endpoint trusts the CA with the current CRL in
    effect, 1 otherwise.

    \b
    Examples:
      certmgr probe --all
      certmgr probe --peer opc.tcp://kepware01:49320 --json
    """
    from ..errors import OperationFailed
    from ..services.probe import probe, probe_targets

    app.require_initialised()
    outcomes = probe(app, probe_targets(app, all_=all_, app_uri=app_uri, peer=peer))
    if app.json:
        emit_json([o.as_dict() for o in outcomes])
    else:
        for o in outcomes:
            trusts = {True: "trusts certmgr's CA", False: "does NOT trust certmgr's CA", None: "unreachable"}[o.trusts_ca]
            effective = f"CRL {o.crl_effective} in effect" if o.crl_effective is not None else "revocation not effective"
            click.echo(f"{o.endpoint}: {trusts}; {effective} (current {o.crl_current}); seen {', '.join(o.statuses)}")
            if o.fix:
                click.echo(f"    fix: {o.fix}")
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise OperationFailed(f"{len(bad)} of {len(outcomes)} endpoint(s) not proven", "apply the fix shown for each")


@click.group("fleet")
def fleet_group() -> None:
    """One health view over applications and peers."""


@fleet_group.command("status")
@json_option
@click.pass_obj
def fleet_status_cmd(app) -> None:
    """Every application and peer: certificate level, trust of certmgr's CA, CRL in effect, last probe, fix.
    Exit 0 ok, 1 warning, 2 critical (like `certmgr check`).

    \b
    Example:
      certmgr fleet status --json
    """
    from ..services.fleet import fleet_status

    data = fleet_status(app)
    if app.json:
        emit_json(data["rows"])
    else:
        columns = [("kind", "KIND"), ("app_uri", "APPLICATION"), ("endpoint", "ENDPOINT"), ("not_after", "NOT AFTER"),
                   ("level", "LEVEL"), ("trusts_ca", "TRUSTS CA"), ("crl_effective", "CRL"), ("last_probe", "PROBED"), ("fix", "FIX")]
        shown = [{**r, "not_after": (r["not_after"] or "")[:10], "last_probe": (r["last_probe"] or "")[:16],
                  "pulled": (r.get("last_trust_list_pull") or r.get("last_pull") or "")[:16]} for r in data["rows"]]
        if any(r["kind"] == "pull" for r in data["rows"]):  # when an agent last fetched its trust list (or certificate)
            columns.insert(-1, ("pulled", "PULLED"))
        click.echo(table(shown, columns) if shown else "nothing registered")
        click.echo(f"current CRL: {data['crl_current']}")
    if data["code"]:
        click.get_current_context().exit(data["code"])


COMMANDS = [peer_group, probe_cmd, fleet_group]
