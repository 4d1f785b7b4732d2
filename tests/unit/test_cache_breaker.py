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
