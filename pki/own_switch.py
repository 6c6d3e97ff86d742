"""Switching a store's own pair in one atomic step: the whole ``own/`` folder is exchanged.

A certificate and its key are two files, and ua-net names carry the thumbprint, so no sequence of renames can
replace one pair by another without a moment that shows a stack two own certificates, or none, or a key that
does not match (a crash at that moment leaves it so). Instead the next ``own/`` tree (the new pair, history
with the previous pair, staged files) is built beside it in the store's ``.certmgr/`` folder, which no stack
reads, then swapped with ``own/`` by one ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+, glibc 2.28+). A crash
before the swap leaves the old tree, after it the new one; either way a complete pair. The leftover tree is
removed by the next switch or repair. Where the system cannot exchange, the caller falls back to renames.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
from pathlib import Path

from .files import CERT_MODE, DIR_MODE, KEY_MODE, PRIVATE_DIR_MODE, destroy_secret, fsync_dir, write_temp

NEXT_PREFIX = "own-next-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_EXCHANGE = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the system cannot (no renameat2, or a file system without it)."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95, 18):  # EINVAL, ENOSYS, EOPNOTSUPP (file system without exchange), EXDEV
        return False
    raise OSError(error, os.strerror(error), str(a))


def remove_tree(root: Path) -> None:
    """Remove a leftover own tree; its private keys are destroyed, not just unlinked."""
    if not root.exists():
        return
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            destroy_secret(path) if path.suffix == ".pem" else path.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)


def sweep_leftovers(staging: Path) -> list[str]:
    done = []
    for path in staging.glob(f"{NEXT_PREFIX}*") if staging.is_dir() else []:
        remove_tree(path)
        done.append(f"removed {path.name}, the other half of an own-folder switch")
    return done


def _link_files(source: Path, target: Path, skip) -> None:
    for path in sorted(source.iterdir()) if source.is_dir() else []:
        if path.is_file() and not path.is_symlink() and not skip(path):
            os.link(path, target / path.name)


def _write(folder: Path, name: str, data: bytes, mode: int) -> Path:
    temp = write_temp(folder, data, mode)
    os.replace(temp, folder / name)
    return folder / name


def build_next(own: Path, staging: Path, *, cert_name: str, cert_bytes: bytes, key_name: str, key_pem: bytes,
               previous: list[tuple[str, Path, Path, bytes]], new_marker: str) -> tuple[Path, list[Path]]:
    """The next own tree: the new pair, everything own/ holds besides the previous pairs, history with each previous
    pair (``(stem, cert path, key path, der)``); the store prunes history keys after the switch."""
    root = staging / f"{NEXT_PREFIX}{secrets.token_hex(6)}"
    parts = {"certs": DIR_MODE, "private": PRIVATE_DIR_MODE, "history": PRIVATE_DIR_MODE, "staged": PRIVATE_DIR_MODE}
    root.mkdir(mode=PRIVATE_DIR_MODE)
    for name, mode in parts.items():
        (root / name).mkdir(mode=mode)
        os.chmod(root / name, mode)
    os.chmod(root, DIR_MODE)
    pair_files = {p for _, cert_path, key_path, _ in previous for p in (cert_path, key_path)}
    for part in ("certs", "private"):
        _link_files(own / part, root / part, lambda p: p in pair_files or p.name in (cert_name, key_name))
    _link_files(own / "staged", root / "staged", lambda p: p.stem.endswith(new_marker))
    _link_files(own / "history", root / "history", lambda p: False)
    archived = []
    for stem, _cert_path, key_path, der in previous:
        if stem.endswith(new_marker):
            continue
        archived.append(_write(root / "history", f"{stem}.der", der, CERT_MODE))
        if key_path.exists():
            target = root / "history" / f"{stem}.pem"
            target.unlink(missing_ok=True)
            os.link(key_path, target)
            archived.append(target)
    _write(root / "certs", cert_name, cert_bytes, CERT_MODE)
    _write(root / "private", key_name, key_pem, KEY_MODE)
    for name in parts:
        fsync_dir(root / name)
    fsync_dir(root)
    return root, archived
