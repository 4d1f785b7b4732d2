"""The three stages of the feature job, each a plain function (one Ray task per call).

Durable inputs and outputs go through ``store.fs`` (local paths or ``s3://``). The shuffle
between stages is the tasks' return values: one Ray object per (task, bucket), an lz4 Arrow
IPC stream, which Ray moves to whichever node runs the consuming task and rebuilds from
lineage when a node is lost. No task reads a file that another node wrote, except through
the shared store.

1. ``bucket_events``: read a slice of an event file (whole row groups), validate it, write the
   quarantined rows, and split the valid rows by a hash of their **session** (with
   ``--gap-minutes``: of their user, since sessions are then cut per user) into one part per
   bucket. All events of a session land in one bucket.
2. ``session_bucket``: per session bucket, sort the events once by (session, time) and compute
   session features (``models.features.session``, the code online scoring uses), session summaries,
   sequences and per-day item counts. Summaries go to the bucket of the session's owner
   (last non-null user id), feature rows to the bucket of their feature user (last non-null
   user id before the cutoff), anonymous ones to a bucket of their session id.
3. ``user_bucket``: per user bucket, point-in-time user features and the 7-day label of each
   session from its user's whole history (this run's summaries plus the previous output's).

``sessions_only`` stops after stage 2's session features (the benchmark's unit of work).
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.features.labels import purchase_within_at
from models.features.sequences import sequences_table, session_summaries_table
from models.features.session import LABEL, events_to_arrow, session_features_table
from models.features.sessionize import day_strings, hash_strings, sessionize_by_gap, sort_sessions
from models.features.user import USER_FEATURES, user_features_at
from models.schema import EVENT_SCHEMA, MAX_FUTURE_S, QUARANTINE_SCHEMA, SchemaError, conform, split_valid
from store import fs

logger = logging.getLogger(__name__)

LAYOUT = "session-buckets-v2"  # stored in the manifest; an incremental run needs the same layout
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def partition_day(path: str) -> pd.Timestamp | None | str:
    """The ``date=`` partition day of a file path: a Timestamp, None (no such partition), or the
    malformed partition value itself (e.g. ``"2026-13-45"``, ``"garbage"``)."""
    part = next((p for p in path.split("/") if p.startswith("date=")), None)
    if part is None:
        return None
    value = part[5:]
    if not _DAY.match(value):
        return value
    try:
        return pd.Timestamp(value, tz="UTC")
    except ValueError:
        return value


def scan_event_files(events: str, first_day: pd.Timestamp | None = None) -> tuple[list[str], list[str]]:
    """(Parquet files under ``events``, files under malformed ``date=`` partitions), local or s3://
    (a published output's pointer is followed).

    With ``first_day`` only partitions on or after it are listed. Files of a malformed partition
    are never read: the job quarantines them by path, and the other partitions go on."""
    root = fs.resolve(events)
    kind = fs.info(root).type
    if kind == fs.pafs.FileType.NotFound:
        raise FileNotFoundError(f"{events}: no such file or directory")
    if kind == fs.pafs.FileType.File:
        return [root], []
    out: list[str] = []
    malformed: list[str] = []
    for path in fs.list_files(root, suffix=".parquet"):
        day = partition_day(path)
        if isinstance(day, str):
            malformed.append(path)
            continue
        if first_day is not None and day is not None and day < first_day:
            continue
        out.append(path)
    if malformed:
        logger.warning("%d event files under malformed date= partitions are quarantined, e.g. %s", len(malformed),
                       malformed[0])
    return out, malformed


def list_event_files(events: str, first_day: pd.Timestamp | None = None) -> list[str]:
    """Parquet files under ``events`` (local or s3://), optionally only ``date=`` partitions >= first_day."""
    return scan_event_files(events, first_day)[0]


def _open(path: str) -> pq.ParquetFile:
    return pq.ParquetFile(fs.open_input_file(path))


def file_rows(path: str) -> int:
    """Rows of a Parquet file from its footer (0 when it cannot be read)."""
    try:
        return int(_open(path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return 0


def plan_reads(files: list[str], rows_per_task: int) -> list[dict[str, Any]]:
    """Stage-1 tasks: consecutive row groups of one file, about ``rows_per_task`` rows each."""
    tasks: list[dict[str, Any]] = []
    for path in files:
        meta = _open(path).metadata
        group: list[int] = []
        rows = 0
        for i in range(meta.num_row_groups):
            group.append(i)
            rows += meta.row_group(i).num_rows
            if rows >= rows_per_task:
                tasks.append({"path": path, "row_groups": group, "rows": rows})
                group, rows = [], 0
        if group or meta.num_row_groups == 0:
            tasks.append({"path": path, "row_groups": group, "rows": rows})
    for i, t in enumerate(tasks):
        t["task"] = i
    return tasks


def pack_reads(tasks: list[dict[str, Any]], rows_per_task: int) -> list[dict[str, Any]]:
    """Stage-1 tasks with consecutive small slices packed together up to ``rows_per_task`` rows.

    A refresh loop adds one small file per ingest batch; one task per file would make a day
    of 5-minute batches 288 tasks of a few hundred rows each."""
    packed: list[dict[str, Any]] = []
    pieces: list[dict[str, Any]] = []
    rows = 0
    for t in tasks:
        n = int(t.get("rows", 0))
        if pieces and rows + n > rows_per_task:
            packed.append({"pieces": pieces})
            pieces, rows = [], 0
        pieces.append({"path": t["path"], "row_groups": t["row_groups"]})
        rows += n
    if pieces:
        packed.append({"pieces": pieces})
    for i, t in enumerate(packed):
        t["task"] = i
    return packed


def bucket_of(keys: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Stable hash bucket of each string key (``models.features.sessionize.hash_strings``; null as "").

    Keys repeat (a session has several events), so the distinct keys are hashed once and
    the buckets gathered by dictionary index: about 2.5x less work than hashing every row.
    """
    enc = pc.dictionary_encode(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys)
    per_key = (hash_strings(enc.dictionary) % np.uint64(buckets)).astype(np.int32)
    out = per_key[pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False)] if len(per_key) else \
        np.zeros(len(keys), dtype=np.int32)
    if enc.indices.null_count:  # a null key hashes as "", whose hash is 0
        out[enc.indices.is_null().to_numpy(zero_copy_only=False)] = 0
    return out


def _write_parquet(table: pa.Table, uri: str) -> None:
    """Parquet (local or object store) without dictionary pages for id-like columns: a session id
    is (nearly) unique per row, so its dictionary only costs time (about 40 % of a feature table's write)."""
    low_card = [f.name for f in table.schema if pa.types.is_string(f.type) and f.name != "session_id"]
    with fs.open_output_stream(uri) as out:
        pq.write_table(table, out, use_dictionary=low_card)


Part: TypeAlias = "pa.Buffer | None"  # one bucket's rows from one task: an lz4 Arrow IPC stream (None: no rows)


def _split(table: pa.Table, bucket: np.ndarray, buckets: int) -> list[Part]:
    """``table``'s rows per bucket, each as a compressed Arrow IPC stream, to be returned by the
    task as one Ray object per bucket.

    The shuffle between stages goes through Ray's object store: a task's outputs live on the node
    that ran it, and Ray moves each one to the node of the task that takes it (and rebuilds it from
    lineage if that node is lost). Nothing is written to a node's disk for another node to read.
    """
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    table = table.take(pa.array(order))
    out: list[Part] = [None] * buckets
    for b in np.flatnonzero(np.diff(bounds)):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC) as w:
            w.write_table(table.slice(bounds[b], bounds[b + 1] - bounds[b]))
        out[int(b)] = sink.getvalue()
    return out


def _read_parts(parts: tuple[Part, ...] | list[Part]) -> pa.Table | None:
    """The rows of one bucket from every task that had some, in task order, as one table."""
    tables = [pa.ipc.open_stream(p).read_all() for p in parts if p is not None]
    return pa.concat_tables(tables) if tables else None


def part_bytes(parts: list[Part]) -> int:
    return sum(p.size for p in parts if p is not None)


def _node() -> str:
    """The Ray node this task runs on (for the job's transfer accounting)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _read_pieces(task: dict[str, Any]) -> tuple[list[tuple[str, pa.Table]], dict[str, list[str]]]:
    """(path, conformed table) of a task's slices; a file that cannot be read or conformed is
    quarantined by path (``unreadable_file`` / ``schema_error``) and the others are read."""
    tables: list[tuple[str, pa.Table]] = []
    bad: dict[str, list[str]] = {}
    for piece in task.get("pieces") or [task]:
        path = piece["path"]
        try:
            tables.append((path, conform(_open(path).read_row_groups(piece["row_groups"]), path)))
        except SchemaError as exc:
            logger.error("quarantined %s: %s", path, exc)
            bad.setdefault("schema_error", []).append(path)
        except (OSError, pa.ArrowException) as exc:
            logger.error("quarantined %s: cannot read it: %s", path, exc)
            bad.setdefault("unreadable_file", []).append(path)
    return tables, bad


def bucket_events(task: dict[str, Any], stage: str, buckets: int, as_of: pd.Timestamp | None,
                  by_user: bool, now: pd.Timestamp | None = None, max_future_s: float = MAX_FUTURE_S) -> list[Any]:
    """Stage 1 for one task's slices: ``[counts, part of bucket 0, ..., part of bucket B-1]``.

    ``now``: events later than ``now + max_future_s`` are quarantined as ``future_time``."""
    idx = int(task["task"])
    tables, bad_files = _read_pieces(task)
    splits = [(path, split_valid(t, now.to_pydatetime() if now is not None else None, max_future_s))
              for path, t in tables]
    by_file = {path: sp.reason_counts() for path, sp in splits if sp.quarantined.num_rows}
    if splits:
        valid = pa.concat_tables([sp.valid for _, sp in splits])
        bad = pa.concat_tables([sp.quarantined for _, sp in splits])
    else:
        valid, bad = EVENT_SCHEMA.empty_table(), QUARANTINE_SCHEMA.empty_table()
    reasons: dict[str, int] = {}
    for counts in by_file.values():
        for k, v in counts.items():
            reasons[k] = reasons.get(k, 0) + v
    if as_of is not None:
        valid = valid.filter(pc.less(valid["event_time"], pa.scalar(as_of.to_pydatetime(), EVENT_SCHEMA.field(0).type)))
    if bad.num_rows:
        with fs.open_output_stream(fs.join(stage, "quarantine", f"part-{idx:05d}.parquet")) as out:
            pq.write_table(bad, out)
    parts: list[Part] = [None] * buckets
    if valid.num_rows:
        key = pc.coalesce(valid["user_id"], valid["session_id"]) if by_user else valid["session_id"]
        parts = _split(valid, bucket_of(key, buckets), buckets)
    samples = [{k: str(v) for k, v in r.items()} for r in bad.slice(0, 3).to_pylist()]
    info = {"rows_in": valid.num_rows + bad.num_rows, "quarantine": reasons, "samples": samples,
            "node": _node(), "part_bytes": [0 if p is None else p.size for p in parts], "bad_files": bad_files,
            "quarantine_by_file": by_file}
    return [info, *parts]


def drop_duplicate_events(ev: pa.Table) -> tuple[pa.Table, int]:
    """``ev`` without exact duplicate rows (at-least-once ingestion); returns (table, rows dropped).

    Duplicates share session and time, so only rows whose (session, time) repeats are compared
    in full: a sort, and a small pandas ``duplicated`` over those few rows."""
    srt = sort_sessions(ev)
    same = np.r_[False, (np.diff(srt.session) == 0) & (np.diff(srt.t_us) == 0)]
    if not same.any():
        return ev, 0
    rows = srt.order[same | np.r_[same[1:], False]]
    dup = ev.take(pa.array(rows)).to_pandas().duplicated(keep="first").to_numpy()
    if not dup.any():
        return ev, 0
    keep = np.ones(ev.num_rows, dtype=bool)
    keep[rows[dup]] = False
    return ev.filter(pa.array(keep)), int(dup.sum())


def _write_by_day(table: pa.Table, days: np.ndarray, root: str, name: str, bucket: int) -> None:
    if table.num_rows == 0:
        return
    order = np.argsort(days, kind="stable")
    uniq, first = np.unique(days[order], return_index=True)
    table = table.take(pa.array(order))
    for day, lo, hi in zip(uniq, first, np.r_[first[1:], len(order)], strict=True):
        _write_parquet(table.slice(lo, hi - lo), fs.join(root, name, f"date={day}", f"part-{bucket:05d}.parquet"))


def session_bucket(bucket: int, stage: str, emit_from: pd.Timestamp | None, gap_minutes: float | None,
                   buckets: int, sessions_only: bool, *parts: Part) -> Any:
    """Stage 2 for one session bucket (``parts``: its rows from every stage-1 task).

    Returns the counts (and the latest event time); unless ``sessions_only``, followed by the
    summaries for each user bucket, then the feature rows for each user bucket."""
    root = stage
    ev = _read_parts(parts)
    out: dict[str, Any] = {"events": 0, "sessions": 0, "sequences": 0, "max_time": None, "node": _node(),
                           "duplicates": 0}
    empty: list[Part] = [None] * (0 if sessions_only else 2 * buckets)
    if ev is None or ev.num_rows == 0:
        return [out, *empty] if empty else out
    ev, out["duplicates"] = drop_duplicate_events(ev)
    if gap_minutes:
        ev = events_to_arrow(sessionize_by_gap(ev.to_pandas(), gap_minutes))
    srt = sort_sessions(ev)
    out["events"] = ev.num_rows
    out["max_time"] = str(pd.Timestamp(int(srt.t_us.max()), unit="us", tz="UTC"))
    feats = session_features_table(srt)
    if sessions_only:
        _write_parquet(feats, fs.join(root, "sessions", f"part-{bucket:05d}.parquet"))
        out["sessions"] = feats.num_rows
        return out

    summ = session_summaries_table(srt)
    start = summ["start"].to_numpy()
    emit = start >= emit_from.timestamp() if emit_from is not None else np.ones(len(start), dtype=bool)
    emitted = summ["session_id"].filter(pa.array(emit))
    summ = summ.append_column("emit", pa.array(emit))
    # Stage 3 sends each session to the bucket of its owner (summaries) / feature user (features).
    owner = pc.coalesce(summ["user_id"], summ["session_id"])
    summ_parts = _split(summ, bucket_of(owner, buckets), buckets)
    feats = feats.filter(pc.is_in(feats["session_id"], value_set=emitted))
    pos = pc.index_in(feats["session_id"], value_set=summ["session_id"]).to_numpy(zero_copy_only=False)
    feats = feats.append_column("start", pa.array(start[pos]))
    feature_user = pc.coalesce(feats["user_id"], feats["session_id"])
    feat_parts = _split(feats, bucket_of(feature_user, buckets), buckets)
    out["part_bytes"] = [a + b for a, b in zip(*([0 if p is None else p.size for p in ps]
                                                  for ps in (summ_parts, feat_parts)), strict=True)]
    seq = sequences_table(srt)
    seq = seq.filter(pc.is_in(seq["session_id"], value_set=emitted))
    first_t = pc.list_element(seq["times"], 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
    _write_by_day(seq, day_strings(first_t), root, "sequences", bucket)
    out["sequences"] = seq.num_rows

    rows = pc.is_in(srt.table["session_id"].take(pa.array(srt.order)), value_set=emitted)
    t_us = srt.t_us[rows.to_numpy(zero_copy_only=False)]
    kept = srt.table.take(pa.array(srt.order)).filter(rows)
    etype = kept["event_type"]
    daily = pa.table({"date": day_strings(t_us), "item_id": kept["item_id"],
                      "views": pc.cast(pc.equal(etype, "view"), pa.int64()),
                      "carts": pc.cast(pc.equal(etype, "cart"), pa.int64()),
                      "purchases": pc.cast(pc.equal(etype, "purchase"), pa.int64())})
    daily = daily.group_by(["date", "item_id"]).aggregate([(c, "sum") for c in ("views", "carts", "purchases")])
    daily = daily.rename_columns([c.removesuffix("_sum") for c in daily.column_names])
    _write_by_day(daily, daily["date"].to_numpy(zero_copy_only=False), root, "item_daily", bucket)
    return [out, *summ_parts, *feat_parts]


def _days_of_seconds(seconds: np.ndarray) -> np.ndarray:
    return day_strings(np.rint(np.asarray(seconds, dtype=float) * 1e6).astype(np.int64))


def user_bucket(bucket: int, stage: str, prior: list[str], emit_from: pd.Timestamp | None, n_summ: int,
                *parts: Part) -> dict[str, Any]:
    """Stage 3 for one user bucket: user features and label per session; writes sessions and summaries.

    ``parts`` are this bucket's summaries from each stage-2 task (the first ``n_summ``), then its
    feature rows; ``prior`` lists the previous output's summary files of this bucket."""
    root = stage
    summ_t = _read_parts(parts[:n_summ])
    feats = _read_parts(parts[n_summ:])
    if summ_t is None:
        return {"sessions": 0, "node": _node()}
    summ = summ_t.to_pandas()
    history = summ.drop(columns=["emit"])
    if prior:
        old = [pq.read_table(fs.open_input_file(p)) for p in prior]
        if old:
            prev = pa.concat_tables(old, promote_options="default").to_pandas()
            prev = prev[~prev["session_id"].isin(summ["session_id"])]
            if emit_from is not None:
                prev = prev[prev["start"] < emit_from.timestamp()]
            history = pd.concat([prev.drop(columns=["date"], errors="ignore"), history], ignore_index=True)
    new_sum = summ_t.filter(summ_t["emit"]).drop_columns(["emit"])
    _write_by_day(new_sum, _days_of_seconds(new_sum["start"].to_numpy()), root, "summaries", bucket)
    if feats is None or feats.num_rows == 0:
        return {"sessions": 0, "node": _node()}
    users = feats["user_id"].to_numpy(zero_copy_only=False)
    start = feats["start"].to_numpy()
    cutoff_s = feats["cutoff_time"].cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    uf = user_features_at(history, users, start)
    label = purchase_within_at(history, users, cutoff_s, feats[LABEL].to_numpy(zero_copy_only=False) > 0, 7.0)
    sess = feats.drop_columns(["start"])
    for name in USER_FEATURES:
        sess = sess.append_column(name, pa.array(uf[name].to_numpy(dtype=float)))
    sess = sess.append_column("purchase_within_7d", pa.array(label))
    _write_by_day(sess, _days_of_seconds(start), root, "sessions", bucket)
    return {"sessions": sess.num_rows, "node": _node()}


__all__ = ["LAYOUT", "USER_FEATURES", "bucket_events", "drop_duplicate_events", "file_rows", "list_event_files", "pack_reads",
           "part_bytes", "plan_reads", "scan_event_files", "session_bucket", "user_bucket"]
