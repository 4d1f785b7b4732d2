"""Experiment log records: what the serving replicas write to the Redis Streams and the drain
writes to Parquet. Defined once here, for the writer (``serve.exposures``) and the reader
(``pipelines.exposures``).

- exposure (one per response that showed items): ``tenant, experiment, variant, session_id,
  visitor_id, items, positions, model_version, source, endpoint, time`` (epoch ms). The
  replicas write them to ``keys.log_stream("exposures", tenant)``: each entry has one field
  ``d``, a compact JSON object, a JSON array of them, or a replica's flush (``encode_batch``:
  ``{"tenant", "writer", "rows": [[experiment, variant, session_id, visitor_id, items,
  model_version, source, endpoint, time, seq], ...]}``, positions being the items' order). A
  row of a multi-record entry has ``stream_id`` ``<entry id>:<index>``.
- outcome: ``tenant, session_id, visitor_id, event_type`` (``click`` for a ``view`` of an item,
  ``cart``, ``purchase``), ``item_id, revenue`` (the purchase's price), ``time`` (the event's
  time, epoch ms), ``logged_at`` (epoch ms). Outcomes are not written a second time: they are
  read from the tenant's live-event stream (``keys.events_stream_key``), which ``/v1/events``
  writes atomically with the session list or answers 503 (``outcomes_from_events``), so they
  follow the events endpoint's rule exactly and cost its hot path nothing.

Both carry ``writer`` (one id per replica process) and ``seq`` (that writer's counter of records of
this tenant and kind, taken when the record is made): a gap in a writer's ``seq`` in the drained logs is a record
lost on the way (a buffer overflow or a stream trimmed before it was drained), so loss is
counted end to end, never silent. The Parquet rows add ``stream_id`` (the entry id), the key
that makes re-drained entries duplicates to drop.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

logger = logging.getLogger(__name__)

FIELD = b"d"
OUTCOME_OF_EVENT = {"view": "click", "cart": "cart", "purchase": "purchase"}
"""/v1/events types logged as outcomes: a view of an item is its click (the report counts a click
only on an item shown to the session, by default); ``remove_from_cart`` is not an outcome."""

_TS = pa.timestamp("ms", tz="UTC")
EXPOSURE_SCHEMA = pa.schema([
    ("stream_id", pa.string()), ("tenant", pa.string()), ("experiment", pa.string()), ("variant", pa.string()),
    ("session_id", pa.string()), ("visitor_id", pa.string()), ("items", pa.list_(pa.string())),
    ("positions", pa.list_(pa.int32())), ("model_version", pa.string()), ("source", pa.string()),
    ("endpoint", pa.string()), ("time", _TS), ("writer", pa.string()), ("seq", pa.int64()),
])
OUTCOME_SCHEMA = pa.schema([
    ("stream_id", pa.string()), ("tenant", pa.string()), ("session_id", pa.string()), ("visitor_id", pa.string()),
    ("event_type", pa.string()), ("item_id", pa.string()), ("revenue", pa.float64()), ("time", _TS),
    ("logged_at", _TS), ("writer", pa.string()), ("seq", pa.int64()),
])
SCHEMAS = {"exposures": EXPOSURE_SCHEMA, "outcomes": OUTCOME_SCHEMA}
REQUIRED = {"exposures": ("tenant", "experiment", "variant", "session_id", "time"),
            "outcomes": ("tenant", "session_id", "event_type", "time")}


def encode(record: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


BATCH_FIELDS = ("experiment", "variant", "session_id", "visitor_id", "items", "model_version", "source", "endpoint",
                "time", "seq")


def encode_batch(tenant: str, writer: str, rows: list[tuple[Any, ...]]) -> bytes:
    """One stream entry for a replica's flush of a tenant's exposures (rows in ``BATCH_FIELDS`` order)."""
    return json.dumps({"tenant": tenant, "writer": writer, "rows": rows}, separators=(",", ":")).encode()


def _expand(value: Any) -> list[Any]:
    """The records of one entry's JSON: an object, an array of objects, or a flush batch."""
    if isinstance(value, dict) and isinstance(value.get("rows"), list):
        base = {"tenant": value.get("tenant"), "writer": value.get("writer")}
        out: list[Any] = []
        for row in value["rows"]:
            if not isinstance(row, list) or len(row) != len(BATCH_FIELDS):
                out.append(None)
                continue
            rec = {**base, **dict(zip(BATCH_FIELDS, row, strict=True))}
            items = rec.get("items")
            rec["positions"] = list(range(len(items))) if isinstance(items, list) else None
            out.append(rec)
        return out
    return value if isinstance(value, list) else [value]


