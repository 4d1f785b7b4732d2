"""Publish a table to Redis: write a new versioned namespace, then flip its pointer; abort; gc.

Readers follow ``keys.pointer_key(table, tenant)`` to the live namespace, so a
table becomes visible in one atomic flip only after every row and the manifest
are written. ``write_rows`` registers the namespace in the tenant's index
(``store.gc``) before its first row, so GC finds it even if the run is killed.
``commit`` flips through the run's lease (``store.lease``): the flip is refused
when the lease is not held or a newer run already flipped. Rows carry a TTL (a
few cadences of the publisher, see ``ttl_for``); the pointer does not. On
failure the partial namespace is deleted, never one that a pointer serves.

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

from store import gc, keys

logger = logging.getLogger(__name__)

DEFAULT_CADENCE_S = 24 * 3600  # a hand-run publication is assumed daily
DEFAULT_TTL_CADENCES = 4.0
DEFAULT_TTL_S = int(DEFAULT_CADENCE_S * DEFAULT_TTL_CADENCES)
INVALID_TENANT = "!invalid"  # not a key part: counts rows whose tenant id cannot be one


def ttl_for(cadence_s: float, cadences: float = DEFAULT_TTL_CADENCES, floor_s: int = 600) -> int:
    """Row TTL of a table republished every ``cadence_s``: a few cadences, so a table outlives a
    couple of failed ticks but an abandoned one expires (GC deletes superseded ones sooner)."""
    return max(floor_s, int(cadence_s * cadences))


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
        if tenant not in counts:
            gc.register(pipe, table, version, tenant)  # before its first row: GC finds a killed run's rows
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
           ttl_s: int = DEFAULT_TTL_S, lease: Any | None = None) -> str | None:
    """Write the manifest, then atomically point readers at ``version``; returns the previous version.

    With ``lease`` (a ``store.lease.Lease``; every pipeline passes one) the flip is fenced and
    raises ``store.lease.FencedOut`` when refused. Without it (single-writer tools and tests)
    the flip is plain but still records the previous pointer and the namespace index."""
    manifest = {"table": table, "version": version, "tenant": tenant, "published_at": time.time(), **meta}
    client.set(keys.meta_key(table, version, tenant), json.dumps(manifest, default=str), ex=ttl_s)
    prev: str | None
    if lease is not None:
        prev = lease.flip(table, tenant, version)
    else:
        pipe = client.pipeline(transaction=True)
        pipe.set(keys.pointer_key(table, tenant), version, get=True)
        pipe.zadd(keys.index_key(table, tenant), {version: time.time()})
        previous = pipe.execute()[0]
        prev = previous.decode() if isinstance(previous, bytes) else previous
        if prev and prev != version:
            client.set(keys.previous_key(table, tenant), prev)
            client.zadd(keys.index_key(table, tenant), {prev: time.time()})
    logger.info("published %s for tenant %s: %s (was %s, %s rows)", table, tenant, version, prev,
                meta.get("rows"))
    return prev


def abort(client: Any, table: str, version: str, tenants: Iterable[str]) -> int:
    """Delete a partially written namespace of each tenant, except where a pointer serves it
    (a tenant whose commit succeeded before another tenant's failed keeps its table)."""
    deleted = 0
    for tenant in tenants:
        if not keys.is_key_part(tenant):
            continue
        try:
            deleted += gc.delete_namespace(client, table, version, tenant)
        except gc.NamespaceServed:
            logger.info("abort: %s/%s/%s is live; kept", tenant, table, version)
    logger.warning("aborted %s version %s: deleted %d keys", table, version, deleted)
    return deleted


def tenant_of(value: Any, default: str = keys.DEFAULT_TENANT) -> str:
    """The tenant of a row; null, NaN, pd.NA and "" mean the default tenant."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return default
    return str(value) or default


class NamespaceWriter:
    """Ray Data callable: write a block's ``(tenant, entity, value)`` columns; emit counts."""

    def __init__(self, redis_url: str | None, table: str, version: str, ttl_s: int = DEFAULT_TTL_S,
                 entity_col: str = "entity", value_col: str = "value", client: Any | None = None):
        self.client = client if client is not None else connect(redis_url or "")
        self.table, self.version, self.ttl_s = table, version, ttl_s
        self.entity_col, self.value_col = entity_col, value_col

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        tenants = batch["tenant"].map(tenant_of)
        ok = tenants.map(keys.is_key_part).to_numpy(dtype=bool)
        rows = zip(tenants[ok], batch[self.entity_col][ok].astype(str), batch[self.value_col][ok], strict=True)
        counts = write_rows(self.client, self.table, self.version, rows, self.ttl_s)
        if not ok.all():  # counted, never written: one bad tenant id must not stop the others
            counts[INVALID_TENANT] = int((~ok).sum())
        return pd.DataFrame({"tenant": list(counts), "rows": list(counts.values())})
