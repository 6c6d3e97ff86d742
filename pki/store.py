"""An OPC UA application's file-based certificate store (Part 12 Annex F), in one of two layouts.

This is the only code that writes certificates, keys and CRLs into an application's store. Every write is
atomic; the own certificate and key are switched as a pair, and a failure between the two puts the
previous pair back.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import StoreError
from .files import (
    CERT_MODE,
    DIR_MODE,
    KEY_MODE,
    PRIVATE_DIR_MODE,
    atomic_write,
    destroy_secret,
    sweep_destroyed,
    ensure_dir_within,
    fsync_dir,
    link_refused,
    replace_into,
    write_temp,
)
from .layout import Layout, common_name, get_layout, safe_stem, thumbprint
from .own_switch import build_next, exchange, remove_tree, sweep_leftovers
from .readers import (
    Loaded,
    parse_certificate,
    read_certificates,
)
from .store_crls import ISSUER, TRUSTED, CrlFolders

REJECTED = "rejected"
LOCK_NAME = "lock"


@dataclass(frozen=True)
class OwnPair:
    """The application's own certificate and private key as found in the store."""

    cert_path: Path
    key_path: Path
    certificate: x509.Certificate

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)


@dataclass
class InstallResult:
    cert_path: Path
    key_path: Path
    archived: list[Path] = field(default_factory=list)


