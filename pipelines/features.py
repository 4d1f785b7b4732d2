"""Events to feature tables on Ray: sessionize, point-in-time features, labels, sequences.

The library of ``python -m jobs.features``. Three stages of independent Ray tasks over
files, no generic groupby shuffle (``pipelines.feature_tasks`` has the stage functions):

1. one task per slice of an event file (local or ``s3://``, whole row groups): validate
   against the canonical schema (bad rows are quarantined with a ``reason``) and split the rows
   by a hash of their **session** into Arrow IPC bucket files, so a session whose rows carry
   several user ids (a login mid-session) stays whole;
2. one task per session bucket: sessions and session features (``models.features.session``, the same
   code as online scoring), session summaries, sequences and per-day item counts; summaries
   and feature rows are written on to the bucket of their user;
3. one task per user bucket: point-in-time user features and labels (``models.features.user``/``labels``)
   from the user's whole history.

Outputs land in a new version directory, and ``OUT`` (a symlink) is switched to it in one
atomic rename, so readers see the old tables or the new ones, never a mix, and a crash
leaves the previous output intact. ``--incremental`` reprocesses only date partitions at or
after the stored watermark minus the lateness window; older partitions are carried over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.features.item import items_from_daily
from pipelines.feature_tasks import (
    LAYOUT,
    bucket_events,
    gather,
    list_event_files,
    plan_reads,
    session_bucket,
    user_bucket,
)

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
TABLES = ("sessions", "sequences", "summaries", "item_daily", "quarantine")


def previous_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def run(events: str, out: Path, as_of: pd.Timestamp | None = None, since: pd.Timestamp | None = None,
        incremental: bool = False, lateness_hours: float = 24.0, gap_minutes: float | None = None,
        buckets: int = 16, sessions_only: bool = False, rows_per_task: int = 250_000) -> dict[str, Any]:
    """Build the feature tables and atomically publish them at ``out``; return the manifest.

    ``sessions_only`` computes just sessions, session features and labels (the benchmark's
    unit of work): no user features, sequences or item tables. ``buckets`` sets the tasks of
    stages 2 and 3 (memory per task is about the input over ``buckets``); ``rows_per_task``
    sets the input slice of a stage-1 task.
    """
    import ray

    t0 = time.perf_counter()
    prev = previous_manifest(out) if out.exists() else None
    if incremental and prev and prev.get("layout") != LAYOUT:
        logger.warning("features: previous output has layout %s, not %s; running in full",
                       prev.get("layout"), LAYOUT)
        incremental = False
    if incremental and prev and since is None:
        since = pd.Timestamp(prev["watermark"]) - pd.Timedelta(hours=lateness_hours)
    if prev and incremental:
        buckets = int(prev["buckets"])  # bucket assignment must stay stable across runs
    first_day = since.floor("D") if since is not None else None
    files = list_event_files(events, first_day - pd.Timedelta(days=1) if first_day is not None else None)
    if not files:
        raise FileNotFoundError(f"{events}: no event files (Parquet) found" +
                                (f" at or after {first_day.date()}" if first_day is not None else ""))
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    versions = out.parent / f".{out.name}.versions"
    stage = versions / run_id
    work = stage / "_work"
    stage.mkdir(parents=True)
    timings: dict[str, float] = {}
    try:
        prior = Path(os.path.realpath(out)) if (prev and incremental) else None
        t = time.perf_counter()
        reads = plan_reads(files, rows_per_task)
        task = ray.remote(num_cpus=1, max_retries=2)
        read = ray.get([task(bucket_events).remote(r, str(work), str(stage), buckets, as_of, bool(gap_minutes))
                        for r in reads])
        timings["stage1_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sessions = ray.get([task(session_bucket).remote(b, parts, str(work), str(stage), first_day, gap_minutes,
                                                        buckets, sessions_only)
                            for b, parts in enumerate(gather(read, "parts", buckets))])
        timings["stage2_s"] = time.perf_counter() - t
        users: list[dict[str, Any]] = []
        if not sessions_only:
            t = time.perf_counter()
            users = ray.get([task(user_bucket).remote(b, summ, feat, str(stage), str(prior) if prior else None,
                                                      first_day)
                             for b, (summ, feat) in enumerate(zip(gather(sessions, "summ_parts", buckets),
                                                                  gather(sessions, "feat_parts", buckets), strict=True))])
            timings["stage3_s"] = time.perf_counter() - t
        shutil.rmtree(work, ignore_errors=True)
        if prior is not None and first_day is not None:
            _carry_over(prior, stage, first_day)
        results = {
            "rows_in": sum(r["rows_in"] for r in read),
            "quarantine": [r["quarantine"] for r in read], "samples": [s for r in read for s in r["samples"]],
            "max_time": max((pd.Timestamp(r["max_time"]) for r in sessions if r["max_time"]), default=None),
            "sessions": sum(r["sessions"] for r in (sessions if sessions_only else users)),
            "sequences": sum(r["sequences"] for r in sessions), "timings": timings,
        }
        manifest = _finish(stage, results, files, buckets, as_of, since, run_id, t0)
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _prune(versions, keep={run_id, Path(os.path.realpath(out)).name}, limit=3)
    return manifest


def _carry_over(prior: Path, stage: Path, first_day: pd.Timestamp) -> None:
    """Hard-link the unchanged date partitions (before ``first_day``) of the previous output."""
    for table in ("sessions", "sequences", "summaries", "item_daily"):
        src = prior / table
        if not src.exists():
            continue
        for part in src.iterdir():
            if part.name.startswith("date=") and pd.Timestamp(part.name[5:], tz="UTC") < first_day:
                dest = stage / table / part.name
                dest.mkdir(parents=True, exist_ok=True)
                for f in part.iterdir():
                    if not (dest / f.name).exists():
                        os.link(f, dest / f.name)


def _finish(stage: Path, results: dict[str, Any], files: list[str], buckets: int,
            as_of: pd.Timestamp | None, since: pd.Timestamp | None, run_id: str, t0: float) -> dict[str, Any]:
    daily = [pq.read_table(p) for p in sorted((stage / "item_daily").rglob("*.parquet"))]
    wm = results["max_time"]
    items = pd.DataFrame()
    if daily and wm is not None:
        items = items_from_daily(pa.concat_tables(daily, promote_options="default").to_pandas(), wm)
    (stage / "items").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), stage / "items" / "part-0.parquet")
    reasons: dict[str, int] = {}
    for counts in results["quarantine"]:
        for k, v in counts.items():
            reasons[k] = reasons.get(k, 0) + v
    rows_in = results["rows_in"]
    seconds = time.perf_counter() - t0
    manifest = {
        "run_id": run_id, "watermark": str(wm) if wm is not None else None, "buckets": buckets, "layout": LAYOUT,
        "as_of": str(as_of) if as_of is not None else None, "since": str(since) if since is not None else None,
        "input_files": len(files), "rows_in": rows_in, "sessions": results["sessions"],
        "sequences": results["sequences"], "items": len(items),
        "quarantined": sum(reasons.values()), "quarantine_reasons": reasons,
        "quarantine_samples": results["samples"][:10],
        "timings": {k: round(v, 2) for k, v in results["timings"].items()}, "seconds": round(seconds, 2), "events_per_s": round(rows_in / seconds, 1) if seconds else None,
    }
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _publish(stage: Path, out: Path) -> None:
    """Point ``out`` at ``stage`` with one atomic rename of a symlink."""
    if out.exists() and not out.is_symlink():
        raise FileExistsError(f"{out} exists and is not a tandem feature output (expected a symlink)")
    tmp = out.with_name(f".{out.name}.link-{uuid.uuid4().hex[:6]}")
    os.symlink(os.path.relpath(stage, out.parent), tmp)
    os.replace(tmp, out)


def _prune(versions: Path, keep: set[str], limit: int) -> None:
    old = sorted((p for p in versions.iterdir() if p.name not in keep), key=lambda p: p.name)
    for p in old[: max(0, len(old) - limit)]:
        shutil.rmtree(p, ignore_errors=True)
