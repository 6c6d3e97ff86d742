"""``certmgr.toml``: every section typed, every unknown section or key refused with its line and a hint.

The file is written once by ``certmgr init`` from a commented template (``render_settings``); operators edit
it by hand, so a typo (``warnng``, ``[schedul]``) must stop every command at start instead of being ignored.
``None`` means "not set": the feature then uses its own default (or, for ``[ca] crl_days``, the value kept
with the authority at init).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import constants as C
from .errors import InputError

CONFIG_NAME = "certmgr.toml"


@dataclass
class CASettings:
    name: str = C.DEFAULT_CA_NAME
    organization: str = C.DEFAULT_CA_ORGANIZATION
    key_size: int = C.DEFAULT_CA_KEY_SIZE
    days: int = C.DEFAULT_CA_DAYS
    crl_days: int | None = None  # None: the value chosen at init, kept with the authority
    cert_file: str = "ca/ca.der"
    key_file: str = "ca/private/ca-key.pem"
    # A CA key on a PKCS#11 token instead of key_file: 'pkcs11:token=NAME;object=LABEL' and the token's module
    key_uri: str | None = None
    pkcs11_module: str | None = None


@dataclass
class Defaults:
    organization: str | None = None
    key_size: int = C.DEFAULT_KEY_SIZE
    days: int = C.DEFAULT_APP_DAYS
    layout: str = C.DEFAULT_LAYOUT
    renew_before: str | None = None  # None: one third of the certificate's lifetime


@dataclass
class VerifySettings:
    timeout: float = 60.0  # live proof: seconds to wait for a server to present the new certificate
    concurrency: int = 4  # loopback proofs run at once


@dataclass
class DatabaseSettings:
    url: str | None = None  # None or "": SQLite in the home


@dataclass
class AlertsSection:
    warning: str = "30d"
    critical: str = "7d"
    crl_warning: str = "5d"
    crl_critical: str = "1d"
    repeat_critical: str = "24h"
    channel: list[dict[str, Any]] = field(default_factory=list)  # [[alerts.channel]], checked by CHANNEL_KEYS


@dataclass
class ScheduleSettings:
    renew_due: str = "cron 0 2 * * *"
    renew_due_jitter: str = "15m"
    crl_refresh: str = "every 6h"
    crl_refresh_jitter: str | None = None
    expiry_scan: str = "cron 0 7 * * *"
    expiry_scan_jitter: str | None = None
    track_peers: str | None = None  # None: every [fleet] track_every_hours
    track_peers_jitter: str | None = None
    probe: str = "every 6h"  # canary probes of every live endpoint
    probe_jitter: str | None = None


@dataclass
class DaemonSection:
    node: str | None = None  # None: the host name
    metrics_listen: str = "127.0.0.1:9464"  # "" turns the endpoint off


@dataclass
class RenewSettings:
    claim_timeout: str = "30m"  # a claim older than this belongs to a node that died
    keep_history: int = 1  # previous own pairs kept in own/history for rollback


@dataclass
class FleetSettings:
    track_every_hours: float = 6.0  # peers' certificates re-read (GetEndpoints only) by the daemon
    probe_concurrency: int = 8  # endpoints probed at once
    timeout_seconds: float = 10.0  # per OPC UA step of a probe or a peer read


@dataclass
class WebSettings:
    listen: str = "127.0.0.1:8440"  # any address but loopback needs tls_cert and tls_key
    idle_timeout: str = "15m"  # a session unused this long is logged out
    tls_cert: str = ""  # PEM server certificate (and chain) for `certmgr web serve`
    tls_key: str = ""  # its PEM private key, mode 0600
    daemon: bool = False  # `certmgr daemon` serves the console too (same listen and TLS rules)


@dataclass
class GdsSettings:
    listen: str = "opc.tcp://127.0.0.1:4845"  # `certmgr gds serve`; 4845 is the GDS convention
    serve: bool = False  # `certmgr daemon` serves the GDS too
    # Approve a request without an operator: a new registration's first certificate (off: `certmgr gds approve`),
    # a renewal the application asks for itself with its current certificate (ApplicationSelfAdmin).
    auto_approve_new: bool = False
    auto_approve_renewals: bool = False
    # Extra host names / addresses in the GDS's own certificate (the listen host is always in it).
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)


@dataclass
class Settings:
    ca: CASettings = field(default_factory=CASettings)
    defaults: Defaults = field(default_factory=Defaults)
    verify: VerifySettings = field(default_factory=VerifySettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    daemon: DaemonSection = field(default_factory=DaemonSection)
    renew: RenewSettings = field(default_factory=RenewSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    web: WebSettings = field(default_factory=WebSettings)
    gds: GdsSettings = field(default_factory=GdsSettings)

    @property
    def database_url(self) -> str | None:
        return self.database.url or None

    @database_url.setter
    def database_url(self, value: str | None) -> None:
        self.database.url = value


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Settings)}
# Keys of one [[alerts.channel]] table, per channel type.
CHANNEL_COMMON = {"name": str, "type": str, "min_level": str}
CHANNEL_KEYS: dict[str, dict[str, type | tuple]] = {
    "smtp": {"host": str, "port": int, "ssl": bool, "starttls": bool, "username": str, "password_file": str,
             "password_env": str, "from": str, "to": (list, str), "timeout": (int, float)},
    "webhook": {"url": str, "token_file": str, "token_env": str, "token_header": str, "token_prefix": str,
                "timeout": (int, float), "retries": int, "backoff": (int, float)},
}
DURATION_KEYS = {("alerts", k) for k in ("warning", "critical", "crl_warning", "crl_critical", "repeat_critical")} | {
    ("defaults", "renew_before"), ("renew", "claim_timeout"), ("web", "idle_timeout"),
}
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list[str]": (list,)}
# (section, key): (lowest, highest) allowed; checked at load so a command never fails half-way on a setting
RANGES = {
    ("ca", "crl_days"): (1, C.MAX_CRL_DAYS), ("ca", "days"): (1, C.MAX_DAYS), ("defaults", "days"): (1, C.MAX_DAYS),
    ("renew", "keep_history"): (1, 100),  # 0 would leave nothing to roll back to after a failed switch
    ("verify", "concurrency"): (1, 64), ("verify", "timeout"): (1, 3600),
    ("fleet", "track_every_hours"): (0.01, 720), ("fleet", "probe_concurrency"): (1, 256), ("fleet", "timeout_seconds"): (0.5, 300),
}


class _Locator:
    """Line numbers for messages: tomllib keeps none, so the text is scanned for the header and key."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _sections(self):
        current = ""
        for number, line in enumerate(self.lines, start=1):
            header = self._HEADER.match(line)
            if header:
                current = header.group(1).replace('"', "").replace("'", "").strip()
                yield number, current, None
                continue
            key = self._KEY.match(line)
            if key:
                yield number, current, key.group(1).strip("\"'")

    def section(self, name: str) -> int | None:
        return next((n for n, s, k in self._sections() if k is None and s.split(".")[0] == name), None)

    def key(self, section: str, key: str) -> int | None:
        found = next((n for n, s, k in self._sections() if s == section and k == key), None)
        return found if found is not None else self.section(section)


