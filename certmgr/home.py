"""The certmgr home: settings, CA material, the default SQLite database, the verifier identity, logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .config import CONFIG_NAME, Settings, load_settings

ENV_HOME = "CERTMGR_HOME"
DEFAULT_HOME = Path("~/.certmgr")
HOME_MODE = 0o700


def resolve_home(option: str | os.PathLike | None) -> Path:
    value = option or os.environ.get(ENV_HOME) or DEFAULT_HOME
    return Path(value).expanduser().absolute()


@dataclass
class Home:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def ca_cert_path(self) -> Path:
        return self._resolve(self.settings.ca.cert_file)

    @property
    def ca_key_path(self) -> Path:
        return self._resolve(self.settings.ca.key_file)

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.root / 'certmgr.db'}"

    @property
    def verifier_store(self) -> Path:
        """certmgr's own verification identity and its view of the CA (trusted CA + CRL)."""
        return self.root / "verifier"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def lock_path(self) -> Path:
        return self.root / "certmgr.lock"

    @property
    def init_marker(self) -> Path:
        """Exists while `certmgr init` has not finished (or was killed): init resumes, other commands refuse."""
        return self.root / "init.incomplete"

    def is_initialised(self) -> bool:
        return self.config_path.exists() and self.ca_cert_path.exists() and not self.init_marker.exists()
