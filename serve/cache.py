"""The online store: async Redis behind a small interface, a breaker and an LRU tier.

``RedisCache`` is safe on a request path: a bounded blocking pool, per-call
timeouts (redis-py's defaults block for seconds on a dead or hung server), no
retries, and a circuit breaker that skips Redis while it fails and probes it
again by itself. Versioned entity keys are immutable, so their values are held
in an in-process LRU; pointer keys are held only briefly. Every failure raises
``CacheUnavailable`` with a short reason, which the fallback chain records.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serve.breaker import LRU, STATE_CODE, CircuitBreaker

logger = logging.getLogger(__name__)


class CacheConfig(BaseModel):
    """Client settings; every timeout is in seconds."""

    model_config = ConfigDict(extra="forbid")

    max_connections: int = Field(32, ge=1, le=1024)
    pool_timeout_s: float = Field(0.005, gt=0, le=5)
    call_timeout_s: float = Field(0.02, gt=0, le=5)
    connect_timeout_s: float = Field(0.25, gt=0, le=5)
    warm_connections: int = Field(4, ge=0, le=1024)
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(1.0, gt=0)
    lru_size: int = Field(50_000, ge=0)
    lru_ttl_s: float = Field(30.0, gt=0)
    pointer_ttl_s: float = Field(1.0, ge=0)


class CacheUnavailable(RuntimeError):
    """Redis was skipped or failed; ``reason`` is one of breaker_open, timeout, error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class RedisCache:
    """``get_many`` / ``set_many`` / ``delete`` / ``close`` plus session lists, all async."""

    def __init__(self, url: str, config: CacheConfig | None = None):
        self.url = url
        self.config = config or CacheConfig.model_validate({})
        self.breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s)
        self.lru = LRU(self.config.lru_size, self.config.lru_ttl_s)
        self._client: Any = None

    # -- client --------------------------------------------------------------
    def _redis(self) -> Any:
        """Created lazily, in the event loop that uses it (no connection at import or init)."""
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.config.max_connections, timeout=self.config.pool_timeout_s,
                socket_timeout=self.config.call_timeout_s, socket_connect_timeout=self.config.connect_timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0,
            )
            self._client = aioredis.Redis(connection_pool=pool)
        return self._client

    async def _run(self, coro_factory: Any, timeout_s: float | None, cap: bool = True) -> Any:
        if not self.breaker.allow():
            raise CacheUnavailable("breaker_open")
        budget = self.config.call_timeout_s if timeout_s is None else \
            (min(timeout_s, self.config.call_timeout_s) if cap else timeout_s)
        if budget <= 0:
            raise CacheUnavailable("deadline")
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the call in a new Task
            async with asyncio.timeout(budget):
                result = await coro_factory(self._redis())
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise CacheUnavailable("timeout") from exc
        except Exception as exc:  # noqa: BLE001 - any client error means "no cache", never a 5xx
            self.breaker.record_failure()
            raise CacheUnavailable("error", type(exc).__name__) from exc
        self.breaker.record_success()
        return result

    @property
    def breaker_state(self) -> str:
        return self.breaker.state

    @property
    def breaker_code(self) -> int:
        return STATE_CODE[self.breaker.state]

    # -- the small interface --------------------------------------------------
    async def get_many(self, keys: list[str], timeout_s: float | None = None) -> list[bytes | None]:
        if not keys:
            return []
        return list(await self._run(lambda r: r.mget(keys), timeout_s))

    async def set_many(self, mapping: dict[str, bytes | str], ttl_s: int | None = None,
                       timeout_s: float | None = None) -> None:
        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for key, value in mapping.items():
                pipe.set(key, value, ex=ttl_s)
            await pipe.execute()

        if mapping:
            await self._run(op, timeout_s)

    async def delete(self, keys: list[str], timeout_s: float | None = None) -> int:
        return int(await self._run(lambda r: r.delete(*keys), timeout_s)) if keys else 0

    async def ping(self, timeout_s: float = 0.25) -> bool:
        """Off the request path (health): its own timeout, not capped by ``call_timeout_s``."""
        return bool(await self._run(lambda r: r.ping(), timeout_s, cap=False))

    async def warm(self) -> int:
        """Open ``warm_connections`` pooled connections up front (generous timeout, off the request path)."""
        async def one() -> bool:
            try:
                return bool(await asyncio.wait_for(self._redis().ping(), timeout=2.0))
            except Exception:  # noqa: BLE001 - warming is best effort
                return False

        n = min(self.config.warm_connections, self.config.max_connections)
        ok = sum(await asyncio.gather(*(one() for _ in range(n))))
        logger.info("redis pool warmed: %d/%d connections", ok, n)
        return ok

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
                await client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken client must not raise
                logger.debug("error while closing the redis client", exc_info=True)

    # -- compound reads and session state -------------------------------------
    async def get_and_list(self, keys: list[str], list_key: str | None,
                           timeout_s: float | None = None) -> tuple[list[bytes | None], list[bytes]]:
        """``GET`` each key and ``LRANGE`` one list in a single round trip."""
        async def op(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            if list_key is not None:
                pipe.lrange(list_key, 0, -1)
            return list(await pipe.execute())

        if not keys and list_key is None:
            return [], []
        out = await self._run(op, timeout_s)
        if list_key is None:
            return out, []
        return out[:-1], list(out[-1] or [])

    async def append_list(self, key: str, values: list[str], ttl_s: int, max_len: int,
                          timeout_s: float | None = None) -> int:
        """Append to a list, keep its last ``max_len`` entries, refresh its TTL; returns its length."""
        async def op(r: Any) -> int:
            pipe = r.pipeline(transaction=True)
            pipe.rpush(key, *values)
            pipe.ltrim(key, -max_len, -1)
            pipe.expire(key, ttl_s)
            pipe.llen(key)
            res = await pipe.execute()
            return int(res[-1])

        return int(await self._run(op, timeout_s))

    # -- LRU-backed versioned reads -------------------------------------------
    def lru_get(self, key: str) -> Any | None:
        return self.lru.get(key)

    def lru_put(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        self.lru.put(key, value, ttl_s)

    def pointer_cached(self, key: str) -> str | None:
        return self.lru.get(("ptr", key))  # type: ignore[return-value]

    def remember_pointer(self, key: str, version: str | None) -> None:
        if version is not None and self.config.pointer_ttl_s > 0:
            self.lru.put(("ptr", key), version, self.config.pointer_ttl_s)