def _where(path: Path, line: int | None) -> str:
    return f"{path}" + (f" (line {line})" if line else "")


def _hint(word: str, known, what: str) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?" if what == "key" else f"did you mean [{close[0]}]?"
    return f"remove it; known {what}s: {', '.join(sorted(known))}"


def _type_names(annotation: str) -> tuple[type, ...]:
    parts = [p.strip() for p in annotation.split("|") if p.strip() != "None"]
    types: tuple[type, ...] = ()
    for part in parts:
        types += _TYPES.get(part, ())
    return types


def _check_value(value: Any, expected: tuple[type, ...], label: str, where: str) -> None:
    if isinstance(value, bool) and bool not in expected:
        ok = False
    else:
        ok = isinstance(value, expected)
    if not ok:
        names = " or ".join(sorted({t.__name__ for t in expected}))
        raise InputError(f"{where}: {label} must be a {names}, not {value!r}", "fix the value in the file")


def _fill(target: object, values: dict[str, Any], section: str, path: Path, locate: _Locator) -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in fields:
            raise InputError(
                f"{path}: unknown key `{key}` in [{section}]" + (f" (line {locate.key(section, key)})" if locate.key(section, key) else ""),
                _hint(key, fields, "key"),
            )
        if section == "alerts" and key == "channel":
            _check_channels(value, path, locate)
        else:
            expected = _type_names(str(fields[key].type))
            _check_value(value, expected, f"[{section}] {key}", _where(path, locate.key(section, key)))
            if isinstance(getattr(target, key), float) and isinstance(value, int):
                value = float(value)
            if isinstance(value, list) and not all(isinstance(item, str) for item in value):
                raise InputError(f"{_where(path, locate.key(section, key))}: [{section}] {key} must be a list of strings",
                                 f'write it like {key} = ["a", "b"]')
        if (section, key) == ("gds", "listen"):
            _check_opc_url(value, _where(path, locate.key(section, key)))
        limits = RANGES.get((section, key))
        if limits is not None and value is not None and not limits[0] <= value <= limits[1]:
            raise InputError(f"{_where(path, locate.key(section, key))}: [{section}] {key} = {value!r} is out of range",
                             f"give a value between {limits[0]} and {limits[1]}")
        if (section, key) in DURATION_KEYS and value not in (None, ""):
            from .durations import parse_duration

            try:
                parse_duration(str(value))
            except InputError as exc:
                raise InputError(f"{_where(path, locate.key(section, key))}: [{section}] {key}: {exc.message}", exc.hint) from None
        setattr(target, key, value)


