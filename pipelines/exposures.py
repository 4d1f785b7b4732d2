"""Drain the experiment logs (exposures, outcomes) from Redis to Parquet, and read them back.

``drain(client, logs_uri, tenants)`` reads two streams per tenant through a consumer group
(``GROUP``) and writes each batch as one Parquet file::

    <logs_uri>/<tenant>/<kind>/date=YYYY-MM-DD/<first id>_<last id>.parquet

- exposures: ``keys.log_stream("exposures", tenant)``, written by the serving replicas
  (``serve.exposures``); drained entries are deleted (Redis holds only what is not drained);
- outcomes: the tenant's live-event stream ``keys.events_stream_key(tenant)``, which
  ``/v1/events`` writes (stored with the session or answered 503); other readers share it, so
  entries are only acknowledged, never deleted, and its length is capped by the app
  (``events_stream_max_len``). Views become clicks, purchases carry their price as revenue.

At least once, with idempotent writes:

- a batch is acknowledged (``XACK``, and for exposures removed with ``XDEL``) only after its
  file is durably written: a local file is written under a temporary name, fsynced, renamed
  and its directory fsynced; an object store replaces a key in one PUT;
- a drain that dies between the write and the ack leaves the entries pending in the group;
  the next drain reads its pending entries first (``XREADGROUP ... 0``) and writes them again,
  under the same name when the batch is the same, else as a second file;
- readers (``read_logs``) drop duplicate ``stream_id`` rows, so a re-drained entry counts once.

Loss is counted, never silent: ``read_logs`` finds exposures lost on the way (gaps in each
writer's ``seq``, see ``store.explog``), and each drain counts stream entries trimmed away
before it read them (the group's ``entries-read`` counter moved by more than it read), which
the KPI report and the guardrail check print loudly.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from store import explog, keys
from store import fs as fs_layer

logger = logging.getLogger(__name__)

GROUP = "tandem-drain"
DEFAULT_BATCH = 20_000


@dataclass
class StreamDrain:
    """What one drain did to one stream."""

    tenant: str
    kind: str
    read: int = 0
    written: int = 0
    files: list[str] = field(default_factory=list)
    redelivered: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    backlog: int = 0   # entries not drained yet (exposures: still in the stream; outcomes: the group's lag)
    trimmed: int | None = 0   # entries trimmed from the stream before this drain read them (None: unknown)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "kind": self.kind, "read": self.read, "written": self.written,
                "files": len(self.files), "redelivered": self.redelivered, "quarantined": self.quarantined,
                "backlog": self.backlog, "trimmed": self.trimmed, "error": self.error}


# -- filesystem ------------------------------------------------------------------------
def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The log store's filesystem and root path (``store.fs``: local or ``s3://``, one client per bucket)."""
    return fs_layer.filesystem(uri)


