"""Data to stdout (a table or JSON), everything else to stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, sort_keys=False)


def emit_json(data: Any) -> None:
    click.echo(dumps(data))


def _batched_lines(rows: Iterable[dict], size: int = 1000):
    batch: list[str] = []
    for row in rows:
        batch.append(json.dumps(row, default=_default))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def emit_json_stream(rows: Iterable[dict]) -> int:
    """A JSON array written in batches of rows, so a large listing never sits in memory."""
    count = 0
    click.echo("[", nl=False)
    for batch in _batched_lines(rows):
        click.echo(("," if count else "") + "\n  " + ",\n  ".join(batch), nl=False)
        count += len(batch)
    click.echo("\n]" if count else "]")
    return count


def emit_jsonl(rows: Iterable[dict]) -> int:
    count = 0
    for batch in _batched_lines(rows):
        click.echo("\n".join(batch))
        count += len(batch)
    return count


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    cells = [[str(header) for _, header in columns]]
    cells += [["" if row.get(key) is None else str(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    lines = []
    for key, value in pairs:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        lines.append(f"{key.ljust(width)}  {'-' if value is None else value}")
    return "\n".join(lines)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)