def exposure(tenant: str, experiment: str, variant: str, session_id: str, visitor_id: str | None,
             items: Sequence[str], model_version: str | None, source: str, endpoint: str, time_ms: int,
             writer: str, seq: int) -> dict[str, Any]:
    return {"tenant": tenant, "experiment": experiment, "variant": variant, "session_id": session_id,
            "visitor_id": visitor_id, "items": list(items), "positions": list(range(len(items))),
            "model_version": model_version, "source": source, "endpoint": endpoint, "time": time_ms,
            "writer": writer, "seq": seq}


def outcome(tenant: str, session_id: str, visitor_id: str | None, event_type: str, item_id: str,
            revenue: float, time_ms: int, logged_at_ms: int, writer: str, seq: int) -> dict[str, Any]:
    return {"tenant": tenant, "session_id": session_id, "visitor_id": visitor_id, "event_type": event_type,
            "item_id": item_id, "revenue": revenue, "time": time_ms, "logged_at": logged_at_ms,
            "writer": writer, "seq": seq}


def _id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def to_table(kind: str, entries: Iterable[tuple[Any, dict[Any, Any] | None]]) -> tuple[pa.Table, Counter[str]]:
    """Stream entries (id, fields) as an Arrow table of ``SCHEMAS[kind]``, plus what was quarantined.

    An entry that is not a JSON object, or lacks a required field, is counted by reason and left
    out (it is still acknowledged by the drain: keeping it would block the stream for good)."""
    schema = SCHEMAS[kind]
    names = [f.name for f in schema]
    cols: dict[str, list[Any]] = {n: [] for n in names}
    bad: Counter[str] = Counter()
    for raw_id, fields in entries:
        if not fields:
            bad["deleted entry"] += 1
            continue
        raw = fields.get(FIELD) if FIELD in fields else fields.get(FIELD.decode())
        try:
            value = json.loads(raw)  # type: ignore[arg-type]  # None is refused like any non-JSON
        except (TypeError, ValueError):
            bad["not JSON"] += 1
            continue
        entry_id = _id(raw_id)
        records = _expand(value)
        many = len(records) != 1 or isinstance(value, list) or (isinstance(value, dict) and "rows" in value)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                bad["not a JSON object"] += 1
                continue
            missing = [f for f in REQUIRED[kind] if rec.get(f) is None]
            if missing:
                bad[f"missing {missing[0]}"] += 1
                continue
            rec["stream_id"] = f"{entry_id}:{i}" if many else entry_id
            for n in names:
                cols[n].append(rec.get(n))
    return _table(kind, cols, bad)


def _table(kind: str, cols: dict[str, list[Any]], bad: Counter[str]) -> tuple[pa.Table, Counter[str]]:
    """Columns as an Arrow table of ``SCHEMAS[kind]`` (rows that do not fit are counted in ``bad``)."""
    schema = SCHEMAS[kind]
    try:
        table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        table, more = _row_by_row(kind, cols)
        bad.update(more)
    if bad:
        logger.warning("%s: quarantined %d stream entries: %s", kind, sum(bad.values()), dict(bad))
    return table, bad


