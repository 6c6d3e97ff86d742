"""Output path options are checked before any work: a typo in a folder name is a usage error (exit 2,
one line) found at once, not an "unexpected FileNotFoundError" after a signing run or a server round trip."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def check_output_file(path: Path, option: str) -> Path:
    """A file certmgr will create or replace: its folder must exist and be writable."""
    file = Path(path).expanduser().absolute()
    if file.is_dir():
        raise InputError(f"{option} {file} is a folder", f"give a file name, e.g. {file / 'certmgr.prom'}")
    _writable_folder(file.parent, option, f"create it (mkdir -p {file.parent}) or give another {option}")
    return file


def check_output_dir(path: Path, option: str) -> Path:
    """A folder certmgr will write files into (created if missing): it, or its parent, must be a writable folder."""
    folder = Path(path).expanduser().absolute()
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{option} {folder} is not a folder", f"give a folder for {option}")
        _writable_folder(folder, option, "")
    else:
        _writable_folder(folder.parent, option, f"create it (mkdir -p {folder.parent}) or give another {option}")
    return folder


def _writable_folder(folder: Path, option: str, missing_hint: str) -> None:
    if not folder.is_dir():
        raise InputError(f"the folder {folder} for {option} does not exist", missing_hint)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"the folder {folder} for {option} is not writable by this user", f"give a folder this user can write for {option}")
