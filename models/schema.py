"""The canonical event schema that every tandem job speaks.

One row is one shopper action. It is defined once here as a pyarrow schema;
``conform`` casts a foreign table onto it (failing loudly, naming the source and
column) and ``split_valid`` separates rows that break the contract so jobs can
quarantine them with a reason instead of dropping them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Known event types. New types are allowed by extending this tuple; rows with a
# type outside it are quarantined with reason ``unknown_event_type``.
EVENT_TYPES: tuple[str, ...] = ("view", "cart", "remove_from_cart", "purchase")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=True),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=True),
        pa.field("category", pa.string(), nullable=True),
        pa.field("tenant", pa.string(), nullable=True),
    ],
    metadata={"tandem.schema_version": str(SCHEMA_VERSION)},
)

# Event times outside these years are quarantined (``time_out_of_range``): a zero or a
# milliseconds-read-as-seconds timestamp must not reach the features or the watermark.
MIN_YEAR, MAX_YEAR = 2000, 2100
# Default clock skew allowed for event times ahead of the job's ``now`` (``future_time``).
MAX_FUTURE_S = 600.0
# A tenant id must be usable as a Redis key part (``store.keys``): 1-64 of letters, digits, _ . -
TENANT_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"

REQUIRED_COLUMNS: tuple[str, ...] = ("event_time", "session_id", "item_id", "event_type")
OPTIONAL_COLUMNS: tuple[str, ...] = ("user_id", "price", "category", "tenant")
QUARANTINE_SCHEMA = EVENT_SCHEMA.append(pa.field("reason", pa.string(), nullable=False))


class SchemaError(ValueError):
    """A table cannot be read as canonical events. The message names source and column."""


@dataclass(frozen=True)
class Split:
    """Result of validating a table: the good rows and the quarantined ones."""

    valid: pa.Table
    quarantined: pa.Table

    def reason_counts(self) -> dict[str, int]:
        if self.quarantined.num_rows == 0:
            return {}
        counts = pc.value_counts(self.quarantined.column("reason")).to_pylist()
        return {c["values"]: int(c["counts"]) for c in counts}


def conform(table: pa.Table, source: str = "<table>") -> pa.Table:
    """Cast ``table`` to ``EVENT_SCHEMA``.

    Required columns must be present; optional ones are added as nulls. Extra
    columns are dropped. A column that cannot be cast raises ``SchemaError``
    naming ``source`` and the column.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise SchemaError(
            f"{source}: missing required column(s) {missing}; found {table.column_names}. "
            f"Canonical events need {list(REQUIRED_COLUMNS)}."
        )
    arrays = []
    for field in EVENT_SCHEMA:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
            continue
        col = table.column(field.name)
        try:
            arrays.append(_cast_column(col, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SchemaError(
                f"{source}: column {field.name!r} of type {col.type} cannot be read as {field.type}: {exc}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _cast_column(col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if col.type == target:
        return col
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(col.type):
            if col.type.tz is None:
                col = pc.assume_timezone(col, "UTC")
            return col.cast(target)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            # Unix seconds: accept ints and floats (GRU4Rec TSVs carry fractional seconds).
            micros = pc.multiply(col.cast(pa.float64()), 1_000_000.0)
            return pc.cast(pc.round(micros), pa.int64()).cast(target)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            parsed = pc.strptime(col, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=False)
            return _cast_column(parsed, target)
    if pa.types.is_string(target) and (pa.types.is_integer(col.type) or pa.types.is_dictionary(col.type)):
        return col.cast(pa.string())
    return col.cast(target)


def split_valid(table: pa.Table, now: datetime | None = None, max_future_s: float = MAX_FUTURE_S) -> Split:
    """Separate contract-breaking rows (with a ``reason``) from valid ones.

    ``table`` must already have ``EVENT_SCHEMA`` (see ``conform``). The first
    failing rule names the reason, so every bad row is counted exactly once.
    Event times outside ``MIN_YEAR``..``MAX_YEAR`` are ``time_out_of_range``; with
    ``now``, times later than ``now + max_future_s`` are ``future_time`` (one
    future-dated row must not move a watermark ahead of the data). A tenant that
    cannot be a key part (``TENANT_PATTERN``) is ``invalid_tenant``; null or "" is
    the default tenant.
    """
    n = table.num_rows
    t_type = EVENT_SCHEMA.field("event_time").type
    lo = pa.scalar(datetime(MIN_YEAR, 1, 1, tzinfo=UTC), t_type)
    hi = pa.scalar(datetime(MAX_YEAR + 1, 1, 1, tzinfo=UTC), t_type)
    times = table["event_time"]
    tenant = table["tenant"]
    rules: list[tuple[str, pa.ChunkedArray | pa.Array]] = [
        ("null_event_time", pc.is_null(times)),
        ("time_out_of_range", pc.fill_null(pc.or_(pc.less(times, lo), pc.greater_equal(times, hi)), False)),
    ]
    if now is not None:
        limit = now.astimezone(UTC) + timedelta(seconds=max_future_s)
        rules.append(("future_time", pc.fill_null(pc.greater(times, pa.scalar(limit, t_type)), False)))
    rules += [
        ("null_session_id", _blank(table["session_id"])),
        ("null_item_id", _blank(table["item_id"])),
        ("unknown_event_type", pc.invert(pc.is_in(table["event_type"], value_set=pa.array(EVENT_TYPES)))),
        ("negative_price", pc.fill_null(pc.less(table["price"], 0.0), False)),
        ("invalid_tenant", pc.fill_null(pc.and_(pc.not_equal(tenant, ""),
                                                pc.invert(pc.match_substring_regex(tenant, TENANT_PATTERN))),
                                        False)),
    ]
    reason = pa.nulls(n, pa.string())
    for name, mask in rules:
        mask = pc.fill_null(mask, True)
        reason = pc.if_else(pc.and_(pc.is_null(reason), mask), pa.scalar(name), reason)
    bad = pc.is_valid(reason)
    valid = table.filter(pc.invert(bad))
    quarantined = table.filter(bad).append_column("reason", pc.drop_null(reason))
    return Split(valid=valid, quarantined=quarantined)


def _blank(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.or_(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))


def empty_events() -> pa.Table:
    return EVENT_SCHEMA.empty_table()