def _row_by_row(kind: str, cols: dict[str, list[Any]]) -> tuple[pa.Table, Counter[str]]:
    """Slow path: keep the rows whose values fit the schema, count the others."""
    schema = SCHEMAS[kind]
    n_rows = len(next(iter(cols.values()))) if cols else 0
    keep: list[int] = []
    bad: Counter[str] = Counter()
    for i in range(n_rows):
        try:
            for f in schema:
                pa.array([cols[f.name][i]], type=f.type)
            keep.append(i)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            bad[f"bad value for {f.name}"] += 1
    arrays = {f.name: pa.array([cols[f.name][i] for i in keep], type=f.type) for f in schema}
    return pa.table(arrays, schema=schema), bad


def event_entry(session_id: str, item_id: str, event_type: str, time_ms: int, price: float | None = None,
                user_id: str | None = None) -> dict[str, str]:
    """A live-event stream entry as ``/v1/events`` stores it (``serve.cache``'s script): for imports,
    smoke tests and benchmarks that feed the drain without the app."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(time_ms / 1000, UTC).isoformat()
    return {"session_id": session_id, "event": json.dumps(
        {"event_time": when, "item_id": item_id, "event_type": event_type, "price": price, "category": None,
         "user_id": user_id}, separators=(",", ":"))}


def outcomes_from_events(tenant: str, entries: Iterable[tuple[Any, dict[Any, Any] | None]]
                         ) -> tuple[pa.Table, Counter[str]]:
    """Outcome rows from live-event stream entries (fields ``session_id`` and ``event``, the JSON
    ``/v1/events`` stored). Events that are not outcomes (``remove_from_cart``) are skipped, not
    counted; unreadable entries are counted by reason."""
    from datetime import datetime

    def field(fields: dict[Any, Any], name: str) -> Any:
        raw = fields.get(name.encode(), fields.get(name))
        return raw.decode() if isinstance(raw, bytes) else raw

    names = [f.name for f in OUTCOME_SCHEMA]
    cols: dict[str, list[Any]] = {n: [] for n in names}
    bad: Counter[str] = Counter()
    for raw_id, fields in entries:
        if not fields:
            bad["deleted entry"] += 1
            continue
        try:
            ev = json.loads(field(fields, "event"))
            kind = OUTCOME_OF_EVENT.get(ev["event_type"])
            if kind is None:
                continue
            when = int(datetime.fromisoformat(ev["event_time"]).timestamp() * 1000)
            session_id = field(fields, "session_id")
            if not session_id:
                raise KeyError("session_id")
        except (TypeError, ValueError, KeyError):
            bad["unreadable event"] += 1
            continue
        entry_id = _id(raw_id)
        revenue = float(ev.get("price") or 0.0) if kind == "purchase" else 0.0
        rec = outcome(tenant, session_id, ev.get("user_id"), kind, ev.get("item_id"), revenue, when,
                      stream_id_ms(entry_id), "", -1)
        rec["writer"], rec["seq"], rec["stream_id"] = None, None, entry_id  # /v1/events: no writer sequence
        for n in names:
            cols[n].append(rec.get(n))
    return _table("outcomes", cols, bad)


def stream_id_ms(stream_id: str) -> int:
    """The server time (epoch ms) at which a stream entry (or a row of one) was added."""
    return int(stream_id.split("-", 1)[0])


def append(client: Any, kind: str, tenant: str, records: Iterable[dict[str, Any]], maxlen: int,
           batch: int = 1000) -> int:
    """Synchronous ``XADD ... MAXLEN ~`` of records to a tenant's log (backfills, tests, benchmarks;
    the serving replicas write through ``serve.exposures``); returns the number written."""
    from store.keys import log_stream

    key = log_stream(kind, tenant)
    n = 0
    pipe = client.pipeline(transaction=False)
    for rec in records:
        pipe.xadd(key, {FIELD: encode(rec)}, maxlen=maxlen, approximate=True)
        n += 1
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return n
