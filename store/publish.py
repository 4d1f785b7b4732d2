"""Publish a table to Redis: write a new versioned namespace, then flip its pointer; abort; gc.

Readers follow ``keys.pointer_key(table, tenant)`` to the live namespace, so a
table becomes visible in one atomic ``SET`` only after every row and the
manifest are written. Rows carry a TTL; the pointer does not. On failure the
partial namespace is deleted and the old pointer is left as it was.

``NamespaceWriter`` is also a Ray Data callable class: each worker writes its
blocks with pipelined ``SET ... EX`` and returns per-tenant row counts; the
driver then calls ``commit`` (or ``abort``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import pandas as pd

from store import keys

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 7 * 24 * 3600


def connect(redis_url: str) -> Any:
    """A sync Redis client for publication (socket timeouts of 10 s, connect 5 s)."""
    import redis

    return redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)


def write_rows(client: Any, table: str, version: str, rows: Iterable[tuple[str, str, str]],
               ttl_s: int = DEFAULT_TTL_S, batch_size: int = 2000) -> dict[str, int]:
    """Pipelined ``SET`` of ``(tenant, entity, value)`` rows; returns rows written per tenant."""
    counts: dict[str, int] = {}
    pipe = client.pipeline(transaction=False)
    pending = 0
    for tenant, entity, value in rows:
        pipe.set(keys.entity_key(table, version, entity, tenant), value, ex=ttl_s)
        counts[tenant] = counts.get(tenant, 0) + 1
        pending += 1
        if pending >= batch_size:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()
    return counts


def commit(client: Any, table: str, version: str, tenant: str, meta: dict[str, Any],
           ttl_s: int = DEFAULT_TTL_S) -> str | None:
    """Write the manifest, then atomically point readers at ``version``; returns the previous version."""
    manifest = {"table": table, "version": version, "tenant": tenant, "published_at": time.time(), **meta}
    client.set(keys.meta_key(table, version, tenant), json.dumps(manifest, default=str), ex=ttl_s)
    previous = client.set(keys.pointer_key(table, tenant), version, get=True)
    prev = previous.decode() if isinstance(previous, bytes) else previous
    logger.info("published %s for tenant %s: %s (was %s, %s rows)", table, tenant, version, prev,
                meta.get("rows"))
    return prev


def _delete_namespace(client: Any, table: str, version: str, tenant: str) -> int:
    """Delete every key of one namespace (SCAN + batched DEL); returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.namespace(table, version, tenant) + ":*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def abort(client: Any, table: str, version: str, tenants: Iterable[str]) -> int:
    """Delete a partially written namespace (the pointer never moved to it)."""
    deleted = sum(_delete_namespace(client, table, version, tenant) for tenant in tenants)
    logger.warning("aborted %s version %s: deleted %d keys", table, version, deleted)
    return deleted


def gc(client: Any, table: str, tenant: str = keys.DEFAULT_TENANT, keep: int = 1) -> list[str]:
    """Delete the committed namespaces of ``table`` older than the live one and the ``keep`` newest
    before it (by ``published_at`` in their manifests); returns the versions deleted.

    Rows expire by TTL anyway; this frees them at once. A namespace without a manifest may still
    be being written, so it is left alone (``abort`` is its writer's job)."""
    live = client.get(keys.pointer_key(table, tenant))
    live_version = live.decode() if isinstance(live, bytes) else live
    prefix = keys.namespace(table, "v", tenant)[:-1]  # "tandem:{tenant}:{table}:"
    committed: list[tuple[float, str]] = []
    for key in client.scan_iter(match=f"{prefix}*:{keys.META_ENTITY}", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        version = name[len(prefix):-len(keys.META_ENTITY) - 1]
        raw = client.get(name)
        published = json.loads(raw).get("published_at", 0.0) if raw else 0.0
        committed.append((float(published), version))
    older = sorted((c for c in committed if c[1] != live_version), reverse=True)
    doomed = [version for _, version in older[keep:]]
    for version in doomed:
        _delete_namespace(client, table, version, tenant)
    if doomed:
        logger.info("gc %s for tenant %s: deleted %d old namespaces (live %s)", table, tenant, len(doomed),
                    live_version)
    return doomed


def tenant_of(value: Any, default: str = keys.DEFAULT_TENANT) -> str:
    """The tenant of a row; null, NaN, pd.NA and "" mean the default tenant."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return default
    return str(value) or default


class NamespaceWriter:
    """Ray Data callable: write a block's ``(tenant, entity, value)`` columns; emit counts."""

    def __init__(self, redis_url: str, table: str, version: str, ttl_s: int = DEFAULT_TTL_S,
                 entity_col: str = "entity", value_col: str = "value"):
        self.client = connect(redis_url)
        self.table, self.version, self.ttl_s = table, version, ttl_s
        self.entity_col, self.value_col = entity_col, value_col

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = zip(batch["tenant"].map(tenant_of), batch[self.entity_col].astype(str), batch[self.value_col],
                   strict=True)
        counts = write_rows(self.client, self.table, self.version, rows, self.ttl_s)
        return pd.DataFrame({"tenant": list(counts), "rows": list(counts.values())})
