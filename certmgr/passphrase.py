"""Where secrets come from: environment, a file, or a hidden prompt; never an argument.

``read_passphrase`` is the CA passphrase; ``read_secret`` the same rules for any other secret (the offline
root's passphrase, a PKCS#11 PIN), optionally refusing a file that group or others can read.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import InputError

ENV_PASSPHRASE = "CERTMGR_CA_PASSPHRASE"


def read_secret(
    secret_file: Path | None,
    *,
    env: str,
    what: str,
    option: str,
    confirm: bool = False,
    private_file: bool = False,
    prompt: bool = True,
) -> bytes:
    """The secret from ``secret_file``, else ``env``, else a hidden prompt on a terminal (when ``prompt``).

    With ``private_file`` a file readable by group or others is refused: the secret is already exposed.
    """
    if secret_file is not None:
        try:
            if private_file and os.stat(secret_file).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InputError(
                    f"{what} file {secret_file} is readable by group or others", f"run chmod 600 {secret_file}"
                )
            text = Path(secret_file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {what} file {secret_file}: {exc.strerror}", "check the path") from None
        value = text[:-2] if text.endswith(b"\r\n") else text[:-1] if text.endswith(b"\n") else text
        source = f"{what} file {secret_file}"
    elif os.environ.get(env) is not None:
        value = os.environ[env].encode("utf-8")
        source = env
    elif prompt and sys.stdin.isatty():
        import click

        value = click.prompt(
            what[0].upper() + what[1:], hide_input=True, confirmation_prompt=confirm, err=True, default="",
            show_default=False,
        ).encode("utf-8")
        source = "the prompt"
    else:
        raise InputError(f"the {what} is needed", f"set {env} or pass {option} FILE (never on the command line)")
    if not value:
        raise InputError(f"the {what} from {source} is empty", f"use a non-empty {what}")
    return value


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> bytes:
    return read_secret(
        passphrase_file, env=ENV_PASSPHRASE, what="CA passphrase", option="--passphrase-file", confirm=confirm
    )