class ApplicationStore(CrlFolders):
    """One application's store folder. Construct it cheaply; nothing touches the disk until asked."""

    def __init__(self, root: Path | str, layout: Layout | str = "ua-net") -> None:
        self.root = Path(root).expanduser()
        self.layout = get_layout(layout) if isinstance(layout, str) else layout

    def __repr__(self) -> str:
        return f"ApplicationStore({str(self.root)!r}, {self.layout.name!r})"

    # folders -------------------------------------------------------------------------------------
    @property
    def own_certs_dir(self) -> Path:
        return self.root / "own" / "certs"

    @property
    def own_private_dir(self) -> Path:
        return self.root / "own" / "private"

    @property
    def history_dir(self) -> Path:
        """Previous own pairs; no stack reads this folder."""
        return self.root / "own" / "history"

    @property
    def staging_dir(self) -> Path:
        """Temporary files and staged renewals live here so folder watchers never see partial files."""
        return self.root / ".certmgr"

    def certs_dir(self, kind: str) -> Path:
        return self.root / self._kind_dir(kind) / "certs"

    def crl_dir(self, kind: str) -> Path:
        if self.layout.shared_crl_dir:
            self._kind_dir(kind)  # still refuse an unknown part
            return self.root / self.layout.shared_crl_dir
        return self.root / self._kind_dir(kind) / "crl"

    @property
    def rejected_dir(self) -> Path:
        return self.root / self.layout.rejected_dir

    def _kind_dir(self, kind: str) -> str:
        if kind == TRUSTED:
            return "trusted"
        if kind == ISSUER:
            return self.layout.issuer_dir
        raise ValueError(f"unknown store part {kind!r}")

    def check_usable(self) -> None:
        """Fail before any work when the store path cannot become a writable folder."""
        path = self.root
        if path.is_symlink():
            raise link_refused(path)
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} is a file, not a folder; give a folder path")
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise StoreError(f"{probe} is a file, so store path {path} cannot be created; give a folder path")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise StoreError(f"store folder {probe} is not writable; fix its owner or mode, or choose another path")

    def _dir(self, path: Path, mode: int) -> Path:
        return ensure_dir_within(self.root, path, mode)

    def create(self) -> None:
        self.check_usable()
        self._dir(self.root, DIR_MODE)
        self._dir(self.own_certs_dir, DIR_MODE)
        self._dir(self.own_private_dir, PRIVATE_DIR_MODE)
        self._dir(self.history_dir, PRIVATE_DIR_MODE)
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        for kind in (TRUSTED, ISSUER):
            self._dir(self.certs_dir(kind), DIR_MODE)
            self._dir(self.crl_dir(kind), DIR_MODE)
        self._dir(self.rejected_dir, DIR_MODE)

    def revert_own(self, previous_thumbprint: str | None, current_thumbprint: str) -> None:
        """Undo an install whose follow-up failed: the previous pair (from own/history) becomes current again;
        with none to restore, the pair ``current_thumbprint`` is removed."""
        restored = self.history_pair(previous_thumbprint) if previous_thumbprint else None
        if restored is not None:
            self.install_own(restored[0], restored[1], self.own_chain())
            return
        own = self.own()
        if own is not None and own.thumbprint == current_thumbprint:
            own.cert_path.unlink(missing_ok=True)
            destroy_secret(own.key_path)

    def discard_created(self) -> None:
        """Remove a store folder that the failing operation itself created: nothing partial is left."""
        if self.root.is_symlink():
            raise link_refused(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def locked(self, name: str = LOCK_NAME) -> Iterator[None]:
        """Exclusive access for a multi-step change against other certmgr processes: ``lock`` guards the own
        pair (switch, rollback), ``crl.lock`` the CRL folders (two publishers never leave two CRLs of one CA)."""
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        fd = os.open(self.staging_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @property
    def staged_dir(self) -> Path:
        """New own pairs waiting for their proof; no stack reads this folder."""
        return self.root / "own" / "staged"

    def stage_own(self, cert: x509.Certificate, key_pem: bytes, chain: tuple[x509.Certificate, ...] = ()) -> tuple[Path, Path]:
        """Write a new pair beside the current one without touching it. ``chain`` (the issuing CAs) is kept
        with it as ``<stem>.chain.pem`` so that installing the staged pair writes the same own file."""
        self._dir(self.staged_dir, PRIVATE_DIR_MODE)
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        stem = _pair_stem(cert)
        key_path = atomic_write(self.staged_dir / f"{stem}.pem", key_pem, KEY_MODE, self.staging_dir)
        cert_path = atomic_write(self.staged_dir / f"{stem}.der", cert.public_bytes(serialization.Encoding.DER), CERT_MODE, self.staging_dir)
        if chain and self.layout.own_holds_chain:
            pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
            atomic_write(self.staged_dir / f"{stem}.chain.pem", pem, CERT_MODE, self.staging_dir)
        return cert_path, key_path

    def staged_chain(self, thumb: str) -> tuple[x509.Certificate, ...]:
        """The CA chain staged with the pair ``thumb`` (empty when none was given)."""
        marker = f" [{thumb.upper()}].chain.pem"
        for path in self.staged_dir.iterdir() if self.staged_dir.is_dir() else []:
            if path.name.endswith(marker):
                return tuple(x509.load_pem_x509_certificates(path.read_bytes()))
        return ()

    def unstage(self, thumb: str) -> None:
        """Remove a staged pair (a failed or finished renewal); its key is destroyed, not just unlinked."""
        marker = f" [{thumb.upper()}]"
        for path in self.staged_dir.iterdir() if self.staged_dir.is_dir() else []:
            if path.name.endswith(f"{marker}.pem"):
                destroy_secret(path)
            elif path.stem.endswith(marker) or path.name.endswith(f"{marker}.chain.pem"):
                path.unlink(missing_ok=True)

    # own certificate and key -----------------------------------------------------------------------
    def own(self) -> OwnPair | None:
        """The current own pair, or None. Several candidates: the one valid latest wins."""
        pairs = self.own_pairs()
        return max(pairs, key=lambda p: p.certificate.not_valid_after_utc) if pairs else None

    def own_chain(self) -> tuple[x509.Certificate, ...]:
        """The CA certificates after the leaf in the current own file (PEM own files only)."""
        own = self.own()
        if own is None or not self.layout.own_holds_chain:
            return ()
        try:
            blocks = x509.load_pem_x509_certificates(own.cert_path.read_bytes())
        except (OSError, ValueError):
            return ()
        return tuple(blocks[1:])

    def own_certificates(self) -> list[Loaded[x509.Certificate]]:
        """Every file of own/certs, readable or not."""
        return read_certificates(self.own_certs_dir)

    def own_pairs(self) -> list[OwnPair]:
        pairs = []
        for loaded in self.own_certificates():
            if loaded.value is None:
                continue
            cert = loaded.value
            if self.layout.own_fixed_names:
                key_path = self.own_private_dir / self.layout.own_fixed_names[1]
            else:
                key_path = self.own_private_dir / (loaded.path.stem + ".pem")
            pairs.append(OwnPair(loaded.path, key_path, cert))
        return pairs

    def read_own_key(self, pair: OwnPair) -> bytes:
        try:
            return pair.key_path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"private key {pair.key_path} is missing; reissue with certmgr issue --force") from None

    def _archive(self, cert_path: Path, key_path: Path) -> list[Path]:
        """Copy a pair into history under its thumbprint (copy, not move: the caller decides removal)."""
        try:
            cert = parse_certificate(cert_path.read_bytes())
        except (OSError, ValueError):
            return []
        stem = _pair_stem(cert)
        archived = []
        target = self.history_dir / f"{stem}.der"
        atomic_write(target, cert.public_bytes(serialization.Encoding.DER), CERT_MODE, self.staging_dir)
        archived.append(target)
        if key_path.exists():
            key_target = self.history_dir / f"{stem}.pem"
            atomic_write(key_target, key_path.read_bytes(), KEY_MODE, self.staging_dir)
            archived.append(key_target)
        return archived

    def install_own(self, cert: x509.Certificate, key_pem: bytes, chain: tuple[x509.Certificate, ...] = (), *,
                    keep_history: int | None = None) -> InstallResult:
        """Make ``cert``/``key_pem`` the application's own pair; the previous pair goes to history, and the keys of
        all but the newest ``keep_history`` previous pairs are destroyed (None keeps them all). ``chain``: the issuing
        CA certificates, written after the leaf where the own file is PEM (node-opcua), ignored for DER.

        The whole own/ folder is exchanged in one step (pki/own_switch.py): at no instant does a stack see two own
        certificates or a mismatched pair, whatever moment a crash hits. Where the file system cannot exchange,
        both files are fully written before either becomes visible and a failed second rename is undone.
        """
        self.create()
        cert_target = self.own_certs_dir / self.layout.own_cert_name(cert)
        key_target = self.own_private_dir / self.layout.own_key_name(cert)
        previous = [p for p in self.own_pairs() if p.cert_path != cert_target or thumbprint(p.certificate) != thumbprint(cert)]
        sweep_leftovers(self.staging_dir)
        own_root = self.root / "own"
        pairs = [(_pair_stem(p.certificate), p.cert_path, p.key_path, p.certificate.public_bytes(serialization.Encoding.DER))
                 for p in previous]
        try:
            next_root, archived = build_next(
                own_root, self.staging_dir, cert_name=cert_target.name, cert_bytes=self.layout.own_cert_bytes(cert, tuple(chain)),
                key_name=key_target.name, key_pem=key_pem, previous=pairs, new_marker=f" [{thumbprint(cert)}]",
            )
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            # no hard links here (own/ spans file systems, or the file system has none): switch by renames
            sweep_leftovers(self.staging_dir)
            return self._install_in_place(cert, key_pem, chain, cert_target, key_target, previous, keep_history)
        try:
            swapped = exchange(own_root, next_root)
        except BaseException:
            remove_tree(next_root)
            raise
        if swapped:
            fsync_dir(self.root)
            remove_tree(next_root)  # now the previous tree: its keys not carried into history are destroyed
            if keep_history is not None:
                self.prune_history(keep_history, current=thumbprint(cert))
            return InstallResult(cert_target, key_target, [own_root / "history" / a.name for a in archived])
        remove_tree(next_root)
        return self._install_in_place(cert, key_pem, chain, cert_target, key_target, previous, keep_history)

    def _install_in_place(self, cert, key_pem: bytes, chain, cert_target: Path, key_target: Path, previous,
                          keep_history: int | None) -> InstallResult:
        archived: list[Path] = []
        for pair in previous:
            archived += self._archive(pair.cert_path, pair.key_path)

        key_temp = write_temp(self.staging_dir, key_pem, KEY_MODE)
        try:
            cert_temp = write_temp(self.staging_dir, self.layout.own_cert_bytes(cert, tuple(chain)), CERT_MODE)
        except BaseException:
            destroy_secret(key_temp)
            raise
        old_key = key_target.read_bytes() if key_target.exists() else None
        try:
            replace_into(key_temp, key_target)
        except BaseException:
            cert_temp.unlink(missing_ok=True)
            destroy_secret(key_temp)
            raise
        try:
            replace_into(cert_temp, cert_target)
        except BaseException:
            cert_temp.unlink(missing_ok=True)
            if old_key is None:
                destroy_secret(key_target)
            else:
                atomic_write(key_target, old_key, KEY_MODE, self.staging_dir)
            raise
        for pair in previous:
            if pair.cert_path != cert_target:
                pair.cert_path.unlink(missing_ok=True)
                if pair.key_path != key_target:
                    destroy_secret(pair.key_path)
        if keep_history is not None:
            self.prune_history(keep_history, current=thumbprint(cert))
        return InstallResult(cert_target, key_target, archived)

    def keep_only_own(self, thumb: str) -> list[str]:
        """After a switch cut between its renames: the pair ``thumb`` stays, any other own pair goes to history."""
        done = []
        for pair in self.own_pairs():
            if pair.thumbprint != thumb.upper():
                self._archive(pair.cert_path, pair.key_path)
                pair.cert_path.unlink(missing_ok=True)
                if not self.layout.own_fixed_names:  # fixed names hold one pair only: its key is the current one
                    destroy_secret(pair.key_path)
                done.append(f"moved the previous pair {pair.thumbprint} to history (the switch had been cut)")
        return done

    def discard_pair(self, thumb: str) -> list[str]:
        """Remove every file of the pair ``thumb`` (a certificate that never went live): staged, history, and
        own/ when it is there beside the current pair (ua-net names carry the thumbprint)."""
        done = []
        marker = f" [{thumb.upper()}]"
        for folder in (self.history_dir, self.staged_dir):
            for path in folder.iterdir() if folder.is_dir() else []:
                if path.stem.endswith(marker) or path.name.endswith(f"{marker}.chain.pem"):
                    destroy_secret(path) if path.suffix == ".pem" else path.unlink(missing_ok=True)
                    done.append(f"removed {path.parent.name}/{path.name}")
        own = self.own()
        for pair in self.own_pairs():
            if pair.thumbprint == thumb.upper() and (own is None or own.thumbprint != thumb.upper()):
                pair.cert_path.unlink(missing_ok=True)
                if not self.layout.own_fixed_names:
                    destroy_secret(pair.key_path)
                done.append(f"removed {pair.cert_path.name}")
        return done

    def retire_own(self) -> list[Path]:
        """Move every own pair of this layout to history (a layout change: the new layout's names differ, so
        the old pair would otherwise stay beside the new one)."""
        archived = []
        for pair in self.own_pairs():
            archived += self._archive(pair.cert_path, pair.key_path)
            pair.cert_path.unlink(missing_ok=True)
            destroy_secret(pair.key_path)
        return archived

    def prune_history(self, keep: int = 1, current: str | None = None) -> list[Path]:
        """Keep the keys of at most ``keep`` previous pairs in own/history (the newest by notBefore, for a
        rollback); older history certificates stay as .der, their keys are destroyed. ``current``: the
        thumbprint of the own certificate, whose copy in history (after a rollback) never counts."""
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        with_keys = []
        for loaded in self.history():
            if loaded.value is None or thumbprint(loaded.value) == (current or "").upper():
                continue
            key_path = loaded.path.with_suffix(".pem")
            if key_path.exists():
                with_keys.append((loaded.value.not_valid_before_utc, loaded.path.name, key_path))
        with_keys.sort(reverse=True)
        removed = []
        for _, _, key_path in with_keys[keep:]:
            destroy_secret(key_path)
            removed.append(key_path)
        return removed

    def destroy_key(self, thumb: str, include_current: bool = False) -> list[Path]:
        """Destroy every copy of the private key of certificate ``thumb`` in this store (own/history,
        own/staged; the current own key only with ``include_current``), for a keyCompromise revocation.
        The certificates stay (they are public); the removed key files are returned."""
        thumb = thumb.upper()
        for folder in (self.own_private_dir, self.history_dir, self.staged_dir):
            sweep_destroyed(folder)  # a destruction a kill cut short
        removed = []
        marker = f" [{thumb}].pem"
        for folder in (self.history_dir, self.staged_dir):
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name.endswith(marker) and destroy_secret(path):
                    removed.append(path)
        own = self.own()
        if include_current and own is not None and own.thumbprint == thumb and destroy_secret(own.key_path):
            removed.append(own.key_path)
        return removed

    def repair_own_pair(self, key_matches) -> list[str]:
        """After a crash in the middle of a switch: put back a consistent own pair.

        ``key_matches(key_pem, certificate)`` says whether a key belongs to a certificate (the crypto lives in
        ``ca``). A fixed-name layout may hold the new key beside the old certificate: the old pair comes back
        from history. A key file that belongs to no own certificate (ua-net names) is removed.
        """
        done = sweep_leftovers(self.staging_dir)
        for folder in (self.own_private_dir, self.history_dir, self.staged_dir):
            done += [f"finished destroying {p.name} in {folder.name}" for p in sweep_destroyed(folder)]
        own = self.own()
        if own is not None:
            try:
                consistent = key_matches(own.key_path.read_bytes(), own.certificate)
            except OSError:
                consistent = False
            if not consistent:
                restored = self.history_pair(own.thumbprint)
                if restored is not None:
                    self.install_own(*restored, self.own_chain())
                    done.append(f"restored the pair of {own.thumbprint} from history (its key had been replaced)")
        if self.layout.own_fixed_names and own is None:
            key_file = self.own_private_dir / self.layout.own_fixed_names[1]
            if key_file.exists():  # the first install was cut after its key: no certificate to go with it
                key_file.unlink(missing_ok=True)
                done.append(f"removed {key_file.name}, a key without its certificate")
        if not self.layout.own_fixed_names and self.own_private_dir.is_dir():
            stems = {p.cert_path.stem for p in self.own_pairs()}
            for key_file in self.own_private_dir.iterdir():
                if key_file.suffix == ".pem" and key_file.stem not in stems:
                    destroy_secret(key_file)
                    done.append(f"removed {key_file.name}, a key without its certificate")
        return done

    def history(self) -> list[Loaded[x509.Certificate]]:
        return read_certificates(self.history_dir)

    def history_pair(self, thumb: str) -> tuple[x509.Certificate, bytes] | None:
        """A previous own pair by thumbprint, for rolling back a switch."""
        for loaded in read_certificates(self.history_dir):
            if loaded.value is not None and thumbprint(loaded.value) == thumb.upper():
                key_path = loaded.path.with_suffix(".pem")
                if key_path.exists():
                    return loaded.value, key_path.read_bytes()
        return None

    # trusted, issuer and rejected certificates -----------------------------------------------------
    def certificates(self, kind: str) -> list[Loaded[x509.Certificate]]:
        return read_certificates(self.certs_dir(kind))

    def add_certificate(self, cert: x509.Certificate, kind: str = TRUSTED) -> Path:
        """Add a peer or CA certificate; writing the same certificate again changes nothing."""
        folder = self.certs_dir(kind)
        self._dir(folder, DIR_MODE)
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        der = cert.public_bytes(serialization.Encoding.DER)
        for loaded in read_certificates(folder):
            if loaded.value is not None and loaded.value.public_bytes(serialization.Encoding.DER) == der:
                return loaded.path
        return atomic_write(folder / self.layout.peer_cert_name(cert), der, CERT_MODE, self.staging_dir)

    def folder_of(self, kind: str) -> Path:
        """trusted/issuer certificate folders, or the rejected folder for kind "rejected"."""
        return self.rejected_dir if kind == REJECTED else self.certs_dir(kind)

    def move_certificate(self, path: Path, expected_der: bytes, to_kind: str | None) -> Path | None:
        """Move a certificate file between trusted, issuer and rejected (or delete it, ``to_kind`` None).

        The file must still hold ``expected_der`` (what the operator was shown); a file that changed in
        between is refused and nothing moves. The target gets the layout's name and encoding.
        """
        try:
            current = parse_certificate(path.read_bytes())
        except FileNotFoundError:
            raise StoreError(f"{path} is gone; list the store again") from None
        except ValueError:
            raise StoreError(f"{path} no longer holds a certificate; list the store again") from None
        if current.public_bytes(serialization.Encoding.DER) != expected_der:
            raise StoreError(f"{path} changed since it was shown; list the store again and check it before trusting")
        target = None
        if to_kind == REJECTED:
            target = self.add_rejected(current)
        elif to_kind is not None:
            target = self.add_certificate(current, to_kind)
        if target != path:
            path.unlink(missing_ok=True)
        return target

    def rejected(self) -> list[Loaded[x509.Certificate]]:
        return read_certificates(self.rejected_dir)

    def add_rejected(self, cert: x509.Certificate) -> Path:
        self._dir(self.rejected_dir, DIR_MODE)
        self._dir(self.staging_dir, PRIVATE_DIR_MODE)
        target = self.rejected_dir / self.layout.rejected_name(cert)
        if not target.exists():
            atomic_write(target, self.layout.rejected_bytes(cert), CERT_MODE, self.staging_dir)
        return target

    def holds_certificate(self, cert: x509.Certificate, kind: str) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        return any(
            loaded.value is not None and loaded.value.public_bytes(serialization.Encoding.DER) == der
            for loaded in self.certificates(kind)
        )

    def file_listing(self) -> dict[str, bytes]:
        """Every file of the store with its bytes (tests and dry runs compare listings)."""
        listing = {}
        if not self.root.is_dir():
            return listing
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                listing[str(path.relative_to(self.root))] = path.read_bytes()
        return listing


def _pair_stem(cert: x509.Certificate) -> str:
    """File stem for a certificate and its key kept aside (history, staged): "<CN> [<THUMBPRINT>]"."""
    return f"{safe_stem(common_name(cert))} [{thumbprint(cert)}]"
