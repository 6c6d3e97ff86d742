"""``certmgr issue --batch FILE``: register and issue many applications in one run.

The file is CSV with a header row, or JSON lines; the column/key names are `certmgr issue`'s option names
with underscores: app_uri, store, layout, name, org, dns and ip (space-separated lists, or JSON arrays),
role, key_size, days, renew_before. A bad row is reported and skipped; the others go on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..context import AppContext
from ..errors import CertmgrError, InputError
from .issuing import IssueRequest, issue_application, plan
from .keygen import generate_keys

COLUMNS = {"app_uri", "store", "layout", "name", "org", "dns", "ip", "role", "key_size", "days", "renew_before"}


@dataclass
class BatchRow:
    line: int
    app_uri: str | None
    outcome: str  # "issued" or "failed"
    detail: str
    thumbprint: str | None = None

    def as_dict(self) -> dict:
        return {"line": self.line, "app_uri": self.app_uri, "outcome": self.outcome, "detail": self.detail,
                "thumbprint": self.thumbprint}


def read_rows(path: Path) -> list[tuple[int, dict]]:
    expected = "give a UTF-8 CSV file with a header row, or JSON lines"
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check the path") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})", expected) from None
    if "\x00" in text:
        raise InputError(f"{path} holds NUL bytes, so it is not a CSV or JSON lines file", expected)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    value = {"__error__": f"not JSON: {exc.msg}"}
                rows.append((number, value if isinstance(value, dict) else {"__error__": "not a JSON object"}))
        return rows
    reader = csv.DictReader(text.splitlines())
    unknown = set(reader.fieldnames or []) - COLUMNS
    if not reader.fieldnames or "app_uri" not in reader.fieldnames:
        raise InputError(f"{path} has no app_uri column", f"the header row names the columns: {', '.join(sorted(COLUMNS))}")
    if unknown:
        raise InputError(f"{path}: unknown column(s) {', '.join(sorted(unknown))}", f"use {', '.join(sorted(COLUMNS))}")
    return [(number, row) for number, row in enumerate(reader, start=2)]


def _list(value) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(str(value).split())


def request_of(row: dict) -> IssueRequest:
    if "__error__" in row:
        raise InputError(row["__error__"])
    unknown = set(row) - COLUMNS
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}")

    def number(key: str) -> int | None:
        value = row.get(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} {value!r} is not a whole number") from None

    return IssueRequest(
        app_uri=str(row.get("app_uri") or ""),
        store=Path(row["store"]) if row.get("store") else None,
        layout=row.get("layout") or None,
        name=row.get("name") or None,
        organization=row.get("org") or None,
        dns_names=_list(row.get("dns")),
        ip_addresses=_list(row.get("ip")),
        role=row.get("role") or "both",
        key_size=number("key_size"),
        days=number("days"),
        renew_before=row.get("renew_before") or None,
    )


def issue_batch(ctx: AppContext, path: Path, progress: Callable[[], None] | None = None) -> list[BatchRow]:
    rows = read_rows(path)
    report: list[BatchRow] = []
    ready: list[tuple[int, IssueRequest, int]] = []
    seen: set[str] = set()
    for line, row in rows:
        uri = row.get("app_uri") if isinstance(row, dict) else None
        try:
            request = request_of(row)
            planned = plan(ctx, request)
            if request.app_uri in seen:
                raise InputError(f"{request.app_uri} appears twice in the file")
            seen.add(request.app_uri)
            ready.append((line, request, planned.spec.key_size))
        except CertmgrError as exc:
            report.append(BatchRow(line, uri, "failed", exc.one_line()))
            if progress:
                progress()
        except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type in a JSON row
            report.append(BatchRow(line, str(uri) if uri else None, "failed", f"bad value: {exc}"))
            if progress:
                progress()
    if ready:
        ctx.issuer()  # the passphrase once, before the keys
    keys = generate_keys([size for _, _, size in ready])
    for (line, request, _), key in zip(ready, keys):
        try:
            if isinstance(key, Exception):
                raise CertmgrError(f"key generation failed: {key}")
            outcome = issue_application(ctx, request, key=key)
            report.append(BatchRow(line, request.app_uri, "issued", f"until {outcome.not_after:%Y-%m-%d}", outcome.thumbprint))
        except CertmgrError as exc:
            report.append(BatchRow(line, request.app_uri, "failed", exc.one_line()))
        if progress:
            progress()
    return sorted(report, key=lambda r: r.line)
