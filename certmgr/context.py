"""What every command needs: the home, the database, the CA, the clock and how to print."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError, NotInitialised, OperationFailed
from .home import Home

if TYPE_CHECKING:
    import ca
    import db


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def safe_url(url: str) -> str:
    """A database URL for messages: the password is never shown."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


class AppContext:
    def __init__(
        self,
        home: Path,
        *,
        db_url: str | None = None,
        json_output: bool = False,
        verbosity: int = 0,
        passphrase_file: Path | None = None,
        pin_file: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.home = Home(Path(home).expanduser())
        self.db_url_option = db_url
        self.json = json_output
        self.verbosity = verbosity
        self.passphrase_file = passphrase_file
        self.pin_file = pin_file  # the PKCS#11 PIN of a token CA key (--pin-file)
        self.clock = clock
        self._database: db.Database | None = None
        self._issuer: ca.Issuer | None = None
        # set by a long-running server (the console) once it loaded the CA key or decided not to: why none may be
        # opened later (its per-request copies would each open one, a token session never closed)
        self.issuer_frozen: str | None = None

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else utc_now()

    @cached_property
    def actor(self) -> str:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return f"{user}@{socket.gethostname()}"

    @property
    def settings(self):
        return self.home.settings

    @property
    def db_url(self) -> str:
        return self.db_url_option or self.settings.database_url or self.home.default_db_url

    def require_initialised(self) -> None:
        if self.home.init_marker.exists():
            raise NotInitialised(f"the `certmgr init` of {self.home.root} did not finish", "run `certmgr init` again to finish it")
        if (self.home.ca_cert_path.parent / "rollover.switching").exists():  # services/rollover_stores.switch_marker
            raise NotInitialised("a CA rollover was cut while it switched the signing CA",
                                 "run `certmgr ca rollover advance` again to finish it")
        if not self.home.is_initialised():
            raise NotInitialised(f"no certmgr CA in {self.home.root}", "run `certmgr init` first, or pass --home DIR")

    def database(self, *, check_schema: bool = True) -> db.Database:
        if self._database is None:
            from sqlalchemy.exc import SQLAlchemyError

            import db

            url = self.db_url
            try:
                engine = db.make_engine(url)
                revision = db.current_revision(engine)  # also proves the database answers
            except (SQLAlchemyError, ImportError) as exc:
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise OperationFailed(
                    f"cannot open database {safe_url(url)}: {reason}", "check --db / CERTMGR_DB and that the server runs"
                ) from None
            if revision not in (None, db.HEAD_REVISION) and not db.is_known_revision(revision):
                engine.dispose()  # written by a newer certmgr: no command (db upgrade included) may touch it
                raise InputError(f"database {safe_url(url)} is at schema {revision}, newer than this certmgr "
                                 f"(head {db.HEAD_REVISION}): upgrade certmgr")
            if check_schema and revision != db.HEAD_REVISION:
                engine.dispose()
                if revision is None:
                    raise NotInitialised(f"database {safe_url(url)} has no certmgr schema", "run `certmgr init`")
                raise InputError(
                    f"database {safe_url(url)} is at schema {revision}, this certmgr needs {db.HEAD_REVISION}",
                    "run `certmgr db upgrade`",
                )
            self._database = db.Database(engine)
        return self._database

    def issuer(self, *, passphrase: bytes | None = None) -> ca.Issuer:
        """The CA certificate and its signing key, read once per process (certmgr/ca_key.py: a key file
        decrypted with the passphrase, or a key on a PKCS#11 token logged in with the PIN). ``passphrase`` is
        the secret of the home's custody when the caller already has it (init, join)."""
        if self._issuer is None and self.issuer_frozen:
            raise InputError(self.issuer_frozen)
        if self._issuer is None:
            import ca
            import pki

            from .ca_key import custody, open_ca_signer, read_ca_secret

            if not self.home.ca_cert_path.exists():  # (init calls this half-way, so no require_initialised here)
                self.require_initialised()
            cert = pki.parse_certificate(self.home.ca_cert_path.read_bytes())
            where = custody(self.home)
            secret = passphrase if passphrase is not None else read_ca_secret(where, self.passphrase_file, self.pin_file)
            self._issuer = ca.Issuer(cert, open_ca_signer(where, secret, certificate=cert))
        return self._issuer

    def adopt_issuer(self, issuer: ca.Issuer) -> ca.Issuer:
        """Use a CA key this process already opened (init: the key it just created or found on the token)."""
        self._issuer = issuer
        return issuer

    def close(self) -> None:
        if self._database is not None:
            self._database.dispose()
            self._database = None
        if self._issuer is not None:
            from .ca_key import close_signer

            close_signer(self._issuer.private_key)  # a token session ends with the command
            self._issuer = None