def write_durably(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """``data`` at ``path`` whole and durable before this returns (fsync locally; one PUT remotely)."""
    if isinstance(fs, pafs.LocalFileSystem):
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _day(stream_id: str) -> str:
    return datetime.fromtimestamp(explog.stream_id_ms(stream_id) / 1000.0, UTC).strftime("%Y-%m-%d")


def _safe(stream_id: str) -> str:
    return stream_id.replace("-", "_").replace(":", ".")


# -- drain -----------------------------------------------------------------------------
def _ensure_group(client: Any, key: str, group: str) -> None:
    """The drain's group, created at the start of what the stream holds; its read counter starts
    there too, so entries trimmed before the group existed are not counted as lost."""
    import redis

    if _group_info(client, key, group) if client.exists(key) else False:
        return
    try:
        if client.exists(key):
            info = client.xinfo_stream(key)
            done = max(0, int(info.get("entries-added", 0)) - int(info.get("length", 0)))
            client.xgroup_create(key, group, id="0", entries_read=done)
        else:
            client.xgroup_create(key, group, id="0", mkstream=True, entries_read=0)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _source(kind: str, tenant: str) -> tuple[str, bool]:
    """(stream key, delete drained entries) of a log."""
    if kind == "exposures":
        return keys.log_stream("exposures", tenant), True
    if kind == "outcomes":
        return keys.events_stream_key(tenant), False
    raise ValueError(f"unknown log {kind!r}; expected one of {keys.LOG_KINDS}")


def _group_info(client: Any, key: str, group: str) -> dict[str, Any]:
    for g in client.xinfo_groups(key):
        if _id(g.get("name")) == group:
            return dict(g)
    return {}


def _write_batch(fs: pafs.FileSystem, root: str, tenant: str, kind: str,
                 entries: list[tuple[Any, Any]], result: StreamDrain, prefix: str = "",
                 from_events: bool = False) -> None:
    table, bad = (explog.outcomes_from_events(tenant, entries) if from_events else explog.to_table(kind, entries))
    for reason, n in bad.items():
        result.quarantined[reason] = result.quarantined.get(reason, 0) + n
    if table.num_rows == 0:
        return
    ids = table.column("stream_id").to_pylist()
    days = [_day(i) for i in ids]
    for day in sorted(set(days)):
        mask = pa.array([d == day for d in days])
        part = table.filter(mask)
        part_ids = part.column("stream_id").to_pylist()
        path = f"{root}/{tenant}/{kind}/date={day}/{prefix}{_safe(part_ids[0])}_{_safe(part_ids[-1])}.parquet"
        write_durably(fs, path, _parquet_bytes(part))
        result.files.append(path)
        result.written += part.num_rows


def drain_stream(client: Any, logs_uri: str, tenant: str, kind: str, *, group: str = GROUP,
                 consumer: str | None = None, batch: int = DEFAULT_BATCH, max_entries: int = 2_000_000) -> StreamDrain:
    """Drain one tenant's stream of ``kind`` up to ``max_entries``; see the module docstring."""
    key, delete = _source(kind, tenant)
    consumer = consumer or "drain"
    fs, root = filesystem(logs_uri)
    result = StreamDrain(tenant, kind)
    _ensure_group(client, key, group)
    last_id: Any = None
    start = "0"  # this consumer's pending entries first: a previous drain wrote them but died before the ack
    while result.read < max_entries:
        got = client.xreadgroup(group, consumer, {key: start}, count=batch)
        entries = got[0][1] if got else []
        if not entries:
            if start == "0":
                start = ">"
                continue
            break
        if start == "0":
            result.redelivered += len(entries)
        else:
            last_id = entries[-1][0]
        result.read += len(entries)
        _write_batch(fs, root, tenant, kind, entries, result, from_events=kind == "outcomes")
        ids = [e[0] for e in entries]
        pipe = client.pipeline(transaction=True)
        pipe.xack(key, group, *ids)
        if delete:
            pipe.xdel(key, *ids)
        pipe.execute()
        if start == "0" and len(entries) < batch:
            start = ">"
    result.trimmed, result.backlog = _account_trimmed(client, key, group, last_id, delete)
    if result.trimmed:
        logger.error("tenant %s: %d %s entries were trimmed from %s before the drain read them (lost)", tenant,
                     result.trimmed, kind, key)
    return result


def _account_trimmed(client: Any, key: str, group: str, last_id: Any, deleted: bool) -> tuple[int | None, int]:
    """(entries trimmed away unread since the last accounting, entries after ``last_id`` not drained yet).

    In one snapshot: ``entries-added`` counts every entry ever added; the group's ``entries-read``
    counts those delivered to it; the entries after the last one this drain read are still to
    come. What is in neither was trimmed unread. The group's counter is then moved past them
    (``XGROUP SETID ... ENTRIESREAD``) so each loss is counted once."""
    if last_id is None:
        info = _group_info(client, key, group)
        last_id = info.get("last-delivered-id")
    pipe = client.pipeline(transaction=True)
    pipe.xinfo_stream(key)
    pipe.xinfo_groups(key)
    pipe.xrange(key, min=f"({_id(last_id)}", count=100_001)
    stream, groups, after = pipe.execute()
    group_info = next((dict(g) for g in groups if _id(g.get("name")) == group), {})
    read = group_info.get("entries-read")
    if read is None or len(after) > 100_000:
        return None, len(after)
    trimmed = max(0, int(stream.get("entries-added", 0)) - int(read) - len(after))
    if trimmed:
        client.xgroup_setid(key, group, _id(last_id), entries_read=int(read) + trimmed)
    return trimmed, len(after) if not deleted else int(stream.get("length", 0))


def _id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def drain(client: Any, logs_uri: str, tenants: list[str], **kw: Any) -> list[StreamDrain]:
    """Drain both logs of every tenant; one tenant's failure is logged and never stops the others."""
    out = []
    for tenant in tenants:
        for kind in keys.LOG_KINDS:
            try:
                out.append(drain_stream(client, logs_uri, tenant, kind, **kw))
            except Exception as exc:  # noqa: BLE001 - reported; the entries stay in the stream for the next drain
                logger.exception("draining %s/%s failed; its entries stay in Redis", tenant, kind)
                out.append(StreamDrain(tenant, kind, error=f"{type(exc).__name__}: {exc}"[:500]))
    return out


# -- read back ------------------------------------------------------------------------
@dataclass
class Logs:
    """One tenant's drained logs, deduplicated by stream id, with the loss accounting."""

    exposures: pa.Table
    outcomes: pa.Table
    duplicates: dict[str, int]
    missing: dict[str, int]   # records lost on the way: gaps in each writer's seq

    def to_dict(self) -> dict[str, Any]:
        return {"exposures": self.exposures.num_rows, "outcomes": self.outcomes.num_rows,
                "duplicates": self.duplicates, "missing": self.missing}


def _read_kind(fs: pafs.FileSystem, root: str, tenant: str, kind: str, since: datetime | None) -> pa.Table:
    base = f"{root}/{tenant}/{kind}"
    sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    files = sorted(f.path for f in fs.get_file_info(sel)
                   if f.type == pafs.FileType.File and f.path.endswith(".parquet") and "/." not in f.path
                   and ".tmp" not in f.base_name)
    if since is not None:
        first_day = since.astimezone(UTC).strftime("%Y-%m-%d")
        files = [p for p in files if p.split("date=", 1)[-1][:10] >= first_day]
    schema = explog.SCHEMAS[kind]
    tables = [pq.read_table(p, filesystem=fs, schema=schema) for p in files]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _dedupe(table: pa.Table) -> tuple[pa.Table, int]:
    if table.num_rows == 0:
        return table, 0
    ids = table.column("stream_id")
    unique = pc.unique(ids)
    if len(unique) == table.num_rows:
        return table, 0
    idx = pc.index_in(unique, ids)  # first occurrence of each id
    first = table.take(idx)
    return first, table.num_rows - first.num_rows


def _missing(table: pa.Table) -> int:
    """Records lost between their writer and the Parquet files: per writer, the seq values never seen
    between its lowest and its highest (the tail not yet drained is not counted)."""
    if table.num_rows == 0:
        return 0
    grouped = table.group_by("writer").aggregate([("seq", "min"), ("seq", "max"), ("seq", "count_distinct")])
    span = pc.add(pc.subtract(grouped.column("seq_max"), grouped.column("seq_min")), 1)
    lost = pc.subtract(span, grouped.column("seq_count_distinct"))
    return int(pc.sum(lost).as_py() or 0)


def read_logs(logs_uri: str, tenant: str, since: datetime | None = None) -> Logs:
    """The tenant's drained exposures and outcomes (from ``since``'s day on), duplicates dropped."""
    fs, root = filesystem(logs_uri)
    out: dict[str, pa.Table] = {}
    dups: dict[str, int] = {}
    missing: dict[str, int] = {}
    for kind in keys.LOG_KINDS:
        table, dups[kind] = _dedupe(_read_kind(fs, root, tenant, kind, since))
        missing[kind] = _missing(table)
        if missing[kind]:
            logger.error("tenant %s: %d %s record(s) were lost before the drain (gaps in writer seq)",
                         tenant, missing[kind], kind)
        out[kind] = table
    return Logs(out["exposures"], out["outcomes"], dups, missing)



def write_records(logs_uri: str, tenant: str, kind: str, records: list[dict[str, Any]], prefix: str = "import") -> int:
    """Write log records straight to Parquet (imports of past logs, smoke tests, benchmarks), in the
    drain's layout; each row's ``stream_id`` is ``<time ms>-<index>``, its file ``<prefix>...``."""
    fs, root = filesystem(logs_uri)
    entries = [(f"{int(r['time'])}-{i}", {explog.FIELD: explog.encode(r)}) for i, r in enumerate(records)]
    result = StreamDrain(tenant, kind)
    _write_batch(fs, root, tenant, kind, entries, result, prefix=prefix)
    return result.written
