"""Shared parsing helpers for the ingest adapters: read text as strings, parse, tag bad rows.

Every adapter returns a *raw event table* (``RAW_SCHEMA``): the canonical event columns
(times already parsed, null where unparseable), a ``reason`` column (null for a good row,
otherwise why the row is quarantined), the ``source_file``, the 1-based physical
``source_line`` in that file (the header is line 1), and ``raw`` (the original fields of a
bad row, so it can be repaired and replayed; null for good rows).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from models.schema import SchemaError

logger = logging.getLogger(__name__)

TS = pa.timestamp("us", tz="UTC")
RAW_SCHEMA = pa.schema(
    [
        ("event_time", TS),
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("price", pa.float64()),
        ("category", pa.string()),
        ("tenant", pa.string()),
        ("reason", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("raw", pa.string()),
    ]
)
INT_RE = r"^\s*-?\d+\s*$"
FLOAT_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
ISO_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"


class CsvText:
    """A delimited file read with every column as a string, plus its line numbers."""

    def __init__(self, table: pa.Table, lines: np.ndarray, malformed: list[tuple[int, str]]):
        self.table = table
        self.lines = lines
        self.malformed = malformed


def read_csv_text(data: bytes, source: str, delimiter: str, required: Sequence[str] = (),
                  names: Sequence[str] | None = None) -> CsvText:
    """Read ``data`` as strings. ``names`` for headerless files; otherwise the header must hold ``required``.

    Rows with the wrong number of fields are not parsed but kept in ``malformed`` as
    ``(line, text)``; blank lines become all-empty rows (the adapters tag them). Line
    numbers assume no quoted newlines, which none of the supported formats use.
    """
    if names is None:
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().strip("\ufeff")
        cols = [c.strip().strip('"') for c in header.split(delimiter)]
        missing = [c for c in required if c not in cols]
        if missing:
            raise SchemaError(f"{source}: missing required column(s) {missing}; found {cols}")
        names = cols
        skip = 1
    else:
        skip = 0
    malformed: list[tuple[int, str]] = []

    def _bad(row: pcsv.InvalidRow) -> str:
        malformed.append((int(row.number) if row.number is not None else -1, row.text))
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(use_threads=False, column_names=list(names), skip_rows=skip,
                                      block_size=1 << 26),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=_bad,
                                        ignore_empty_lines=False),
        convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    total = table.num_rows + len(malformed)
    all_lines = np.arange(skip + 1, skip + 1 + total, dtype=np.int64)
    lines = np.setdiff1d(all_lines, np.array([m[0] for m in malformed], dtype=np.int64), assume_unique=True)
    return CsvText(table, lines, malformed)


def blank(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """True where a string is null, empty or whitespace."""
    return pc.or_(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))


def nullify(col: pa.ChunkedArray | pa.Array, *na: str) -> pa.ChunkedArray | pa.Array:
    """Trimmed strings; blanks and the given NA markers become null."""
    col = pc.utf8_trim_whitespace(col)
    mask = pc.or_(pc.equal(col, ""), pc.is_in(col, value_set=pa.array(list(na), pa.string())))
    return pc.if_else(mask, pa.scalar(None, pa.string()), col)


def parse_number(col: pa.ChunkedArray | pa.Array, integer: bool = False) -> tuple[pa.Array, pa.Array]:
    """Parse strings as float64 (or int64). Returns (values, bad) where bad marks non-blank unparseable text."""
    ok = pc.fill_null(pc.match_substring_regex(col, INT_RE if integer else FLOAT_RE), False)
    target = pa.int64() if integer else pa.float64()
    values = pc.if_else(ok, pc.utf8_trim_whitespace(col), pa.scalar(None, pa.string())).cast(target)
    return values, pc.and_(pc.invert(ok), pc.invert(blank(col)))


def parse_iso(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """ISO-8601 strings to UTC timestamps; anything unparseable becomes null (naive = UTC)."""
    col = pc.utf8_trim_whitespace(col)
    ok = pc.fill_null(pc.match_substring_regex(col, ISO_RE), False)
    vals = pc.if_else(ok, col, pa.scalar(None, pa.string()))
    has_tz = pc.fill_null(pc.match_substring_regex(vals, r"(Z|[+-]\d{2}:?\d{2})$"), False)
    vals = pc.if_else(has_tz, vals, pc.binary_join_element_wise(vals, "Z", ""))
    try:
        return pc.cast(vals, TS)
    except pa.ArrowInvalid:  # e.g. month 13 matched the pattern: parse row by row
        return pa.array([_iso_or_none(v) for v in vals.to_pylist()], TS)


def _iso_or_none(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def from_epoch(values: pa.Array, unit_us: float) -> pa.Array:
    """Numbers of ``unit_us`` microseconds since the epoch (e.g. 1e3 for ms) to UTC timestamps."""
    micros = pc.round(pc.multiply(values.cast(pa.float64()), unit_us))
    return pc.cast(micros, pa.int64()).cast(TS)


def first_reason(n: int, rules: Sequence[tuple[str, pa.Array | pa.ChunkedArray]]) -> pa.Array:
    """The first rule whose mask is true names the row's reason (null when none is)."""
    reason = pa.nulls(n, pa.string())
    for name, mask in rules:
        hit = pc.and_(pc.is_null(reason), pc.fill_null(mask, False))
        reason = pc.if_else(hit, pa.scalar(name), reason)
    return reason


def finish(cols: dict[str, pa.Array | pa.ChunkedArray | None], reason: pa.Array, source: str,
           lines: np.ndarray, raw_fields: Sequence[pa.Array | pa.ChunkedArray] = (), delimiter: str = ",",
           malformed: Sequence[tuple[int, str]] = ()) -> pa.Table:
    """Assemble a ``RAW_SCHEMA`` table; malformed lines are appended as rows with reason ``malformed_row``."""
    n = len(reason)
    arrays = []
    for field in RAW_SCHEMA:
        if field.name == "reason":
            arr: pa.Array | pa.ChunkedArray | None = reason
        elif field.name == "source_file":
            arr = pa.array([source] * n, pa.string())
        elif field.name == "source_line":
            arr = pa.array(lines, pa.int64())
        elif field.name == "raw":
            if raw_fields:
                joined = pc.binary_join_element_wise(*[pc.fill_null(f, "") for f in raw_fields], delimiter)
                arr = pc.if_else(pc.is_valid(reason), joined, pa.scalar(None, pa.string()))
            else:
                arr = pa.nulls(n, pa.string())
        else:
            arr = cols.get(field.name)
        if arr is None:
            arr = pa.nulls(n, field.type)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arrays.append(arr.cast(field.type))
    table = pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)
    if malformed:
        table = pa.concat_tables([table, malformed_rows(malformed, source)])
    return table


def malformed_rows(malformed: Sequence[tuple[int, str]], source: str, reason: str = "malformed_row") -> pa.Table:
    """Rows that could not be split into fields, kept verbatim in ``raw``."""
    m = len(malformed)
    cols = {f.name: pa.nulls(m, f.type) for f in RAW_SCHEMA}
    cols["reason"] = pa.array([reason] * m, pa.string())
    cols["source_file"] = pa.array([source] * m, pa.string())
    cols["source_line"] = pa.array([ln for ln, _ in malformed], pa.int64())
    cols["raw"] = pa.array([text for _, text in malformed], pa.string())
    return pa.table(cols, schema=RAW_SCHEMA)


def all_blank(table: pa.Table) -> pa.Array:
    """True for rows whose every field is blank (a blank line in the file)."""
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    for col in table.columns:
        mask = pc.and_(mask, blank(col))
    return mask
