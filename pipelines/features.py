"""Events to feature tables on Ray: sessionize, point-in-time features, labels, sequences.

The library of ``python -m jobs.features``. Three stages of independent Ray tasks over
files, no generic groupby shuffle (``pipelines.feature_tasks`` has the stage functions):

1. one task per slice of an event file (local or ``s3://``, whole row groups): validate
   against the canonical schema (bad rows are quarantined with a ``reason``) and split the rows
   by a hash of their **session** into one part per bucket, so a session whose rows carry
   several user ids (a login mid-session) stays whole;
2. one task per session bucket: sessions and session features (``models.features.session``, the same
   code as online scoring), session summaries, sequences and per-day item counts; summaries
   and feature rows are written on to the bucket of their user;
3. one task per user bucket: point-in-time user features and labels (``models.features.user``/``labels``)
   from the user's whole history.

Outputs land in a new version prefix, made current by ``store.fs.Publication``: on object
storage one pointer object ``OUT/_CURRENT`` written last, on a local path the ``OUT`` symlink
switched in one atomic rename. Readers see the old tables or the new ones, never a mix; a
crash leaves the previous output intact and an orphan prefix that the next run's ``gc`` removes.
The shuffle between stages is Ray objects (task return values), so the stages may run on any
nodes; only the store is shared. ``--incremental`` reprocesses only date partitions at or
after the stored watermark minus the lateness window; older partitions are carried over.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.features.item import items_from_daily
from models.schema import MAX_FUTURE_S
from pipelines.feature_tasks import (
    LAYOUT,
    bucket_events,
    file_rows,
    pack_reads,
    plan_reads,
    scan_event_files,
    session_bucket,
    user_bucket,
)
from store import fs

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
TABLES = ("sessions", "sequences", "summaries", "item_daily", "quarantine")


def previous_manifest(out: str | Path) -> dict[str, Any] | None:
    """The manifest of the current version published at ``out`` (None when there is none)."""
    current = fs.Publication(out).current()
    if current is None:
        return None
    try:
        return dict(fs.read_json(fs.join(current, MANIFEST)))
    except FileNotFoundError:
        return None


def run(events: str, out: str | Path, as_of: pd.Timestamp | None = None, since: pd.Timestamp | None = None,
        incremental: bool = False, lateness_hours: float = 24.0, gap_minutes: float | None = None,
        buckets: int = 16, sessions_only: bool = False, rows_per_task: int = 250_000,
        now: pd.Timestamp | None = None, max_future_minutes: float = MAX_FUTURE_S / 60) -> dict[str, Any]:
    """Build the feature tables and atomically publish them at ``out`` (local or s3://); return the manifest.

    ``sessions_only`` computes just sessions, session features and labels (the benchmark's
    unit of work): no user features, sequences or item tables. ``buckets`` sets the tasks of
    stages 2 and 3 (memory per task is about the input over ``buckets``); ``rows_per_task``
    sets the input slice of a stage-1 task (small files are packed together up to it).

    Bad data is quarantined, never fatal: rows (``models.schema.split_valid``; events later
    than ``now`` (default: the wall clock) plus ``max_future_minutes`` are ``future_time``),
    files under malformed ``date=`` partitions, and files that cannot be read. An incremental
    run that finds no new files keeps the previous output and returns its manifest.
    """
    import ray

    t0 = time.perf_counter()
    started = time.time()
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    pub = fs.Publication(out)
    prior = pub.current()
    prev = previous_manifest(out) if prior else None
    if incremental and prev and prev.get("layout") != LAYOUT:
        logger.warning("features: previous output has layout %s, not %s; running in full",
                       prev.get("layout"), LAYOUT)
        incremental = False
    if incremental and prev and not prev.get("watermark"):
        incremental = False  # the previous run kept no event (all quarantined)
    if incremental and prev and since is None:
        since = pd.Timestamp(prev["watermark"]) - pd.Timedelta(hours=lateness_hours)
    if prev and incremental:
        buckets = int(prev["buckets"])  # bucket assignment must stay stable across runs
    if not (prev and incremental):
        prior = None
    first_day = since.floor("D") if since is not None else None
    files, malformed = scan_event_files(events, first_day - pd.Timedelta(days=1) if first_day is not None else None)
    if not files:
        if incremental and prev:
            logger.info("features: no event files at or after %s; the previous output stays", first_day)
            return {**prev, "unchanged": True}
        raise FileNotFoundError(f"{events}: no event files (Parquet) found" +
                                (f" at or after {first_day.date()}" if first_day is not None else ""))
    run_id = fs.new_run_id()
    stage = pub.begin(run_id)
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        reads = pack_reads(plan_reads(files, rows_per_task), rows_per_task)
        task: Any = ray.remote(num_cpus=1, max_retries=3)
        one = [task(bucket_events).options(num_returns=1 + buckets).remote(r, stage, buckets, as_of,
                                                                           bool(gap_minutes), now,
                                                                           max_future_minutes * 60) for r in reads]
        read = ray.get([r[0] for r in one])
        timings["stage1_s"] = time.perf_counter() - t
        t = time.perf_counter()
        n2 = 1 if sessions_only else 1 + 2 * buckets
        two = [task(session_bucket).options(num_returns=n2).remote(b, stage, first_day, gap_minutes, buckets,
                                                                   sessions_only, *[r[1 + b] for r in one])
               for b in range(buckets)]
        sessions = ray.get([r if sessions_only else r[0] for r in two])
        timings["stage2_s"] = time.perf_counter() - t
        del one  # stage-1 parts are no longer needed: free them in the object store
        users: list[dict[str, Any]] = []
        if not sessions_only:
            t = time.perf_counter()
            old = _prior_summaries(prior, buckets)
            users = ray.get([task(user_bucket).remote(b, stage, old[b], first_day, buckets,
                                                      *[r[1 + b] for r in two], *[r[1 + buckets + b] for r in two])
                             for b in range(buckets)])
            timings["stage3_s"] = time.perf_counter() - t
        del two
        if prior is not None and first_day is not None:
            _carry_over(prior, stage, first_day)
        results = {
            "rows_in": sum(r["rows_in"] for r in read),
            "quarantine": [r["quarantine"] for r in read], "samples": [s for r in read for s in r["samples"]],
            "max_time": max((pd.Timestamp(r["max_time"]) for r in sessions if r["max_time"]), default=None),
            "sessions": sum(r["sessions"] for r in (sessions if sessions_only else users)),
            "sequences": sum(r["sequences"] for r in sessions), "timings": timings,
            "shuffle": shuffle_bytes(read, sessions, users),
            "duplicates": sum(int(r.get("duplicates", 0)) for r in sessions),
            "bad_files": _bad_files(read, malformed),
            "by_file": {p: c for r in read for p, c in r.get("quarantine_by_file", {}).items()},
        }
        manifest = _finish(stage, results, files, buckets, as_of, since, run_id, t0, now)
        pub.commit(stage)  # the pointer is written last: the version is visible whole, or not at all
    except BaseException:
        pub.abort(stage)
        raise
    pub.gc(keep=3, before=started)  # orphans of crashed runs and versions past the newest 3
    return manifest


def shuffle_bytes(read: list[dict[str, Any]], sessions: list[dict[str, Any]],
                  users: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes of stage outputs that the next stage consumed on another node (``cross_node``) or on
    the same node (``local``), from where each task ran."""
    moved = {"cross_node": 0, "local": 0}
    for producers, consumers in ((read, sessions), (sessions, users)):
        for b, consumer in enumerate(consumers):
            for p in producers:
                size = p.get("part_bytes", [0] * len(consumers))[b]
                moved["local" if p.get("node") == consumer.get("node") else "cross_node"] += size
    return moved


def _prior_summaries(prior: str | None, buckets: int) -> list[list[str]]:
    """Per user bucket, the previous output's summary files of that bucket (one listing)."""
    out: list[list[str]] = [[] for _ in range(buckets)]
    if prior is None:
        return out
    for path in fs.list_files(fs.join(prior, "summaries"), suffix=".parquet"):
        name = fs.basename(path)
        if name.startswith("part-"):
            out[int(name[5:10]) % buckets].append(path)
    return out


def _bad_files(read: list[dict[str, Any]], malformed: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"malformed_partition": list(malformed)} if malformed else {}
    for r in read:
        for reason, paths in r.get("bad_files", {}).items():
            out.setdefault(reason, []).extend(paths)
    return out


def _carry_over(prior: str, stage: str, first_day: pd.Timestamp) -> None:
    """Copy the unchanged date partitions (before ``first_day``) of the previous output: hard links
    on a local path, server-side copies on object storage."""
    for table in ("sessions", "sequences", "summaries", "item_daily"):
        src = fs.join(prior, table)
        for part in fs.list_dirs(src):
            if part.startswith("date=") and pd.Timestamp(part[5:], tz="UTC") < first_day:
                for f in fs.list_files(fs.join(src, part)):
                    fs.copy_file(f, fs.join(stage, table, part, fs.basename(f)))


def _finish(stage: str, results: dict[str, Any], files: list[str], buckets: int,
            as_of: pd.Timestamp | None, since: pd.Timestamp | None, run_id: str, t0: float,
            now: pd.Timestamp | None = None) -> dict[str, Any]:
    daily = [pq.read_table(fs.open_input_file(p)) for p in fs.list_files(fs.join(stage, "item_daily"), ".parquet")]
    wm = results["max_time"]
    items = pd.DataFrame()
    if daily and wm is not None:
        items = items_from_daily(pa.concat_tables(daily, promote_options="default").to_pandas(), wm)
    with fs.open_output_stream(fs.join(stage, "items", "part-0.parquet")) as f:
        pq.write_table(pa.Table.from_pandas(items, preserve_index=False), f)
    reasons: dict[str, int] = {}
    for counts in results["quarantine"]:
        for k, v in counts.items():
            reasons[k] = reasons.get(k, 0) + v
    by_file = dict(results["by_file"])
    for reason, paths in results["bad_files"].items():  # whole files, counted by the rows their footers hold
        for p in paths:
            by_file[p] = {reason: file_rows(p)}
            reasons[reason] = reasons.get(reason, 0) + by_file[p][reason]
    rows_in = results["rows_in"]
    seconds = time.perf_counter() - t0
    manifest = {
        "run_id": run_id, "watermark": str(wm) if wm is not None else None, "buckets": buckets, "layout": LAYOUT,
        "as_of": str(as_of) if as_of is not None else None, "since": str(since) if since is not None else None,
        "input_files": len(files), "rows_in": rows_in, "sessions": results["sessions"],
        "sequences": results["sequences"], "items": len(items),
        "quarantined": sum(reasons.values()), "quarantine_reasons": reasons,
        "quarantine_samples": results["samples"][:10], "shuffle_bytes": results["shuffle"],
        "quarantined_files": {k: v[:20] for k, v in results["bad_files"].items()},
        "quarantine_by_file": by_file,
        "duplicates_dropped": results["duplicates"], "now": str(now),
        "timings": {k: round(v, 2) for k, v in results["timings"].items()}, "seconds": round(seconds, 2), "events_per_s": round(rows_in / seconds, 1) if seconds else None,
    }
    fs.write_json(fs.join(stage, MANIFEST), manifest)
    return manifest
