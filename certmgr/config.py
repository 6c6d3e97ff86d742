"""``certmgr.toml``: settings, read with the standard library's tomllib.

The file is written once by ``certmgr init`` from a commented template; operators edit it by hand.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

CONFIG_NAME = "certmgr.toml"


@dataclass
class CASettings:
    name: str = "certmgr CA"
    organization: str = "certmgr"
    key_size: int = 4096
    days: int = 3650
    crl_days: int = 30
    cert_file: str = "ca/ca.der"
    key_file: str = "ca/private/ca-key.pem"


@dataclass
class Defaults:
    organization: str | None = None
    key_size: int = 2048
    days: int = 365
    layout: str = "ua-net"
    renew_before: str | None = None  # None: one third of the certificate's lifetime


@dataclass
class VerifySettings:
    timeout: float = 60.0  # live proof: seconds to wait for a server to present the new certificate
    concurrency: int = 4  # loopback proofs run at once


@dataclass
class Settings:
    ca: CASettings = field(default_factory=CASettings)
    defaults: Defaults = field(default_factory=Defaults)
    verify: VerifySettings = field(default_factory=VerifySettings)
    database_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # every section, for features that read their own


def _fill(target: object, values: dict[str, Any], section: str, path: Path) -> None:
    for key, value in values.items():
        if not hasattr(target, key):
            raise InputError(f"{path}: unknown setting [{section}] {key}", "remove it or check its spelling")
        current = getattr(target, key)
        expected = type(current) if current is not None else None
        if expected is float and isinstance(value, int):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise InputError(
                f"{path}: [{section}] {key} must be a {expected.__name__}, not {value!r}", "fix the value in the file"
            )
        setattr(target, key, value)


def load_settings(path: Path) -> Settings:
    settings = Settings()
    if not path.exists():
        return settings
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}", "fix the file or restore it from the README example") from None
    settings.raw = data
    for section, target in (("ca", settings.ca), ("defaults", settings.defaults), ("verify", settings.verify)):
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise InputError(f"{path}: [{section}] must be a table", "fix the file")
        _fill(target, value, section, path)
    database = data.get("database", {})
    if isinstance(database, dict) and database.get("url"):
        settings.database_url = str(database["url"])
    return settings


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_settings(settings: Settings) -> str:
    """The commented file ``certmgr init`` writes."""
    ca = settings.ca
    d = settings.defaults
    org = _toml_string(d.organization) if d.organization else _toml_string(ca.organization)
    return f"""# certmgr settings. Every key is optional; the values shown are the ones in force.

[ca]
name = {_toml_string(ca.name)}
organization = {_toml_string(ca.organization)}
key_size = {ca.key_size}
days = {ca.days}
# Days between a CRL's thisUpdate and nextUpdate; certmgr re-signs when a third is left.
crl_days = {ca.crl_days}
# CA certificate and encrypted private key, relative to this folder (or absolute, for shared nodes).
cert_file = {_toml_string(ca.cert_file)}
key_file = {_toml_string(ca.key_file)}

[defaults]
# Used by `certmgr issue` when an option is not given.
organization = {org}
key_size = {d.key_size}
days = {d.days}
layout = {_toml_string(d.layout)}
# Renew when less than this is left (e.g. "30d"); unset means one third of the lifetime.
# renew_before = "30d"

[verify]
timeout = {settings.verify.timeout}
concurrency = {settings.verify.concurrency}

[database]
# Empty: SQLite in this folder. For several nodes: "postgresql+psycopg://user@host/certmgr"
# (no password here: libpq reads PGPASSWORD or ~/.pgpass)
url = {_toml_string(settings.database_url or "")}
"""
