"""Deploy hooks: the operator's command that makes an application load its new certificate."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass

from ..passphrase import ENV_PASSPHRASE

# secrets certmgr reads from the environment: hooks never need them
SECRET_VARIABLES = frozenset({ENV_PASSPHRASE, "CERTMGR_ROOT_PASSPHRASE", "CERTMGR_PKCS11_PIN", "PGPASSWORD"})


def _channel_secret_variables() -> set[str]:
    """The variables alert channels name with password_env / token_env (certmgr.toml)."""
    try:
        from ..config import CONFIG_NAME, load_settings
        from ..home import resolve_home

        channels = load_settings(resolve_home(None) / CONFIG_NAME).alerts.channel
    except Exception:  # no readable home here: nothing more to strip
        return set()
    return {str(c[key]) for c in channels for key in ("password_env", "token_env") if c.get(key)}

log = logging.getLogger(__name__)
DEFAULT_HOOK_TIMEOUT = 300.0


@dataclass
class HookResult:
    ok: bool
    message: str


def run_deploy_hook(command: str, variables: dict[str, str], timeout: float = DEFAULT_HOOK_TIMEOUT) -> HookResult:
    """Run ``command`` through the shell with CERTMGR_* variables; a non-zero exit is a failure.

    Every secret certmgr reads from the environment (CA and root passphrases, the PKCS#11 PIN, the database
    password, alert channels' password_env/token_env) is removed from the hook's environment.
    """
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES and k not in _channel_secret_variables()}
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
