"""Where secrets come from: environment, a file, or a hidden prompt; never an argument.

``read_passphrase`` is the CA passphrase; ``read_secret`` the same rules for any other secret (the offline
root's passphrase, a PKCS#11 PIN), optionally refusing a file that group or others can read.
"""

from __future__ import annotations

import os
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
    prompt: bool = True,
) -> bytes:
    """The secret from ``secret_file`` (refused when group or others can read it: certmgr/secrets.py), else
    ``env``, else a hidden prompt on a terminal (when ``prompt``)."""
    if secret_file is not None:
        from .secrets import read_secret_file

        value = read_secret_file(secret_file, f"{what} file")
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
