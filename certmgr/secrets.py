"""One rule for every secret certmgr reads from a file (CA passphrase, admin and user passwords, SMTP
passwords, webhook tokens): the file must be readable by its owner only, or it is refused with the chmod
that fixes it. A secret that others can read is already disclosed; accepting it silently hides that."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError


def check_secret_file(path: str | os.PathLike, what: str) -> Path:
    """The file's absolute path, once it is a readable regular file that group and others cannot read."""
    file = Path(path).expanduser().absolute()
    try:
        with open(file, "rb") as handle:  # stat the file opened, not a name that could be swapped in between
            mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        raise InputError(f"cannot read the {what} {file}: {exc.strerror}", "give a file only you can read") from None
    _require_private(file, mode, what)
    return file


def read_secret_file(path: str | os.PathLike, what: str) -> bytes:
    """The secret in ``path`` without its final line ending (editors add one; it is never part of the secret)."""
    file = Path(path).expanduser().absolute()
    try:
        with open(file, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            _require_private(file, mode, what)
            data = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {file}: {exc.strerror}", "give a file only you can read") from None
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data


def _require_private(file: Path, mode: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        raise InputError(f"the {what} {file} is not a regular file", "give the file that holds the secret")
    if mode & 0o077:
        raise InputError(f"the {what} {file} can be read or changed by group or others (mode {stat.S_IMODE(mode):o})", f"chmod 600 {file}")
