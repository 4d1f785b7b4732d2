"""store.online.OnlineStore on a real redis-server: ``get_row`` follows the pointer, caches the
immutable versioned value, reads the live session in the same call, and reports failures in
``Row.error`` instead of raising."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from store import codec, gc, keys, publish
from store.online import OnlineStore, OnlineStoreConfig


def _publish(url: str, table: str, version: str, rows: dict[str, str], tenant: str = "default") -> None:
    client = publish.connect(url)
    try:
        publish.write_rows(client, table, version, [(tenant, e, v) for e, v in rows.items()])
        publish.commit(client, table, version, tenant, {"rows": len(rows)})
    finally:
        client.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_get_row_follows_the_pointer_and_reads_the_live_session(redis_server: str, redis_client: Any) -> None:
    _publish(redis_server, "recs", "m1.rabc", {"s1": codec.encode_top_k([("i1", 0.9), ("i2", 0.5)])})

    async def scenario() -> list[Any]:
        store = OnlineStore(redis_server)
        try:
            assert await store.append_events("default", "s1", [codec.encode_event({"item_id": "i9"})], None, 60, 10,
                                             1000, 60) == (1, False)
            first = await store.get_row("recs", "default", "s1", "s1", timeout_s=1.0)
            missing = await store.get_row("recs", "default", "nope", None, timeout_s=1.0)
            unpublished = await store.get_row("score", "default", "s1", None, timeout_s=1.0)
            return [first, missing, unpublished]
        finally:
            await store.close()

    first, missing, unpublished = _run(scenario())
    assert first.lookup == "hit" and first.version == "m1.rabc" and first.error is None
    assert codec.as_top_k(first.value) == [("i1", 0.9), ("i2", 0.5)]
    assert first.events == [{"item_id": "i9"}]
    assert missing.lookup == "miss" and missing.value is None and missing.version == "m1.rabc"
    assert unpublished.lookup == "miss" and unpublished.version is None


def test_versioned_values_come_from_the_lru_until_the_pointer_moves(redis_server: str, redis_client: Any) -> None:
    _publish(redis_server, "score", "m1.r1", {"s1": codec.encode_score(0.25)})

    async def scenario() -> tuple[Any, Any, Any]:
        store = OnlineStore(redis_server, OnlineStoreConfig(pointer_ttl_s=0.2))
        try:
            before = await store.get_row("score", "default", "s1", timeout_s=1.0)
            # the immutable versioned key is gone from Redis, yet the cached read still answers
            redis_client.delete(keys.entity_key("score", "m1.r1", "s1"))
            cached = await store.get_row("score", "default", "s1", timeout_s=1.0)
            _publish(redis_server, "score", "m2.r2", {"s1": codec.encode_score(0.75)})
            await asyncio.sleep(0.3)  # past the pointer's short TTL
            after = await store.get_row("score", "default", "s1", timeout_s=1.0)
            return before, cached, after
        finally:
            await store.close()

    before, cached, after = _run(scenario())
    assert (codec.as_score(before.value), codec.as_score(cached.value)) == (0.25, 0.25)
    assert codec.as_score(after.value) == 0.75 and after.version == "m2.r2"


def test_a_dead_server_is_a_row_error_and_opens_the_breaker() -> None:
    async def scenario() -> list[Any]:
        store = OnlineStore("redis://127.0.0.1:1/0", OnlineStoreConfig(breaker_failures=2, connect_timeout_s=0.05))
        try:
            return [await store.get_row("recs", "t1", "s1", "s1", timeout_s=0.1) for _ in range(3)]
        finally:
            await store.close()

    rows = _run(scenario())
    assert all(r.lookup == "error" and r.value is None for r in rows)
    assert rows[0].error in ("redis_error", "redis_timeout") and rows[-1].error == "redis_breaker_open"


def test_gc_keeps_the_live_and_previous_namespaces_and_the_one_being_written(redis_server: str,
                                                                              redis_client: Any) -> None:
    for i in range(4):
        _publish(redis_server, "recs", f"m{i}.r{i}", {"s1": codec.encode_top_k([("i1", float(i))])})
    client = publish.connect(redis_server)
    try:
        publish.write_rows(client, "recs", "m9.r9", [("default", "s1", "[]")])  # being written: no manifest
        assert gc.collect(client, ["recs"], grace_s=60, protect=["m9.r9"]).deleted == []  # retired just now
        later = time.time() + 61
        report = gc.collect(client, ["recs"], grace_s=60, now=later, protect=["m9.r9"])
        assert sorted(report.deleted) == ["default/recs/m0.r0", "default/recs/m1.r1"]
        assert gc.collect(client, ["recs"], grace_s=60, now=later, protect=["m9.r9"]).deleted == []
    finally:
        client.close()
    left = {k.decode().split(":")[3] for k in redis_client.scan_iter(match="tandem:default:recs:*")}
    assert left == {"m2.r2", "m3.r3", "m9.r9"}
    assert redis_client.get(keys.pointer_key("recs")) == b"m3.r3"
