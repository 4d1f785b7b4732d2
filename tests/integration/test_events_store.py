"""Live events on a real redis-server: stored atomically in the session and the stream, or refused;
and the breaker only ever hears about Redis's own faults."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from serve.engine import Engine, EventsNotStored
from serve.schemas import AppArgs, EventsRequest
from store import keys
from store.online import OnlineStore, OnlineStoreConfig, StoreUnavailable

pytestmark = pytest.mark.integration


def _engine(url: str, **cache: float) -> Engine:
    args = AppArgs(registry_uri="unused", redis_url=url, events_stream_max_len=1000, session_max_events=5,
                   cache=OnlineStoreConfig(**cache))  # type: ignore[arg-type]
    return Engine(args, OnlineStore(url, args.cache))


def _req(session: str, n: int, batch_id: str | None = None) -> EventsRequest:
    return EventsRequest.model_validate({"session_id": session, "batch_id": batch_id,
                                         "events": [{"item_id": f"i{j}", "event_type": "view"} for j in range(n)]})


def test_events_land_in_the_session_and_the_stream_once_per_batch(redis_server: str, redis_client) -> None:
    async def go() -> list:
        engine = _engine(redis_server)
        first = await engine.add_events(_req("s-1", 3, "b-1"), "acme")
        again = await engine.add_events(_req("s-1", 3, "b-1"), "acme")       # a retry of the same batch
        more = await engine.add_events(_req("s-1", 4), "acme")               # no batch id: always stored
        other = await engine.add_events(_req("s-1", 1), "bolt")
        await engine.store.close()
        return [first, again, more, other]

    first, again, more, other = asyncio.run(go())
    assert (first.stored, first.duplicate, first.session_length) == (True, False, 3)
    assert (again.stored, again.duplicate, again.session_length) == (True, True, 3)
    assert more.session_length == 5                                          # session_max_events keeps the last 5
    stream = redis_client.xrange(keys.events_stream_key("acme"))
    assert len(stream) == 7                                                   # 3 + 4: the retry was not added
    fields = stream[0][1]
    assert fields[b"session_id"] == b"s-1" and json.loads(fields[b"event"])["item_id"] == "i0"
    assert fields[b"batch_id"] == b"b-1" and stream[-1][1][b"batch_id"] == b""
    assert len(redis_client.xrange(keys.events_stream_key("bolt"))) == 1 and other.tenant == "bolt"
    assert 0 < redis_client.ttl(keys.session_key("s-1", "acme")) <= 1800


def test_the_stream_is_capped_by_length(redis_server: str, redis_client) -> None:
    async def go() -> None:
        engine = _engine(redis_server)
        for i in range(30):
            await engine.add_events(_req(f"s-{i}", 100), "capped")
        await engine.store.close()

    asyncio.run(go())
    length = redis_client.xlen(keys.events_stream_key("capped"))
    assert 1000 <= length < 3000, length                                      # MAXLEN ~ 1000 (approximate)


def _stop(pid_file: Path, sig: signal.Signals) -> None:
    os.killpg(int(pid_file.read_text()), sig)


def test_events_are_refused_with_a_retry_while_redis_is_hung_and_a_retry_stores_them_once(
        tmp_path: Path, redis_client) -> None:
    """A refused batch may still land (its write was sent before Redis hung): the client retries it
    with the same batch_id, and every batch ends up in the stream exactly once."""
    from cluster.local import free_port, start_redis, stop_group

    port, pid_file = free_port(), tmp_path / "redis.pid"
    start_redis(port, tmp_path / "redis", pid_file)
    url = f"redis://127.0.0.1:{port}/0"

    async def go() -> dict[str, object]:
        engine = _engine(url, call_timeout_s=0.2, write_timeout_s=0.5, breaker_failures=2, breaker_reset_s=0.5)
        out: dict[str, object] = {"ok": (await engine.add_events(_req("s", 1, "b0"), "t")).stored}
        _stop(pid_file, signal.SIGSTOP)                                       # hung: answers nothing
        refused = []
        for i in (1, 2, 3):
            try:
                await engine.add_events(_req("s", 1, f"b{i}"), "t")
                refused.append("stored")
            except EventsNotStored as exc:
                refused.append((exc.reason, exc.retry_after_s))
        out["hung"] = refused
        out["breaker"] = (engine.store.write_breaker.state, engine.store.breaker_state)
        _stop(pid_file, signal.SIGCONT)
        await asyncio.sleep(0.6)                                              # the breaker probes again
        out["retries"] = [(await engine.add_events(_req("s", 1, f"b{i}"), "t")).stored for i in (1, 2, 3)]
        await engine.store.close()
        return out

    try:
        out = asyncio.run(go())
        import redis

        client = redis.Redis.from_url(url)
        stream = client.xrange(keys.events_stream_key("t"))
        client.close()
    finally:
        stop_group(pid_file, "test redis (events)")
    assert out["ok"] is True
    assert out["hung"] == [("timeout", 1), ("timeout", 1), ("breaker_open", 1)], out
    assert out["breaker"] == ("open", "closed")   # the writes' own breaker; reads have not failed yet
    assert out["retries"] == [True, True, True]
    assert len(stream) == 4                  # b0..b3 once each, whether the first try of b1/b2 landed or not


def test_tiny_client_deadlines_never_open_the_breaker_but_a_hung_redis_does(tmp_path: Path) -> None:
    from cluster.local import free_port, start_redis, stop_group

    port, pid_file = free_port(), tmp_path / "redis.pid"
    start_redis(port, tmp_path / "redis", pid_file)
    cache = OnlineStore(f"redis://127.0.0.1:{port}/0", OnlineStoreConfig(call_timeout_s=0.5, breaker_failures=3,
                                                                   breaker_reset_s=0.3))

    async def reason(timeout_s: float | None) -> str:
        try:
            await cache.get_many(["k"], timeout_s)
            return "ok"
        except StoreUnavailable as exc:
            return exc.reason

    async def go() -> dict[str, object]:
        await cache.warm()                                                    # connections up front (a busy box)
        out: dict[str, object] = {"warm": await reason(None)}
        out["tiny"] = {await reason(1e-6) for _ in range(50)}               # a client's own 1 µs deadline
        out["after_tiny"] = cache.breaker_state
        _stop(pid_file, signal.SIGSTOP)
        out["hung"] = [await reason(None) for _ in range(4)]
        out["after_hung"] = cache.breaker_state
        await asyncio.sleep(0.35)
        probe = asyncio.ensure_future(cache.get_many(["k"], 5.0))          # the half-open probe ...
        await asyncio.sleep(0.02)
        probe.cancel()                                                        # ... cancelled by its request
        await asyncio.gather(probe, return_exceptions=True)
        _stop(pid_file, signal.SIGCONT)
        out["after_cancel"] = await reason(None)                              # the next call may probe: closes
        out["closed"] = cache.breaker_state
        await cache.close()
        return out

    try:
        out = asyncio.run(go())
    finally:
        os.killpg(int(pid_file.read_text()), signal.SIGCONT)
        stop_group(pid_file, "test redis (breaker)")
    assert out["warm"] == "ok"
    assert out["tiny"] <= {"deadline", "ok"} and out["after_tiny"] == "closed", out
    assert out["hung"] == ["timeout", "timeout", "timeout", "breaker_open"] and out["after_hung"] == "open"
    assert out["after_cancel"] == "ok" and out["closed"] == "closed", out


def test_a_burst_of_batches_waits_for_a_write_connection_and_a_failing_read_path_never_refuses_events(
        redis_server: str, redis_client) -> None:
    """Two write connections, 40 batches at once: each waits for a connection within the write
    budget (not the read path's 5 ms pool wait) and all are stored. Reads that keep timing out
    open the read breaker only: events still land."""
    async def go() -> tuple[list[bool], str, str, bool]:
        engine = _engine(redis_server, write_connections=2, write_timeout_s=1.0, pool_timeout_s=0.001,
                         breaker_failures=3)
        await engine.store.append_events("t", "warm", ["{}"], None, 60, 5, 1000, 60)
        burst = await asyncio.gather(*(engine.add_events(_req(f"burst-{i}", 3), "pool") for i in range(40)))
        for _ in range(3):   # the read path's own faults: a server error on every read
            try:
                await engine.store._run(lambda r: r.execute_command("NO-SUCH-COMMAND"), None)
            except StoreUnavailable:
                pass
        read_state = engine.store.breaker_state
        after = await engine.add_events(_req("after", 2), "pool")
        await engine.store.close()
        return [r.stored for r in burst], read_state, engine.store.write_breaker.state, after.stored

    stored, read_state, write_state, after = asyncio.run(go())
    assert stored == [True] * 40
    assert redis_client.xlen(keys.events_stream_key("pool")) == 40 * 3 + 2
    assert (read_state, write_state, after) == ("open", "closed", True)
