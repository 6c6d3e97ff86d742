"""Atomic, permission-safe file writes for certificate stores.

A reader (an OPC UA stack, possibly watching the folder) must never see a half-written file, and a
private key must never exist with looser permissions than 0600, not even for a moment: the temporary
file is created with O_CREAT|O_EXCL and its final mode, written, fsynced, then renamed into place.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import StoreError

KEY_MODE = 0o600
CERT_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
DIR_MODE = 0o755


def link_refused(path: Path) -> StoreError:
    return StoreError(f"{path} is a symbolic link; certmgr does not follow links in stores: give the real folder")


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create ``path`` (and parents) and give the leaf exactly ``mode``, whatever the umask.

    A symbolic link is refused: stores are often writable by the application's user, and following a link
    there would let certmgr (perhaps root) write into, or chmod, any folder the link points to.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise StoreError(f"a parent of {path} is a file; choose a store path inside a folder") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise link_refused(path)
        if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode:
            return path  # the common case, one system call
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except FileExistsError:
        raise StoreError(f"{path} exists and is not a folder; remove it or choose another store path") from None
    except NotADirectoryError:
        raise StoreError(f"a parent of {path} is a file; choose a store path inside a folder") from None
    except PermissionError:
        raise StoreError(f"cannot create {path}: permission denied; fix the owner or choose another path") from None
    return path


def ensure_dir_within(root: Path, path: Path, mode: int = DIR_MODE) -> Path:
    """ensure_dir for a folder inside a store: the root and every level between it and ``path`` must not be
    a symbolic link either (ensure_dir alone checks the leaf; creating trusted/certs under a linked root would
    write wherever the link points). Existing levels keep their modes; only the leaf gets ``mode``."""
    level = root
    for part in (None, *path.relative_to(root).parts[:-1]):
        level = level if part is None else level / part
        if level.is_symlink():
            raise link_refused(level)
    return ensure_dir(path, mode)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(directory: Path, data: bytes, mode: int, suffix: str = ".tmp") -> Path:
    """A new fully written, fsynced file in ``directory`` with ``mode`` from its first instant."""
    path = directory / f".certmgr-{secrets.token_hex(8)}{suffix}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except PermissionError:
        raise StoreError(f"cannot write in {directory}: permission denied; fix the folder's owner or mode") from None
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def replace_into(temp: Path, target: Path) -> None:
    """Rename ``temp`` onto ``target`` and make the rename durable."""
    try:
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.errno == errno.EXDEV:
            raise StoreError(f"{temp.parent} and {target.parent} are on different file systems") from None
        raise
    fsync_dir(target.parent)


def atomic_write(target: Path, data: bytes, mode: int = CERT_MODE, staging: Path | None = None) -> Path:
    """Write ``data`` to ``target`` atomically.

    ``staging`` is a folder on the same file system that no OPC UA stack watches; writing the temporary
    file there keeps watchers (node-opcua's chokidar) from reading a partial file.
    """
    directory = staging if staging is not None else target.parent
    temp = write_temp(directory, data, mode)
    try:
        replace_into(temp, target)
    except StoreError:
        if staging is None:
            raise
        replace_into(write_temp(target.parent, data, mode), target)  # staging on another mount: same-folder temp
    return target


DESTROY_PREFIX = ".certmgr-destroy-"


def destroy_secret(path: Path) -> bool:
    """Remove a private key or other secret file so its bytes do not stay readable on the disk. The file is first
    renamed to a hidden name (a stack loading the folder then sees no key rather than a half-erased one, whatever
    moment a crash hits), then overwritten in place with zeros, fsynced and unlinked. True when a file was removed.

    On copy-on-write or journalled-data file systems and SSDs the old blocks may survive the overwrite;
    this removes what an unlink alone leaves (the bytes in the same blocks) and is the best a file API can do.
    A symbolic link is unlinked, never followed: overwriting its target could destroy another file. A file with
    other hard links is only unlinked: its bytes are still another name's (an own-folder switch links the keys
    it keeps into the next own/ tree, see pki/own_switch.py). ``sweep_destroyed`` finishes what a crash cut.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not path.name.startswith(DESTROY_PREFIX):
        hidden = path.with_name(f"{DESTROY_PREFIX}{secrets.token_hex(6)}")
        os.rename(path, hidden)
        fsync_dir(path.parent)
        path = hidden
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            remaining = st.st_size
            zeros = bytes(min(remaining, 65536))
            while remaining > 0:
                remaining -= os.write(fd, zeros[: min(remaining, len(zeros))])
            os.fsync(fd)
        finally:
            os.close(fd)
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def sweep_destroyed(folder: Path) -> list[Path]:
    """Finish destroying secrets a crash left under their hidden name."""
    found = sorted(folder.glob(f"{DESTROY_PREFIX}*")) if folder.is_dir() else []
    for path in found:
        destroy_secret(path)
    return found
