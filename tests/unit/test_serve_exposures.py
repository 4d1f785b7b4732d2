"""The replica's exposure writer: never blocks or raises on the request path, keeps records while
Redis is down and writes them in order when it returns, drops only when full and counts it."""

from __future__ import annotations

import asyncio
from typing import Any

from serve.exposures import ExposureConfig, ExposureLog
from store import explog, keys


class FakeRedis:
    def __init__(self) -> None:
        self.down = False
        self.entries: list[tuple[str, dict[bytes, bytes], int]] = []

    def pipeline(self, transaction: bool = False) -> Any:
        return FakePipe(self)


class FakePipe:
    def __init__(self, r: FakeRedis):
        self.r, self.cmds = r, []

    def xadd(self, key: str, fields: dict[bytes, bytes], maxlen: int, approximate: bool) -> None:
        assert approximate
        self.cmds.append((key, fields, maxlen))

    async def execute(self) -> list[str]:
        if self.r.down:
            raise ConnectionError("Connection refused")
        self.r.entries.extend(self.cmds)
        return ["1-0"] * len(self.cmds)


def _rec(log: ExposureLog, tenant: str, i: int) -> bool:
    return log.record(tenant, "e1", "control", f"s{i}", None, ("a", "b"), "v1", "model", "recommend")


def _rows(redis: FakeRedis) -> list[dict[str, Any]]:
    """The records as the drain reads them back (``store.explog.to_table``)."""
    entries = [(f"{i}-0", f) for i, (_, f, _) in enumerate(redis.entries)]
    table, bad = explog.to_table("exposures", entries)
    assert not bad
    return table.to_pylist()  # type: ignore[no-any-return]


def test_records_are_batched_per_tenant_and_written_in_order() -> None:
    async def go() -> None:
        redis = FakeRedis()
        log = ExposureLog("redis://unused", ExposureConfig(batch=3, stream_max_len=500), client=redis)
        for i in range(4):
            assert _rec(log, "acme", i)
        assert _rec(log, "bolt", 0)
        assert await log.flush() == 3 and await log.flush() == 2 and await log.flush() == 0
        assert [k for k, _, _ in redis.entries] == [keys.log_stream("exposures", "acme")] * 2 + [
            keys.log_stream("exposures", "bolt")]
        assert {m for _, _, m in redis.entries} == {500}
        rows = _rows(redis)
        assert [(r["tenant"], r["seq"]) for r in rows] == [("acme", 0), ("acme", 1), ("acme", 2), ("acme", 3),
                                                           ("bolt", 0)]
        assert rows[0]["items"] == ["a", "b"] and rows[0]["positions"] == [0, 1] and rows[0]["writer"] == log.writer
        assert log.written == 5 and log.state()["buffered"] == 0
        await log.close()
    asyncio.run(go())


def test_redis_down_keeps_records_then_drops_counted_when_full_then_catches_up() -> None:
    async def go() -> None:
        redis = FakeRedis()
        log = ExposureLog("redis://unused", ExposureConfig(max_buffer=100, batch=40), client=redis)
        redis.down = True
        for i in range(130):
            _rec(log, "acme", i)
        assert await log.flush() == 0
        assert log.buffered == 100 and log.dropped == 30
        assert log.state()["error"].startswith("ConnectionError")
        redis.down = False
        while await log.flush():
            pass
        rows = _rows(redis)
        assert [r["seq"] for r in rows] == list(range(100))  # in order; seq 100-129 are the gap of the drops
        assert log.state() == {"buffered": 0, "dropped": 30, "written": 100, "write_errors": 1,
                               "error": None}
        await log.close()
    asyncio.run(go())


def test_background_task_flushes_and_close_drains() -> None:
    async def go() -> None:
        redis = FakeRedis()
        log = ExposureLog("redis://unused", ExposureConfig(flush_interval_s=0.01), client=redis)
        _rec(log, "acme", 0)  # starts the task on the running loop
        await asyncio.sleep(0.1)
        assert len(_rows(redis)) == 1
        _rec(log, "acme", 1)
        await log.close()
        assert len(_rows(redis)) == 2
    asyncio.run(go())
