"""Real event logs -> canonical events, Parquet partitioned by event date; bad rows -> quarantine.

``python -m jobs.ingest --format F --input PATH [--input PATH ...] --out DIR [--tenant T]
[--quarantine QDIR] [--gap-minutes M] [--json]``

- ``--input`` is repeatable and takes local paths, directories (read recursively, names
  starting with ``_`` or ``.`` skipped) and URIs such as ``s3://bucket/key`` (any
  ``pyarrow.fs`` filesystem; ``.gz``/``.bz2``/``.zst`` are decompressed by extension).
- Multi-file formats take all their files as repeated ``--input``: YOOCHOOSE clicks and
  buys are told apart by field count (4 vs 5), Diginetica views / purchases / categories
  by header; categories are joined onto the events' ``category``.
- Good rows go to ``DIR/date=YYYY-MM-DD/part-00000.parquet``. Bad rows go to
  ``QDIR/quarantine.parquet`` (default: the sibling ``DIR_quarantine``, kept outside
  ``DIR`` so readers that list ``DIR`` recursively never see them) with ``reason``,
  ``source_file``, ``source_line`` and the ``raw`` fields. Counts per reason are printed.
- Both directories are written to staging siblings and renamed into place only after
  everything is written, so a failed run leaves the previous output as it was.
- A missing column fails with ``SchemaError`` naming the file and the column.

The adapters (``pipelines.adapters``) are pure per-file functions; this job runs them in one
process, which is right for samples. For billions of rows, list the files and call
``pipelines.adapters.parse_file`` per file in a Ray Data ``map_batches``, then write with
``write_parquet(partition_cols=["date"])``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.schema import EVENT_SCHEMA, conform, split_valid
from pipelines.adapters import FORMATS, join_categories, parse_file
from pipelines.synthetic import write_partitioned
from store import fs as store_fs

logger = logging.getLogger(__name__)

MANIFEST = "_ingest.json"
SOURCE_COLUMNS = ("source_file", "source_line", "raw")
QUARANTINE_SCHEMA = pa.schema(
    [f.with_nullable(True) for f in EVENT_SCHEMA]
    + [pa.field("reason", pa.string()), pa.field("source_file", pa.string()),
       pa.field("source_line", pa.int64()), pa.field("raw", pa.string())]
)


@dataclass
class IngestResult:
    """Canonical events, quarantined rows (``reason`` + source columns) and the counts."""

    events: pa.Table
    quarantine: pa.Table
    rows_in: int
    lookup_rows: int = 0
    lookup_rejected: int = 0
    files: list[str] = field(default_factory=list)

    def reason_counts(self) -> dict[str, int]:
        if self.quarantine.num_rows == 0:
            return {}
        counts = pc.value_counts(self.quarantine["reason"]).to_pylist()
        return dict(sorted((c["values"], int(c["counts"])) for c in counts))


def expand_inputs(inputs: list[str]) -> list[tuple[pafs.FileSystem, str, str]]:
    """(filesystem, path, display name) for every file named or found under a named directory."""
    out = []
    for uri in inputs:
        fs, root = store_fs.filesystem(uri)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{uri}: no such file or directory")
        if info.type == pafs.FileType.File:
            out.append((fs, root, uri))
            continue
        for f in sorted(fs.get_file_info(pafs.FileSelector(root, recursive=True)), key=lambda f: f.path):
            rel = f.path[len(root):].lstrip("/")
            if f.type == pafs.FileType.File and not any(p.startswith(("_", ".")) for p in rel.split("/")):
                out.append((fs, f.path, uri.rstrip("/") + "/" + rel))
    return out


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    """Whole file, decompressed when its extension says so."""
    with fs.open_input_stream(path, compression="detect") as stream:
        return bytes(stream.read())


def ingest(fmt: str, inputs: list[str], tenant: str | None = None, gap_minutes: float = 30.0) -> IngestResult:
    """Parse every input, join lookups, validate against the canonical schema, split off bad rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    parts, lookups, rejected, files = [], [], 0, []
    for fs, path, name in expand_inputs(inputs):
        parsed = parse_file(fmt, read_bytes(fs, path), name, gap_minutes=gap_minutes)
        files.append(name)
        if parsed.events is not None:
            parts.append(parsed.events)
            logger.info("%s: %d rows", name, parsed.events.num_rows)
        if parsed.categories is not None:
            lookups.append(parsed.categories)
            rejected += parsed.rejected_lookup_rows
            logger.info("%s: %d item categories (%d rejected)", name, parsed.categories.num_rows,
                        parsed.rejected_lookup_rows)
    if not parts:
        raise ValueError(f"no event rows in {inputs} (format {fmt})")
    raw = pa.concat_tables(parts)
    n_lookup = 0
    if lookups:
        cats = pa.concat_tables(lookups)
        n_lookup = cats.num_rows
        raw = join_categories(raw, cats)
    if tenant is not None:
        raw = raw.set_column(raw.schema.get_field_index("tenant"), "tenant",
                             pc.fill_null(raw["tenant"], pa.scalar(tenant, pa.string())))
    bad_in_adapter = raw.filter(pc.is_valid(raw["reason"]))
    good_raw = raw.filter(pc.is_null(raw["reason"]))
    # Second guard: the schema's own contract (e.g. negative prices) with the source kept.
    idx = pa.array(np.arange(good_raw.num_rows), pa.int64())
    split = split_valid(conform(good_raw, "<adapted rows>").append_column("__idx", idx))
    events = split.valid.drop_columns(["__idx"])
    late_bad = split.quarantined
    src = good_raw.select(list(SOURCE_COLUMNS)).take(late_bad["__idx"])
    for name in SOURCE_COLUMNS:
        late_bad = late_bad.append_column(name, src[name])
    quarantine = pa.concat_tables([t.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
                                   for t in (bad_in_adapter, late_bad)])
    events = events.sort_by([("event_time", "ascending"), ("session_id", "ascending")])
    return IngestResult(events=events, quarantine=quarantine, rows_in=raw.num_rows, lookup_rows=n_lookup,
                        lookup_rejected=rejected, files=files)


