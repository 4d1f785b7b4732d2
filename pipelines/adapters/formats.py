"""One pure function per source format: file bytes + source name -> ``RAW_SCHEMA`` table.

No I/O and no global state, so the same function can run per file inside a Ray Data
``map_batches`` (one row per file path, bytes read by the caller) for large inputs.
A missing column raises ``SchemaError`` naming the file and the column; a bad row is kept
with a ``reason`` instead of being dropped.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.features.sessionize import sessionize_gap
from models.schema import EVENT_TYPES, SchemaError, conform, split_valid
from pipelines.adapters.common import (
    RAW_SCHEMA,
    TS,
    all_blank,
    blank,
    finish,
    first_reason,
    from_epoch,
    malformed_rows,
    nullify,
    parse_iso,
    parse_number,
    read_csv_text,
)

logger = logging.getLogger(__name__)

YOOCHOOSE_CLICKS = ("session", "time", "item", "category")
YOOCHOOSE_BUYS = ("session", "time", "item", "price", "quantity")
RETAILROCKET_EVENTS = {"view": "view", "addtocart": "cart", "transaction": "purchase"}
OTTO_EVENTS = {"clicks": "view", "carts": "cart", "orders": "purchase"}
MS = 1_000.0
DAY_US = 86_400_000_000
S = 1_000_000.0


def _const(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def yoochoose(data: bytes, source: str) -> pa.Table:
    """Headerless YOOCHOOSE: 4 fields = clicks (views), 5 fields = buys (purchases).

    Category ``0`` means unknown in YOOCHOOSE (null here); buy price/quantity ``0`` means
    unknown price (null) and the row is one purchase event whatever the quantity.
    """
    first = next((ln for ln in data.splitlines() if ln.strip()), b"")
    fields = len(first.split(b","))
    if fields not in (4, 5):
        raise SchemaError(f"{source}: YOOCHOOSE rows need 4 fields {list(YOOCHOOSE_CLICKS)} (clicks) or 5 "
                          f"{list(YOOCHOOSE_BUYS)} (buys); first row has {fields}: {first[:80]!r}")
    names = YOOCHOOSE_CLICKS if fields == 4 else YOOCHOOSE_BUYS
    csv = read_csv_text(data, source, ",", names=names)
    t, n = csv.table, csv.table.num_rows
    when = parse_iso(t["time"])
    rules: list[tuple[str, Any]] = [
        ("blank_line", all_blank(t)),
        ("missing_session_id", blank(t["session"])),
        ("bad_time", pc.is_null(when)),
        ("missing_item_id", blank(t["item"])),
    ]
    cols: dict[str, Any] = {"event_time": when, "session_id": nullify(t["session"]), "item_id": nullify(t["item"])}
    if fields == 4:
        cols["event_type"] = _const("view", n)
        cols["category"] = nullify(t["category"], "0")
    else:
        price, bad_price = parse_number(t["price"])
        _, bad_qty = parse_number(t["quantity"], integer=True)
        rules += [("bad_price", bad_price), ("bad_quantity", bad_qty)]
        cols["event_type"] = _const("purchase", n)
        cols["price"] = pc.if_else(pc.fill_null(pc.greater(price, 0.0), False), price, pa.scalar(None, pa.float64()))
    return finish(cols, first_reason(n, rules), source, csv.lines, t.columns, ",", csv.malformed)


def session_tsv(data: bytes, source: str) -> pa.Table:
    """session-rec / GRU4Rec ``SessionId<TAB>ItemId<TAB>Time`` (unix seconds) -> views."""
    csv = read_csv_text(data, source, "\t", required=("SessionId", "ItemId", "Time"))
    t, n = csv.table, csv.table.num_rows
    secs, bad_secs = parse_number(t["Time"])
    rules = [
        ("blank_line", all_blank(t)),
        ("missing_session_id", blank(t["SessionId"])),
        ("missing_item_id", blank(t["ItemId"])),
        ("bad_time", pc.or_(bad_secs, pc.is_null(secs))),
    ]
    cols = {"event_time": from_epoch(secs, S), "session_id": nullify(t["SessionId"]),
            "item_id": nullify(t["ItemId"]), "event_type": _const("view", n)}
    return finish(cols, first_reason(n, rules), source, csv.lines, t.columns, "\t", csv.malformed)


DIGI_VIEWS = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
DIGI_PURCHASES = ("sessionId", "userId", "timeframe", "eventdate", "ordernumber", "itemId")
DIGI_CATEGORIES = ("itemId", "categoryId")


def diginetica_role(data: bytes) -> str:
    """``purchases`` (header has ordernumber), ``categories`` (categoryId) or ``views``."""
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    if "ordernumber" in header:
        return "purchases"
    if "categoryId" in header:
        return "categories"
    return "views"


def diginetica(data: bytes, source: str) -> pa.Table:
    """CIKM Cup 2016 views or purchases (``;``-separated, ``NA`` = anonymous user).

    event_time = session start + timeframe, because ``timeframe`` is the time since the
    session's first query and ``eventdate`` each event's own date (see ``anchor_sessions``).
    For a session inside one day this is the usual eventdate + timeframe.
    """
    role = diginetica_role(data)
    names = DIGI_PURCHASES if role == "purchases" else DIGI_VIEWS
    csv = read_csv_text(data, source, ";", required=names)
    t, n = csv.table, csv.table.num_rows
    sid, uid, iid = (("sessionId", "userId", "itemId") if role == "purchases" else ("session_id", "user_id", "item_id"))
    frame, bad_frame = parse_number(t["timeframe"], integer=True)
    day = pc.strptime(pc.utf8_trim_whitespace(t["eventdate"]), format="%Y-%m-%d", unit="us", error_is_null=True)
    day_us = pc.assume_timezone(day, "UTC").cast(TS).cast(pa.int64())
    when = anchor_sessions(t[sid], day_us, pc.multiply(frame, 1000))
    rules = [
        ("blank_line", all_blank(t)),
        ("missing_session_id", blank(t[sid])),
        ("missing_item_id", blank(t[iid])),
        ("bad_time", pc.or_(bad_frame, pc.is_null(when))),
    ]
    cols = {"event_time": when, "session_id": nullify(t[sid]), "user_id": nullify(t[uid], "NA"),
            "item_id": nullify(t[iid]), "event_type": _const("purchase" if role == "purchases" else "view", n)}
    return finish(cols, first_reason(n, rules), source, csv.lines, t.columns, ";", csv.malformed)


def anchor_sessions(session: Any, day_us: Any, frame_us: Any) -> pa.Array:
    """Event times ``S + timeframe`` with one start ``S`` per session that keeps every event on its date.

    Each event bounds the start: ``eventdate - timeframe <= S < eventdate + 1 day - timeframe``.
    ``S`` is the session's first eventdate at midnight (the usual convention) when that is
    inside the bounds, else the lowest start the bounds allow; so a session crossing
    midnight does not jump a day, and a long session (timeframe over a day) is not pushed
    past its dates. Rows without a date or timeframe
    get null. Per file: views and purchases of one session in different files are
    anchored separately.
    """
    df = pd.DataFrame({"s": pa.array(session).to_pandas(), "d": pa.array(day_us).to_pandas(),
                       "f": pa.array(frame_us).to_pandas()}).astype({"d": "Float64", "f": "Float64"})
    ok = df["d"].notna() & df["f"].notna() & df["s"].notna()
    g = df[ok].assign(lo=lambda x: x.d - x.f, hi=lambda x: x.d + DAY_US - x.f - 1).groupby("s", sort=False)
    first, lo, hi = g.d.transform("min"), g.lo.transform("max"), g.hi.transform("min")
    start = first.where((first >= lo) & (first <= hi), lo)
    out = pd.Series(pd.NA, index=df.index, dtype="Float64")
    out[ok] = start + df.loc[ok, "f"]
    return pa.array(out.astype("Int64"), pa.int64()).cast(TS)


def diginetica_categories(data: bytes, source: str) -> tuple[pa.Table, int]:
    """``itemId;categoryId`` -> (item_id, category) lookup (first wins) and the count of rejected rows."""
    csv = read_csv_text(data, source, ";", required=DIGI_CATEGORIES)
    t = csv.table
    ok = pc.invert(pc.or_(blank(t["itemId"]), blank(t["categoryId"])))
    good = pa.table({"item_id": nullify(t["itemId"]), "category": nullify(t["categoryId"])}).filter(ok)
    rejected = t.num_rows - good.num_rows + len(csv.malformed)
    return good.group_by("item_id", use_threads=False).aggregate([("category", "first")]).rename_columns(
        ["item_id", "category"]), rejected


def join_categories(events: pa.Table, categories: pa.Table) -> pa.Table:
    """Fill ``category`` from an (item_id, category) lookup, keeping row order."""
    idx = pc.index_in(events["item_id"], value_set=categories["item_id"])
    looked = pc.take(categories["category"], idx)
    filled = pc.coalesce(events["category"], looked)
    return events.set_column(events.schema.get_field_index("category"), "category", filled)


def otto(data: bytes, source: str) -> pa.Table:
    """OTTO JSONL, one session per line: ``{"session", "events": [{"aid", "ts" (ms), "type"}]}``."""
    rows: dict[str, list[Any]] = {k: [] for k in ("t", "s", "i", "e", "r", "line", "raw")}
    bad_lines: list[tuple[int, str]] = []
    for lineno, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            bad_lines.append((lineno, line))
            continue
        try:
            obj = json.loads(line)
            events = obj["events"]
            session = obj.get("session")
        except (ValueError, KeyError, TypeError, AttributeError):
            bad_lines.append((lineno, line[:2000]))
            continue
        if not isinstance(events, list):
            bad_lines.append((lineno, line[:2000]))
            continue
        for ev in events:
            ev = ev if isinstance(ev, dict) else {}
            ts, aid, typ = ev.get("ts"), ev.get("aid"), ev.get("type")
            reason = None
            if session is None or str(session).strip() == "":
                reason = "missing_session_id"
            elif aid is None or str(aid).strip() == "":
                reason = "missing_item_id"
            elif not isinstance(ts, int | float) or isinstance(ts, bool):
                reason = "bad_time"
            elif typ not in OTTO_EVENTS:
                reason = "unknown_event_type"
            rows["t"].append(int(ts * 1000) if isinstance(ts, int | float) and not isinstance(ts, bool) else None)
            rows["s"].append(None if session is None else str(session))
            rows["i"].append(None if aid is None else str(aid))
            rows["e"].append(OTTO_EVENTS.get(typ, typ) if isinstance(typ, str) else None)
            rows["r"].append(reason)
            rows["line"].append(lineno)
            rows["raw"].append(None if reason is None else json.dumps(ev)[:2000])
    n = len(rows["r"])
    table = pa.table({
        "event_time": pa.array(rows["t"], pa.int64()).cast(TS),
        "session_id": pa.array(rows["s"], pa.string()),
        "user_id": pa.nulls(n, pa.string()),
        "item_id": pa.array(rows["i"], pa.string()),
        "event_type": pa.array(rows["e"], pa.string()),
        "price": pa.nulls(n, pa.float64()),
        "category": pa.nulls(n, pa.string()),
        "tenant": pa.nulls(n, pa.string()),
        "reason": pa.array(rows["r"], pa.string()),
        "source_file": _const(source, n),
        "source_line": pa.array(rows["line"], pa.int64()),
        "raw": pa.array(rows["raw"], pa.string()),
    }, schema=RAW_SCHEMA)
    return pa.concat_tables([table, malformed_rows(bad_lines, source, "bad_json")])


def retailrocket(data: bytes, source: str, gap_minutes: float = 30.0) -> pa.Table:
    """Retailrocket ``events.csv`` (ms). visitorid -> user_id; sessions from a per-visitor inactivity gap.

    Sessions are derived within the file, so a visitor's events must not be split across
    files (at scale: bucket files by visitor first, or let ``jobs.features`` re-sessionize).
    """
    csv = read_csv_text(data, source, ",", required=("timestamp", "visitorid", "event", "itemid"))
    t, n = csv.table, csv.table.num_rows
    ms, bad_ms = parse_number(t["timestamp"], integer=True)
    event = pc.utf8_trim_whitespace(t["event"])
    mapped = pc.take(pa.array(list(RETAILROCKET_EVENTS.values())),
                     pc.index_in(event, value_set=pa.array(list(RETAILROCKET_EVENTS))))
    rules = [
        ("blank_line", all_blank(t)),
        ("missing_user_id", blank(t["visitorid"])),
        ("missing_item_id", blank(t["itemid"])),
        ("bad_time", pc.or_(bad_ms, pc.is_null(ms))),
        ("unknown_event_type", pc.is_null(mapped)),
    ]
    reason = first_reason(n, rules)
    when = from_epoch(ms, MS)
    sessions = np.empty(n, dtype=object)
    good = np.asarray(pc.is_null(reason).to_numpy(zero_copy_only=False), dtype=bool)
    users = np.asarray(nullify(t["visitorid"]).to_numpy(zero_copy_only=False), dtype=object)
    micros = np.asarray(pc.fill_null(when.cast(pa.int64()), 0).to_numpy(zero_copy_only=False))
    sessions[good] = sessionize_gap(users[good].astype(str), micros[good], gap_minutes)
    cols = {"event_time": when, "session_id": pa.array(sessions, pa.string()), "user_id": pa.array(users, pa.string()),
            "item_id": nullify(t["itemid"]), "event_type": pc.coalesce(mapped, event)}
    return finish(cols, reason, source, csv.lines, t.columns, ",", csv.malformed)


REES46 = ("event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
          "user_id", "user_session")


def rees46(data: bytes, source: str) -> pa.Table:
    """REES46 CSV. A ``category_id`` that is not a plain integer (e.g. a spreadsheet's ``2.10381E+18``)
    lost digits irrecoverably: the row is quarantined as ``mangled_category_id``, never guessed."""
    csv = read_csv_text(data, source, ",", required=REES46)
    t, n = csv.table, csv.table.num_rows
    day = pc.strptime(pc.utf8_trim_whitespace(t["event_time"]), format="%Y-%m-%d %H:%M:%S UTC", unit="us",
                      error_is_null=True)
    when = pc.assume_timezone(day, "UTC").cast(TS)
    price, bad_price = parse_number(t["price"])
    _, bad_cat = parse_number(t["category_id"], integer=True)
    etype = pc.utf8_trim_whitespace(t["event_type"])
    rules = [
        ("blank_line", all_blank(t)),
        ("missing_session_id", blank(t["user_session"])),
        ("missing_item_id", blank(t["product_id"])),
        ("bad_time", pc.is_null(when)),
        ("unknown_event_type", pc.invert(pc.is_in(etype, value_set=pa.array(EVENT_TYPES)))),
        ("bad_price", bad_price),
        ("mangled_category_id", bad_cat),
    ]
    cols = {"event_time": when, "session_id": nullify(t["user_session"]), "user_id": nullify(t["user_id"]),
            "item_id": nullify(t["product_id"]), "event_type": etype, "price": price,
            "category": nullify(t["category_id"])}
    return finish(cols, first_reason(n, rules), source, csv.lines, t.columns, ",", csv.malformed)


def canonical(data: bytes, source: str) -> pa.Table:
    """Canonical Parquet: ``conform`` (SchemaError names file and column), then ``split_valid``.
    ``source_line`` is the 1-based row number in the file."""
    table = conform(pq.read_table(io.BytesIO(data)), source)
    table = table.append_column("__row", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    split = split_valid(table)
    parts = [split.valid.append_column("reason", pa.nulls(split.valid.num_rows, pa.string())), split.quarantined]
    out = pa.concat_tables(parts)
    m = out.num_rows
    extra = {"source_file": _const(source, m), "source_line": out["__row"], "raw": pa.nulls(m, pa.string())}
    return pa.table({f.name: extra[f.name] if f.name in extra else out[f.name] for f in RAW_SCHEMA},
                    schema=RAW_SCHEMA)
