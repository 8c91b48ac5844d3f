"""Local data files as validate sees them: a cheap look at the first rows of a .jsonl, .json or
.csv file (parquet is read only by the generated script; pyarrow is not a CLI dependency).

The peek finds the columns, keeps the first rows for the checks train.py would make on every
row, and notes the first line that is not JSON and whether the file holds no rows at all, so
`validate` reports them at the data file's line instead of `run` failing later.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

PEEK_ROWS = 20  # rows whose keys are the columns
CHECK_ROWS = 2000  # rows checked at validate time; train.py checks them all
MAX_JSON_BYTES = 50_000_000  # a .json file is one document: larger ones are left to train.py


@dataclass(frozen=True)
class BadLine:
    """The first line of a .jsonl (or the place in a .json) that does not parse, 1-based."""

    line: int
    col: int
    why: str


@dataclass(frozen=True)
class DataPeek:
    """What the first rows of a local data file say."""

    columns: frozenset[str] | None  # None: the format or the file could not be peeked
    rows: tuple[tuple[int, object], ...] = ()  # (1-based line, or row number in a .json; row)
    empty: bool = False  # the file holds no row
    bad: BadLine | None = None


def peek(path: Path) -> DataPeek:
    """The first rows of a local data file; columns None when it cannot be read as data."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _peek_jsonl(path)
        if suffix == ".csv":
            return _peek_csv(path)
        if suffix == ".json" and path.stat().st_size < MAX_JSON_BYTES:
            return _peek_json(path)
    except OSError:
        pass
    return DataPeek(columns=None)


def _peek_jsonl(path: Path) -> DataPeek:
    columns: set[str] = set()
    rows: list[tuple[int, object]] = []
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no > CHECK_ROWS:
                break
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return _bad(columns, rows, BadLine(line_no, 1, "the line is not UTF-8 text"))
            except json.JSONDecodeError as err:
                why = f"the line is not JSON: {err.msg}"
                return _bad(columns, rows, BadLine(line_no, err.colno, why))
            rows.append((line_no, row))
            if line_no <= PEEK_ROWS and isinstance(row, dict):
                columns |= set(row)
    return DataPeek(frozenset(columns), tuple(rows), empty=not rows)


def _bad(columns: set[str], rows: list[tuple[int, object]], bad: BadLine) -> DataPeek:
    # the rows before the bad line still count: their columns are checked as usual
    return DataPeek(frozenset(columns) if rows else None, tuple(rows), bad=bad)


def _peek_csv(path: Path) -> DataPeek:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        return DataPeek(columns=None)
    return DataPeek(frozenset(header), empty=not header)


def _peek_json(path: Path) -> DataPeek:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        return DataPeek(None, bad=BadLine(1, 1, "the file is not UTF-8 text"))
    except json.JSONDecodeError as err:
        why = f"the file is not JSON: {err.msg}"
        return DataPeek(None, bad=BadLine(err.lineno, err.colno, why))
    if isinstance(data, dict):  # {"train": [...]}: the first split's rows
        data = next(iter(data.values()), [])
    rows = data if isinstance(data, list) else []
    columns = {k for row in rows[:PEEK_ROWS] if isinstance(row, dict) for k in row}
    numbered = tuple(enumerate(rows[:CHECK_ROWS], start=1))
    return DataPeek(frozenset(columns), numbered, empty=not rows)
