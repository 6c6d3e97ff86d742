"""Deploy hooks: the operator's command that makes an application load its new certificate."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass

from ..passphrase import ENV_PASSPHRASE

log = logging.getLogger(__name__)
DEFAULT_HOOK_TIMEOUT = 300.0


@dataclass
class HookResult:
    ok: bool
    message: str


def run_deploy_hook(command: str, variables: dict[str, str], timeout: float = DEFAULT_HOOK_TIMEOUT) -> HookResult:
    """Run ``command`` through the shell with CERTMGR_* variables; a non-zero exit is a failure.

    The CA passphrase is removed from the hook's environment: hooks never need it.
    """
    env = {k: v for k, v in os.environ.items() if k != ENV_PASSPHRASE}
    env.update(variables)
    try:
        completed = subprocess.run(
            command, shell=True, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return HookResult(False, f"deploy hook did not finish within {timeout:.0f} s")
    except OSError as exc:
        return HookResult(False, f"deploy hook could not start: {exc}")
    output = (completed.stderr or completed.stdout or "").strip().splitlines()
    tail = f": {output[-1][:200]}" if output else ""
    if completed.returncode != 0:
        return HookResult(False, f"deploy hook exited {completed.returncode}{tail}")
    log.info("deploy hook for %s ok", variables.get("CERTMGR_APP_URI"))
    return HookResult(True, "deploy hook ok")
