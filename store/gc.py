"""Garbage collection of old Redis namespaces, in small batches that never block serving.

Every publication registers its namespace in a per-tenant, per-table index (a sorted set,
``keys.index_key``) *before* it writes a row, so a run killed half-way leaves a namespace
that GC can still find. A flip (``store.lease.Lease.flip``) re-scores the namespace it
retires with the flip time. GC then deletes every indexed namespace that is

- neither the live one (the pointer) nor the previous one (``keys.previous_key``), and
- older than ``grace_s`` (since it was created, or since it stopped being live): the grace
  covers requests that read the pointer just before a flip and the rows just after.

Deletion is ``SCAN MATCH ns:* COUNT batch`` plus ``UNLINK`` (the memory is freed off the
main thread) of at most ``batch`` keys per call, each batch in a Lua script that first
re-checks that no pointer serves the namespace, so even a racing publisher cannot lose
its live table. ``pause_s`` between batches yields the server to serving traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from store import keys

logger = logging.getLogger(__name__)

DEFAULT_GRACE_S = 120.0
DEFAULT_BATCH = 500

# KEYS: pointer, previous pointer, then the keys to delete; ARGV: version
_UNLINK_UNLESS_SERVED = """
local v = ARGV[1]
if redis.call('GET', KEYS[1]) == v or redis.call('GET', KEYS[2]) == v then
  return -1
end
local n = 0
for i = 3, #KEYS do
  n = n + redis.call('UNLINK', KEYS[i])
end
return n
"""


class NamespaceServed(RuntimeError):
    """Refused to delete a namespace that a pointer serves."""


@dataclass
class GcReport:
    deleted: list[str] = field(default_factory=list)  # "tenant/table/version"
    deleted_keys: int = 0
    kept: int = 0
    waiting: int = 0  # past live/previous but still inside the grace period
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"namespaces_deleted": len(self.deleted), "keys_deleted": self.deleted_keys, "kept": self.kept,
                "in_grace": self.waiting, "seconds": round(self.seconds, 3)}


def register(pipe: Any, table: str, version: str, tenant: str, now: float | None = None) -> None:
    """Add a namespace to the index (``ZADD NX``: the first write's time stays)."""
    pipe.zadd(keys.index_key(table, tenant), {version: now if now is not None else time.time()}, nx=True)


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def served(client: Any, table: str, tenant: str) -> tuple[str | None, str | None]:
    """(live, previous) namespace versions of ``table`` for ``tenant``."""
    live, prev = client.mget([keys.pointer_key(table, tenant), keys.previous_key(table, tenant)])
    return _text(live), _text(prev)


def tenants_indexed(client: Any, batch: int = DEFAULT_BATCH) -> set[str]:
    """Every tenant with a namespace index or a pointer."""
    out: set[str] = set()
    for pattern in (f"{keys.PREFIX}:*:nsidx:*", f"{keys.PREFIX}:*:ptr:*"):
        for raw in client.scan_iter(match=pattern, count=batch):
            out.add(_text(raw).split(":", 2)[1])  # type: ignore[union-attr]
    return out


def delete_namespace(client: Any, table: str, version: str, tenant: str, batch: int = DEFAULT_BATCH,
                     pause_s: float = 0.0) -> int:
    """UNLINK every key of one namespace in batches; raises ``NamespaceServed`` if a pointer serves it."""
    script = client.register_script(_UNLINK_UNLESS_SERVED)
    guard = [keys.pointer_key(table, tenant), keys.previous_key(table, tenant)]
    deleted = 0
    pending: list[Any] = []

    def flush() -> None:
        nonlocal deleted
        n = int(script(keys=guard + pending, args=[version]))
        if n < 0:
            raise NamespaceServed(f"{tenant}/{table}/{version} is served by a pointer; not deleted")
        deleted += n
        pending.clear()
        if pause_s:
            time.sleep(pause_s)

    for key in client.scan_iter(match=keys.namespace(table, version, tenant) + ":*", count=batch):
        pending.append(key)
        if len(pending) >= batch:
            flush()
    flush()
    client.zrem(keys.index_key(table, tenant), version)
    return deleted


def collect(client: Any, tables: Iterable[str] = keys.TABLES, tenants: Iterable[str] | None = None,
            grace_s: float = DEFAULT_GRACE_S, now: float | None = None, batch: int = DEFAULT_BATCH,
            pause_s: float = 0.0, protect: Iterable[str] = ()) -> GcReport:
    """Delete the indexed namespaces that are neither live nor previous and older than ``grace_s``.

    ``protect``: versions to keep whatever their age (e.g. a candidate's tables written by
    this run but not flipped yet)."""
    t0 = time.perf_counter()
    now = time.time() if now is None else now
    keep = set(protect)
    report = GcReport()
    for tenant in sorted(tenants if tenants is not None else tenants_indexed(client, batch)):
        for table in tables:
            live, prev = served(client, table, tenant)
            for raw, score in client.zrange(keys.index_key(table, tenant), 0, -1, withscores=True):
                version = _text(raw)
                if version in (live, prev) or version in keep:
                    report.kept += 1
                elif score + grace_s > now:
                    report.waiting += 1
                else:
                    try:
                        report.deleted_keys += delete_namespace(client, table, version, tenant, batch, pause_s)  # type: ignore[arg-type]
                        report.deleted.append(f"{tenant}/{table}/{version}")
                    except NamespaceServed as exc:  # flipped to it meanwhile
                        logger.info("%s", exc)
                        report.kept += 1
    report.seconds = time.perf_counter() - t0
    if report.deleted:
        logger.info("gc: deleted %d namespaces (%d keys), kept %d, %d in grace, %.2fs", len(report.deleted),
                    report.deleted_keys, report.kept, report.waiting, report.seconds)
    return report