def _replaceable(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and (not any(path.iterdir()) or (path / MANIFEST).exists()))


def write_outputs(result: IngestResult, out: Path, quarantine_dir: Path, summary: dict[str, object]) -> dict[str, int]:
    """Stage both directories, then rename them into place. Returns rows per date."""
    for target in (out, quarantine_dir):
        if not _replaceable(target):
            raise FileExistsError(f"{target} exists and is not an ingest output (no {MANIFEST}); refusing to replace")
    token = uuid.uuid4().hex[:8]
    stages = {t: t.with_name(f".{t.name}.staging-{token}") for t in (out, quarantine_dir)}
    try:
        for stage in stages.values():
            stage.mkdir(parents=True)
        counts = write_partitioned(result.events, stages[out]) if result.events.num_rows else {}
        pq.write_table(result.quarantine, stages[quarantine_dir] / "quarantine.parquet")
        manifest = json.dumps({**summary, "partitions": counts}, indent=1, default=str)
        for stage in stages.values():
            (stage / MANIFEST).write_text(manifest)
        for target, stage in stages.items():
            old = target.with_name(f".{target.name}.old-{token}")
            if target.exists():
                target.rename(old)
            stage.rename(target)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)
    return counts


def write_outputs_to_store(result: IngestResult, out: str, quarantine_dir: str,
                           summary: dict[str, object]) -> dict[str, int]:
    """Object storage: each output is a new version under its prefix, made current by its ``_CURRENT``
    pointer (``store.fs.Publication``; the quarantine first, the events last). Returns rows per date."""
    started = time.time()
    pubs = [store_fs.Publication(quarantine_dir), store_fs.Publication(out)]
    stages = [p.begin() for p in pubs]
    try:
        counts = write_partitioned(result.events, stages[1]) if result.events.num_rows else {}
        with store_fs.open_output_stream(store_fs.join(stages[0], "quarantine.parquet")) as f:
            pq.write_table(result.quarantine, f)
        for stage in stages:
            store_fs.write_json(store_fs.join(stage, MANIFEST), {**summary, "partitions": counts})
        for pub, stage in zip(pubs, stages, strict=True):
            pub.commit(stage)
    except BaseException:
        for pub, stage in zip(pubs, stages, strict=True):
            if pub.current_version() != store_fs.basename(stage):
                pub.abort(stage)
        raise
    for pub in pubs:
        pub.gc(keep=2, before=started)
    return counts


def run(fmt: str, inputs: list[str], out: str | Path, quarantine_dir: str | Path | None = None,
        tenant: str | None = None, gap_minutes: float = 30.0) -> dict[str, object]:
    """Ingest and write (local directories or s3:// prefixes); returns the summary (rows in/out,
    quarantined by reason, seconds)."""
    t0 = time.perf_counter()
    out = store_fs.normalize(out)
    qdir = (store_fs.normalize(quarantine_dir) if quarantine_dir
            else store_fs.join(store_fs.parent(out), store_fs.basename(out) + "_quarantine"))
    result = ingest(fmt, inputs, tenant=tenant, gap_minutes=gap_minutes)
    reasons = result.reason_counts()
    summary: dict[str, object] = {
        "format": fmt, "files": len(result.files), "rows_in": result.rows_in, "rows_out": result.events.num_rows,
        "quarantined": reasons, "quarantined_total": result.quarantine.num_rows,
        "lookup_rows": result.lookup_rows, "lookup_rejected": result.lookup_rejected,
        "out": str(out), "quarantine": str(qdir),
    }
    counts = (write_outputs_to_store(result, out, qdir, summary) if store_fs.is_remote(out)
              else write_outputs(result, Path(out), Path(qdir), summary))
    summary["partitions"] = len(counts)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
