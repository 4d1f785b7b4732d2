"""Circuit breaker state machine and the TTL'd LRU, with a fake clock."""

from __future__ import annotations

import pytest

from store.breaker import CLOSED, HALF_OPEN, LRU, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_threshold_and_skips_calls() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, reset_timeout_s=1.0, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == CLOSED
    assert b.allow()
    b.record_failure()
    assert b.state == OPEN
    assert not b.allow()


def test_breaker_success_resets_failure_count() -> None:
    b = CircuitBreaker(failure_threshold=2, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == CLOSED


def test_breaker_half_open_lets_one_probe_and_recovers() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    b.record_failure()
    assert not b.allow()
    clock.t += 1.01
    assert b.state == HALF_OPEN
    assert b.allow()          # the probe
    assert not b.allow()      # only one probe at a time
    b.record_success()
    assert b.state == CLOSED and b.allow()


def test_breaker_failed_probe_reopens_for_a_full_period() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    b.record_failure()
    clock.t += 1.5
    assert b.allow()
    b.record_failure()
    assert b.state == OPEN
    clock.t += 0.5
    assert not b.allow()
    clock.t += 0.6
    assert b.allow()


def test_breaker_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


def test_lru_evicts_least_recently_used() -> None:
    lru = LRU(maxsize=2, ttl_s=10, clock=Clock())
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1      # a is now most recent
    lru.put("c", 3)
    assert lru.get("b") is None
    assert lru.get("a") == 1 and lru.get("c") == 3
    assert len(lru) == 2


def test_lru_entries_expire_and_count_hits() -> None:
    clock = Clock()
    lru = LRU(maxsize=10, ttl_s=1.0, clock=clock)
    lru.put("k", "v")
    lru.put("short", "v", ttl_s=0.1)
    clock.t += 0.5
    assert lru.get("short") is None
    assert lru.get("k") == "v"
    clock.t += 0.6
    assert lru.get("k") is None
    assert (lru.hits, lru.misses) == (1, 2)


def test_lru_of_size_zero_stores_nothing() -> None:
    lru = LRU(maxsize=0)
    lru.put("a", 1)
    assert lru.get("a") is None


def test_a_probe_without_a_verdict_releases_half_open() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    b.record_failure()
    clock.t += 1.01
    assert b.allow()                 # the probe ...
    b.release()                      # ... was cancelled (or cut by its caller's deadline)
    assert b.state == HALF_OPEN
    assert b.allow()                 # the next call probes at once
    b.record_success()
    assert b.state == CLOSED


def test_a_probe_that_never_reports_back_is_written_off() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    b.record_failure()
    clock.t += 1.01
    assert b.allow()                 # a probe that is lost: no success, failure or release
    clock.t += 0.5
    assert not b.allow()
    clock.t += 0.6
    assert b.allow()                 # a new probe after reset_timeout_s
    b.record_failure()
    assert b.state == OPEN


class _SlowRedis:
    """Stands in for the redis client: ``mget`` waits ``delay`` s, or raises ``error``."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay, self.error = delay, error

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        import asyncio

        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [b"1"] * len(keys)


def _cache(clock: Clock, redis: _SlowRedis) -> object:
    from store.online import OnlineStore, OnlineStoreConfig

    cache = OnlineStore("redis://unused", OnlineStoreConfig(call_timeout_s=0.05, breaker_failures=2, breaker_reset_s=1.0))
    cache.breaker = CircuitBreaker(2, 1.0, clock=clock)
    cache._client = redis
    return cache


def test_only_redis_faults_feed_the_breaker() -> None:
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError

    from store.online import StoreUnavailable

    clock = Clock()

    async def reason(cache: object, timeout_s: float | None) -> str:
        try:
            await cache.get_many(["k"], timeout_s)  # type: ignore[attr-defined]
        except StoreUnavailable as exc:
            return exc.reason
        return "ok"

    # a client's own tiny deadline, many times over: never opens the shared breaker
    tight = _cache(clock, _SlowRedis(delay=0.02))
    assert asyncio.run(reason(tight, 0.001)) == "deadline"
    for _ in range(5):
        asyncio.run(reason(tight, 0.001))
    assert asyncio.run(reason(tight, 0.0)) == "deadline"
    assert tight.breaker.state == CLOSED  # type: ignore[attr-defined]
    # this replica's own full connection pool says nothing about Redis either
    busy = _cache(clock, _SlowRedis(error=RedisConnectionError("No connection available.")))
    assert [asyncio.run(reason(busy, None)) for _ in range(4)] == ["pool"] * 4
    assert busy.breaker.state == CLOSED  # type: ignore[attr-defined]
    # Redis not answering within call_timeout_s, or failing, does
    hung = _cache(clock, _SlowRedis(delay=1.0))
    assert [asyncio.run(reason(hung, None)) for _ in range(3)] == ["timeout", "timeout", "breaker_open"]
    down = _cache(clock, _SlowRedis(error=RedisConnectionError("Connection refused")))
    assert [asyncio.run(reason(down, 1.0)) for _ in range(3)] == ["error", "error", "breaker_open"]


def test_a_cancelled_probe_frees_half_open() -> None:
    import asyncio

    clock = Clock()
    cache = _cache(clock, _SlowRedis(delay=10.0))
    cache.breaker.record_failure()  # type: ignore[attr-defined]
    cache.breaker.record_failure()  # type: ignore[attr-defined]
    assert cache.breaker.state == OPEN  # type: ignore[attr-defined]
    clock.t += 1.01

    async def cancel_the_probe() -> None:
        probe = asyncio.ensure_future(cache.get_many(["k"], 5.0))  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
        assert not cache.breaker.allow()  # type: ignore[attr-defined]   # the probe holds the slot
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

    asyncio.run(cancel_the_probe())
    cache._client = _SlowRedis()  # type: ignore[attr-defined]   # Redis is back
    assert asyncio.run(cache.get_many(["k"])) == [b"1"]  # type: ignore[attr-defined]
    assert cache.breaker.state == CLOSED  # type: ignore[attr-defined]
