"""Pure building blocks of the cache tier: a circuit breaker and a TTL'd LRU.

Both take an injectable clock so their state machines are unit-tested without
sleeping. Neither does I/O.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_CODE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    """Skip a failing dependency and probe it again after ``reset_timeout_s``.

    ``closed``: calls pass; ``failure_threshold`` consecutive failures open it.
    ``open``: ``allow()`` is False until ``reset_timeout_s`` has passed, then one
    probe is let through (``half_open``). A probe success closes the breaker, a
    probe failure opens it again for another ``reset_timeout_s``. A probe that ends
    without a verdict (cancelled, or cut by its caller's own deadline) must ``release()``
    the half-open slot; one that never reports back is written off after
    ``reset_timeout_s``, so the breaker can never stay half-open for good.
    """

    def __init__(self, failure_threshold: int = 3, reset_timeout_s: float = 1.0, clock: Clock = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the dependency now."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and (not self._probe_in_flight
                                   or self._clock() - self._probe_started >= self.reset_timeout_s):
            self._state = HALF_OPEN
            self._probe_in_flight = True
            self._probe_started = self._clock()
            return True
        return False

    def release(self) -> None:
        """A call ended without telling whether the dependency works: free the probe slot, change nothing."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        if self._state != CLOSED:
            logger.info("circuit breaker closed: dependency answered again")
        self._state = CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._probe_in_flight = False
        if self._state == HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._state == CLOSED and self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        if self._state != OPEN:
            logger.warning("circuit breaker open: skipping the dependency for %.2fs", self.reset_timeout_s)
        self._state = OPEN
        self._opened_at = self._clock()


class LRU:
    """A bounded mapping with least-recently-used eviction and a per-entry TTL."""

    def __init__(self, maxsize: int = 10_000, ttl_s: float = 5.0, clock: Clock = time.monotonic):
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = maxsize
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any | None:
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: Any, ttl_s: float | None = None) -> None:
        if self.maxsize == 0:
            return
        self._data[key] = (self._clock() + (self.ttl_s if ttl_s is None else ttl_s), value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
