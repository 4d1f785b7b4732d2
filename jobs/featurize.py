"""The two stages of the feature job: block validation + bucketing, and per-bucket features."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.feature_tables import USER_FEATURES, purchase_within, sequences, session_summaries, user_features
from models.features import session_features
from models.schema import EVENT_SCHEMA, SchemaError, conform, split_valid

logger = logging.getLogger(__name__)


def list_event_files(events: str, first_day: pd.Timestamp | None = None) -> list[str]:
    """Parquet files under ``events`` (local or s3://), optionally only ``date=`` partitions >= first_day."""
    fs, root = pafs.FileSystem.from_uri(events if "://" in events else str(Path(events).absolute()))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{events}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [events]
    out = []
    for f in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if f.type != pafs.FileType.File or not f.path.endswith(".parquet"):
            continue
        if first_day is not None:
            part = next((p for p in f.path.split("/") if p.startswith("date=")), None)
            if part is not None and pd.Timestamp(part[5:], tz="UTC") < first_day:
                continue
        out.append(f.path if "://" not in events else f"{events.split('://')[0]}://{f.path}")
    return sorted(out)


def validate_block(batch: pa.Table, buckets: int, as_of: pd.Timestamp | None) -> pa.Table:
    """Conform a block, tag bad rows with a ``reason`` and every row with its user ``bucket``."""
    source = batch["path"][0].as_py() if "path" in batch.column_names and batch.num_rows else "<events>"
    paths = batch["path"] if "path" in batch.column_names else pa.nulls(batch.num_rows, pa.string())
    raw = batch.drop_columns([c for c in ("path", "date") if c in batch.column_names])
    try:
        table = conform(raw, source)
    except SchemaError:
        raise
    table = table.append_column("path", paths)
    split = split_valid(table.drop_columns(["path"]))
    valid = split.valid
    if as_of is not None:
        valid = valid.filter(pc.less(valid["event_time"], pa.scalar(as_of.to_pydatetime(), EVENT_SCHEMA.field(0).type)))
    good = valid.append_column("reason", pa.nulls(valid.num_rows, pa.string()))
    bad = split.quarantined
    out = pa.concat_tables([good, bad.select(good.column_names)]) if bad.num_rows else good
    key = pc.coalesce(out["user_id"], out["session_id"], pa.scalar("")).to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(key.astype(object)) % np.uint64(buckets)
    return out.append_column("bucket", pa.array(hashed.astype(np.int32)))


def _sessionize_by_gap(ev: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """New session ids: per user (or source session when anonymous), split at gaps > ``gap_minutes``."""
    who = ev["user_id"].fillna("anon:" + ev["session_id"].astype(str)).astype(str)
    ev = ev.assign(_who=who).sort_values(["_who", "event_time"], kind="stable")
    t = ev["event_time"].astype("int64").to_numpy() / 1e6
    w = ev["_who"].to_numpy()
    new = np.r_[True, (w[1:] != w[:-1]) | (np.diff(t) > gap_minutes * 60)]
    start = pd.Series(np.where(new, t, np.nan), index=ev.index).ffill().to_numpy()
    ev["session_id"] = ev["_who"] + "@" + start.astype(np.int64).astype(str)
    return ev.drop(columns=["_who"])


def _write(df: pd.DataFrame, root: Path, table: str, bucket: int, by_date: pd.Series | None) -> None:
    if df.empty:
        return
    if by_date is None:
        (root / table).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / table / f"part-{bucket:05d}.parquet")
        return
    for day, part in df.groupby(by_date.to_numpy(), sort=True):
        target = root / table / f"date={day}"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), target / f"part-{bucket:05d}.parquet")


