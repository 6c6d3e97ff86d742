"""``certmgr ca rollover start|status|advance|finish`` and ``certmgr ca rollover --emergency --yes``."""

from __future__ import annotations

import click

from .options import json_option, passphrase_file_option
from .output import emit_json, key_values


def _show(app, result: dict, extra: list[tuple[str, object]] = ()) -> None:
    if app.json:
        emit_json(result)
        return
    rows = [("phase", result["phase"]), ("old CA", f"{result['old_subject']} [{result['old_ca']}]" if result["old_ca"] else "-"),
            ("new CA", f"{result['new_subject']} [{result['new_ca']}]" if result["new_ca"] else "-"),
            ("applications", f"{result['applications']['old_ca']} under the old CA, {result['applications']['new_ca']} under the new")]
    rows += list(extra)
    rows.append(("blocking", "\n".join(result["blocking"]) if result["blocking"] else "nothing"))
    if result.get("unreached"):
        rows.append(("not reachable", "\n".join(result["unreached"])))
    click.echo(key_values(rows))


@click.group("rollover", invoke_without_command=True)
@click.option("--emergency", is_flag=True, help="The CA is compromised: re-key every application under a new CA now.")
@click.option("--yes", is_flag=True, help="Confirm --emergency (it removes the current CA from every store).")
@passphrase_file_option
@json_option
@click.pass_context
def rollover_group(ctx: click.Context, emergency: bool, yes: bool) -> None:
    """Move the fleet to the next CA generation, with both trusted in between.

    \b
    Examples:
      certmgr ca rollover start        # the next CA ("Plant 1 CA G2") in every store beside the current one
      certmgr ca rollover status --json
      certmgr ca rollover advance      # the new CA signs; every application re-issued (with proofs)
      certmgr ca rollover finish       # the old CA out of every store
      certmgr ca rollover --emergency --yes
    """
    from ..errors import InputError

    app = ctx.find_root().obj
    if ctx.invoked_subcommand is not None:
        if emergency or yes:
            raise InputError("--emergency and --yes go without a phase", "run `certmgr ca rollover --emergency --yes`")
        return
    if not emergency:
        if yes:
            raise InputError("--yes confirms --emergency only", "run `certmgr ca rollover --emergency --yes`, or a phase")
        click.echo(ctx.get_help())
        ctx.exit(2)
    if not yes:
        raise InputError("--emergency removes the current CA from every store and re-keys every application",
                         "confirm with `certmgr ca rollover --emergency --yes`")
    from ..services.rollover_emergency import emergency as run_emergency

    result = run_emergency(app)
    failed = _failed(result)
    _show(app, result, [("re-keyed", f"{len(result['renewals']) - len(failed)} of {len(result['renewals'])}"),
                        ("revoked", f"{result['revoked']} certificates of the old CA (cACompromise)")])
    if failed:
        from ..errors import OperationFailed

        raise OperationFailed(f"{len(failed)} application(s) were not re-keyed", "see the lines above, fix them, run it again")


@rollover_group.command("start")
@passphrase_file_option
@json_option
@click.pass_obj
def rollover_start(app) -> None:
    """Create the next CA generation and put its certificate and CRL in every store, beside the current CA."""
    from ..services.rollover import start

    result = start(app)
    errors = [s for s in result["stores"] if s["status"] == "error"]
    pushed = result["push_servers"]
    _show(app, result, [("stores", f"{len(result['stores']) - len(errors)} written, {len(errors)} failed"),
                        ("push TrustLists", f"{sum(r['ok'] for r in pushed)} of {len(pushed)} hold the new CA (read back)")]
          + [(r["app_uri"], "; ".join(f"{s['step']}: {s['status']} {s['detail']}" for s in r["steps"][-2:]))
             for r in pushed if not r["ok"]])
    if errors:
        from ..errors import OperationFailed

        raise OperationFailed(f"{len(errors)} store(s) could not be written", "fix them, then run start again")


@rollover_group.command("status")
@click.option("--no-probe", is_flag=True, help="Do not probe live endpoints (stores only).")
@passphrase_file_option
@json_option
@click.pass_obj
def rollover_status(app, no_probe: bool) -> None:
    """The phase, both CAs, how many applications each signed, and what blocks the next phase."""
    from ..services.rollover import status

    result = status(app, probe=not no_probe)
    _show(app, result, [("probes", "\n".join(f"{p['endpoint']}: {'trusts' if p['trusts_new_ca'] else 'refuses'} the new CA"
                                             for p in result["probes"]) or "none")])


@rollover_group.command("advance")
@passphrase_file_option
@json_option
@click.pass_obj
def rollover_advance(app) -> None:
    """Make the new CA the signing CA and re-issue every application under it (renewal pipeline, with proofs)."""
    from ..services.rollover import advance

    result = advance(app)
    failed = _failed(result)
    _show(app, result, [("re-issued", f"{len(result['renewals']) - len(failed)} of {len(result['renewals'])}")]
          + [(r["app_uri"], f"failed at {r['failed_stage']}: {r['reason']}") for r in failed])
    if failed:
        from ..errors import OperationFailed

        raise OperationFailed(f"{len(failed)} re-issue(s) failed; those keep their old-CA certificate", "fix them, run advance again")


@rollover_group.command("finish")
@passphrase_file_option
@json_option
@click.pass_obj
def rollover_finish(app) -> None:
    """Remove the old CA (and its CRL) from every store once no active certificate depends on it."""
    from ..services.rollover import finish

    result = finish(app)
    errors = [r for r in result["removed"] if r["error"]]
    _show(app, result, [("stores", f"{len(result['removed']) - len(errors)} cleaned, {len(errors)} failed")]
          + [(r["store"], r["error"]) for r in errors])
    if errors:
        from ..errors import OperationFailed

        raise OperationFailed(f"{len(errors)} store(s) still hold the old CA", "fix them, then run finish again")


def _failed(result: dict) -> list[dict]:
    """The re-issues of advance or --emergency that did not renew (each keeps its old-CA certificate)."""
    return [r for r in result["renewals"] if r["outcome"] != "renewed"]