def opc_tcp_host(value: str) -> str | None:
    """The host of an opc.tcp://HOST:PORT address, or None when ``value`` is not one (no scheme, host or port)."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname if parts.scheme == "opc.tcp" and parts.hostname and port else None


def _check_opc_url(value: str, where: str) -> None:
    if opc_tcp_host(value) is None:
        raise InputError(f"{where}: [gds] listen = {value!r} is not opc.tcp://HOST:PORT", 'write it like "opc.tcp://127.0.0.1:4845"')


def _check_channels(value: Any, path: Path, locate: _Locator) -> None:
    where = _where(path, locate.section("alerts"))
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"{where}: alert channels are written [[alerts.channel]]", "see the README's alert section")
    for entry in value:
        kind = entry.get("type")
        if kind not in CHANNEL_KEYS:
            raise InputError(f"{where}: [[alerts.channel]] {entry.get('name')!r} has type {kind!r}",
                             f"use one of {', '.join(CHANNEL_KEYS)}")
        known = {**CHANNEL_COMMON, **CHANNEL_KEYS[kind]}
        for key, item in entry.items():
            if key not in known:
                line = locate.key("alerts.channel", key)
                raise InputError(f"{_where(path, line)}: unknown key `{key}` in [[alerts.channel]] {entry.get('name')!r} ({kind})",
                                 _hint(key, known, "key"))
            expected = known[key] if isinstance(known[key], tuple) else (known[key],)
            _check_value(item, expected, f"[[alerts.channel]] {key}", _where(path, locate.key("alerts.channel", key)))


def parse_settings(text: str, path: Path) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}", "fix the file or restore it from the README example") from None
    locate = _Locator(text)
    settings = Settings()
    for name, value in data.items():
        if name not in SECTIONS:
            raise InputError(f"{path}: unknown section [{name}]" + (f" (line {locate.section(name)})" if locate.section(name) else ""),
                             _hint(name, SECTIONS, "section"))
        if not isinstance(value, dict):
            raise InputError(f"{_where(path, locate.key('', name))}: [{name}] must be a table", "write it as a [section] with keys")
        _fill(getattr(settings, name), value, name, path, locate)
    _check_ca_key(settings.ca, path, locate)
    return settings


def _check_ca_key(ca_settings: CASettings, path: Path, locate: _Locator) -> None:
    """[ca] key_uri and pkcs11_module come as a pair, and the URI must parse: checked at load, so no command
    finds out half-way that it cannot sign."""
    uri, module = ca_settings.key_uri or None, ca_settings.pkcs11_module or None
    ca_settings.key_uri, ca_settings.pkcs11_module = uri, module
    if uri is None and module is None:
        return
    if uri is None:
        raise InputError(f"{_where(path, locate.key('ca', 'pkcs11_module'))}: [ca] pkcs11_module is set without key_uri",
                         "set key_uri = \"pkcs11:token=NAME;object=LABEL\", or remove pkcs11_module")
    if module is None:
        raise InputError(f"{_where(path, locate.key('ca', 'key_uri'))}: [ca] key_uri needs pkcs11_module",
                         "set pkcs11_module to the token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so")
    from ca.pkcs11 import parse_pkcs11_uri  # only for token homes: a key-file home never imports it
    from ca.errors import TokenError

    try:
        parse_pkcs11_uri(uri)
    except TokenError as exc:
        raise InputError(f"{_where(path, locate.key('ca', 'key_uri'))}: [ca] key_uri: {exc}", "fix the value in the file") from None


def load_settings(path: Path) -> Settings:
    if not path.exists():
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", "restore it from the README example") from None
    return parse_settings(text, path)


def toml_string(value: str) -> str:
    """A TOML basic string; control characters are escaped so the file always parses back."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _line(key: str, value: Any, example: Any = None) -> str:
    """``key = value``, or, when it is not set, the key commented out with an example value."""
    if value is None:
        return "# " + (_line(key, example) if example is not None else f"{key} =")
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"{key} = {value}"
    return f"{key} = {toml_string(str(value))}"