def bucket_task(row: dict[str, Any], stage: str, prior: str | None, emit_from: pd.Timestamp | None,
                gap_minutes: float | None, sessions_only: bool = False) -> dict[str, Any]:
    """Everything for one user bucket; returns counts as JSON (Ray Data row)."""
    bucket, root = int(row["bucket"]), Path(stage)
    frame = pq.read_table(row["path"]).to_pandas()
    bad = frame[frame["reason"].notna()]
    ev = frame[frame["reason"].isna()].drop(columns=["reason"])
    quarantine = bad.value_counts("reason").to_dict() if not bad.empty else {}
    samples = bad.head(3).astype(str).to_dict("records")
    _write(bad, root, "quarantine", bucket, None)
    result: dict[str, Any] = {"rows_in": int(len(frame)), "quarantine": quarantine, "samples": samples,
                              "sessions": 0, "sequences": 0, "max_time": None}
    if ev.empty:
        return {"result": json.dumps(result, default=str)}
    if gap_minutes:
        ev = _sessionize_by_gap(ev, gap_minutes)
    result["max_time"] = str(ev["event_time"].max())
    if sessions_only:
        sess = session_features(ev)
        _write(sess, root, "sessions", bucket, None)
        result["sessions"] = int(len(sess))
        return {"result": json.dumps(result, default=str)}

    summaries = session_summaries(ev)
    start = pd.to_datetime(summaries["start"] * 1e6, unit="us", utc=True)
    emit = summaries["session_id"][start >= emit_from] if emit_from is not None else summaries["session_id"]
    history = summaries
    if prior:
        old = [pq.read_table(p) for p in Path(prior, "summaries").glob(f"date=*/part-{bucket:05d}.parquet")]
        if old:
            prev = pa.concat_tables(old).to_pandas()
            prev = prev[~prev["session_id"].isin(summaries["session_id"])]
            if emit_from is not None:
                prev = prev[pd.to_datetime(prev["start"] * 1e6, unit="us", utc=True) < emit_from]
            history = pd.concat([prev.drop(columns=["date"], errors="ignore"), summaries], ignore_index=True)

    sess = session_features(ev[ev["session_id"].isin(set(emit))])
    hist_idx = history.set_index("session_id")
    feats_user = user_features(history)
    feats_user.index = history["session_id"].to_numpy()
    sess = sess.join(feats_user, on="session_id")
    cutoff_s = sess["cutoff_time"].astype("int64") / 1e6
    sub = hist_idx.loc[sess["session_id"]].reset_index()
    sess["purchase_within_7d"] = purchase_within(sub, cutoff_s.reset_index(drop=True), 7.0) if len(sub) else []
    sess_start = pd.to_datetime(hist_idx.loc[sess["session_id"], "start"].to_numpy() * 1e6, unit="us", utc=True)
    day = pd.Series(sess_start.strftime("%Y-%m-%d"), index=sess.index)
    _write(sess, root, "sessions", bucket, day)
    result["sessions"] = int(len(sess))

    seq = sequences(ev[ev["session_id"].isin(set(emit))])
    seq_day = seq["times"].map(lambda ts: ts[0].strftime("%Y-%m-%d"))
    _write(seq, root, "sequences", bucket, seq_day)
    result["sequences"] = int(len(seq))

    new_sum = summaries[summaries["session_id"].isin(set(emit))]
    _write(new_sum, root, "summaries", bucket,
           pd.Series(pd.to_datetime(new_sum["start"] * 1e6, unit="us", utc=True).dt.strftime("%Y-%m-%d").to_numpy(),
                     index=new_sum.index))
    emitted = ev[ev["session_id"].isin(set(emit))]
    daily = pd.DataFrame({"date": pd.to_datetime(emitted["event_time"], utc=True).dt.strftime("%Y-%m-%d").to_numpy(),
                          "item_id": emitted["item_id"].to_numpy(),
                          "views": (emitted["event_type"] == "view").to_numpy(np.int64),
                          "carts": (emitted["event_type"] == "cart").to_numpy(np.int64),
                          "purchases": (emitted["event_type"] == "purchase").to_numpy(np.int64)})
    daily = daily.groupby(["date", "item_id"], sort=False).sum().reset_index()
    _write(daily, root, "item_daily", bucket, daily["date"])
    return {"result": json.dumps(result, default=str)}


__all__ = ["USER_FEATURES", "bucket_task", "list_event_files", "validate_block"]
