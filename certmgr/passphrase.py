"""Where the CA passphrase comes from: environment, a file, or a hidden prompt; never an argument."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import InputError

ENV_PASSPHRASE = "CERTMGR_CA_PASSPHRASE"


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> bytes:
    if passphrase_file is not None:
        from .secrets import read_secret_file

        value = read_secret_file(passphrase_file, "passphrase file")
        source = f"passphrase file {passphrase_file}"
    elif os.environ.get(ENV_PASSPHRASE) is not None:
        value = os.environ[ENV_PASSPHRASE].encode("utf-8")
        source = ENV_PASSPHRASE
    elif sys.stdin.isatty():
        import click

        value = click.prompt(
            "CA passphrase", hide_input=True, confirmation_prompt=confirm, err=True, default="", show_default=False
        ).encode("utf-8")
        source = "the prompt"
    else:
        raise InputError(
            "the CA passphrase is needed",
            f"set {ENV_PASSPHRASE} or pass --passphrase-file FILE (never on the command line)",
        )
    if not value:
        raise InputError(f"the CA passphrase from {source} is empty", "use a non-empty passphrase")
    return value