def render_settings(settings: Settings) -> str:
    """The commented file ``certmgr init`` writes: every section, every key (unset ones commented)."""
    ca, d, v, a, s, dm, r = (settings.ca, settings.defaults, settings.verify, settings.alerts, settings.schedule,
                             settings.daemon, settings.renew)
    return f"""# certmgr settings. The values shown are the ones in force; a commented key is not set.
# An unknown section or key stops every command with its line number.

[ca]
{_line("name", ca.name)}
{_line("organization", ca.organization)}
{_line("key_size", ca.key_size)}
{_line("days", ca.days)}
# Days between a CRL's thisUpdate and nextUpdate; certmgr re-signs when a third is left.
{_line("crl_days", ca.crl_days, 30)}
# CA certificate and encrypted private key, relative to this folder (or absolute, for shared nodes).
{_line("cert_file", ca.cert_file)}
{_line("key_file", ca.key_file)}
# Or the CA key on a PKCS#11 token (then key_file is not used; the PIN comes from CERTMGR_PKCS11_PIN or
# --pin-file, never from this file): set by `certmgr init --ca-key 'pkcs11:...' --pkcs11-module PATH`.
{_line("key_uri", ca.key_uri, "pkcs11:token=certmgr;object=plant1-ca")}
{_line("pkcs11_module", ca.pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so")}

[defaults]
# Used by `certmgr issue` when an option is not given.
{_line("organization", d.organization, "Plant 1")}
{_line("key_size", d.key_size)}
{_line("days", d.days)}
{_line("layout", d.layout)}
# Renew when less than this is left (e.g. "30d"); unset means one third of the lifetime.
{_line("renew_before", d.renew_before, "30d")}

[verify]
# Seconds a live proof waits for a server to present its new certificate; loopback proofs run at once.
{_line("timeout", v.timeout)}
{_line("concurrency", v.concurrency)}

[database]
# Unset: SQLite in this folder. For several nodes: "postgresql+psycopg://user@host/certmgr"
# (no password here: libpq reads PGPASSWORD or ~/.pgpass)
{_line("url", settings.database.url or None, "postgresql+psycopg://certmgr@db1.plant1.local/certmgr")}

[alerts]
# Levels: warning / critical below these, CRL levels by nextUpdate; critical alerts repeat.
{_line("warning", a.warning)}
{_line("critical", a.critical)}
{_line("crl_warning", a.crl_warning)}
{_line("crl_critical", a.crl_critical)}
{_line("repeat_critical", a.repeat_critical)}
# Channels (see the README):
# [[alerts.channel]]
# name = "ops-mail"
# type = "smtp"                 # smtp | webhook
# min_level = "warning"         # warning | critical | expired
# host = "smtp.plant1.local"
# from = "certmgr@plant1.local"
# to = ["ot-ops@plant1.local"]

[schedule]
# "cron M H DOM MON DOW" (crontab semantics) or "every 6h"; jitter spreads a job's start.
{_line("renew_due", s.renew_due)}
{_line("renew_due_jitter", s.renew_due_jitter)}
{_line("crl_refresh", s.crl_refresh)}
{_line("crl_refresh_jitter", s.crl_refresh_jitter, "10m")}
{_line("expiry_scan", s.expiry_scan)}
{_line("expiry_scan_jitter", s.expiry_scan_jitter, "10m")}
{_line("track_peers", s.track_peers, "every 6h")}
{_line("track_peers_jitter", s.track_peers_jitter, "10m")}
{_line("probe", s.probe)}
{_line("probe_jitter", s.probe_jitter, "10m")}

[daemon]
# Unset node: the host name (job ids and log lines carry it). metrics_listen "" turns the endpoint off.
{_line("node", dm.node, "plant1-a")}
{_line("metrics_listen", dm.metrics_listen)}

[renew]
# A renewal claim older than this belongs to a node that died; previous own pairs kept for rollback.
{_line("claim_timeout", r.claim_timeout)}
{_line("keep_history", r.keep_history)}

[fleet]
# Peers (endpoints certmgr does not issue for): how often the daemon re-reads their certificates; probes.
{_line("track_every_hours", settings.fleet.track_every_hours)}
{_line("probe_concurrency", settings.fleet.probe_concurrency)}
{_line("timeout_seconds", settings.fleet.timeout_seconds)}

[web]
# `certmgr web serve`: loopback by default; any other address needs tls_cert and tls_key (PEM files).
{_line("listen", settings.web.listen)}
{_line("idle_timeout", settings.web.idle_timeout)}
{_line("tls_cert", settings.web.tls_cert or None, "/etc/certmgr/web.pem")}
{_line("tls_key", settings.web.tls_key or None, "/etc/certmgr/web.key")}
{_line("daemon", settings.web.daemon)}

[gds]
# `certmgr gds serve`: certmgr as an OPC UA Global Discovery Server (Part 12 pull, SignAndEncrypt only).
{_line("listen", settings.gds.listen)}
# true: `certmgr daemon` serves the GDS as well (else run `certmgr gds serve`).
{_line("serve", settings.gds.serve)}
# Approve without an operator (`certmgr gds approve ID`): first certificates of new registrations; renewals an
# application asks for itself with its current certificate.
{_line("auto_approve_new", settings.gds.auto_approve_new)}
{_line("auto_approve_renewals", settings.gds.auto_approve_renewals)}
# Extra names in the GDS's own certificate (the listen host is always in it), e.g. ["gds.plant1.local"].
{_list_line("dns_names", settings.gds.dns_names, "gds.plant1.local")}
{_list_line("ip_addresses", settings.gds.ip_addresses, "10.0.0.5")}
"""


def _list_line(key: str, values: list[str], example: str) -> str:
    if not values:
        return f"# {key} = [{toml_string(example)}]"
    return f"{key} = [{', '.join(toml_string(v) for v in values)}]"
