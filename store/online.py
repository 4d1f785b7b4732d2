"""The online store for serving: async Redis behind a small interface, a breaker and an LRU tier.

``OnlineStore`` is safe on a request path: a bounded blocking pool, per-call
timeouts (redis-py's defaults block for seconds on a dead or hung server), no
retries, and a circuit breaker that skips Redis while it fails and probes it
again by itself. Versioned entity keys are immutable, so their values are held
in an in-process LRU; pointer keys are held only briefly.

The interface: ``get_many`` / ``set_many`` (TTL) / ``delete`` / ``close``, ``get_row`` (one
published table's row for an entity, plus the live session's events, in one call: the
pointer, LRU and get-and-list protocol), ``append_events`` (live events: stored or refused), ``ping`` /
``warm`` for health and start-up. The low-level calls raise ``StoreUnavailable`` with a
short reason; ``get_row`` reports it in ``Row.error`` instead, which the fallback chain records.
Key and value formats come from ``store.keys`` and ``store.codec``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from store import codec, keys
from store.breaker import CLOSED, LRU, STATE_CODE, CircuitBreaker

logger = logging.getLogger(__name__)


class OnlineStoreConfig(BaseModel):
    """Client settings; every timeout is in seconds."""

    model_config = ConfigDict(extra="forbid")

    max_connections: int = Field(32, ge=1, le=1024)
    pool_timeout_s: float = Field(0.005, gt=0, le=5)
    call_timeout_s: float = Field(0.02, gt=0, le=5)
    write_timeout_s: float = Field(0.25, gt=0, le=10, description="budget of one live-events write (its own "
                                   "connections: a slow write is better than a retry)")
    write_connections: int = Field(8, ge=1, le=1024)
    connect_timeout_s: float = Field(0.25, gt=0, le=5)
    warm_connections: int = Field(4, ge=0, le=1024)
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(1.0, gt=0)
    lru_size: int = Field(50_000, ge=0)
    lru_ttl_s: float = Field(30.0, gt=0)
    pointer_ttl_s: float = Field(1.0, ge=0)


# KEYS: session list, events stream, batch marker ("" for none)
# ARGV: session TTL s, session max events, stream max length, batch marker TTL s, session id, batch id
#       ("" for none), events...
APPEND_EVENTS_LUA = """
if KEYS[3] ~= "" and not redis.call("SET", KEYS[3], "1", "NX", "EX", ARGV[4]) then
  return {redis.call("LLEN", KEYS[1]), 1}
end
for i = 7, #ARGV do
  redis.call("RPUSH", KEYS[1], ARGV[i])
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[3], "*", "session_id", ARGV[5], "batch_id", ARGV[6],
             "event", ARGV[i])
end
redis.call("LTRIM", KEYS[1], -tonumber(ARGV[2]), -1)
redis.call("EXPIRE", KEYS[1], ARGV[1])
return {redis.call("LLEN", KEYS[1]), 0}
"""


class StoreUnavailable(RuntimeError):
    """Redis was skipped or failed; ``reason`` is one of breaker_open, timeout, error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_MISS = b"\x00miss"  # LRU marker for "this immutable versioned key does not exist"


@dataclass
class Row:
    """What ``get_row`` found: the decoded ``value`` (None: missing), the namespace ``version`` it
    came from (None: the table is not published), the live session's ``events``, and ``lookup``
    (hit, miss or error) with the ``error`` reason (``redis_<reason>``) when the store failed."""

    value: Any | None = None
    version: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    lookup: str = "miss"
    error: str | None = None


class OnlineStore:
    """The async store one serving replica reads published tables and live sessions through."""

    def __init__(self, url: str, config: OnlineStoreConfig | None = None):
        self.url = url
        self.config = config or OnlineStoreConfig.model_validate({})
        self.breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s)
        # live-event writes have their own breaker: a read that missed its 20 ms on a busy replica
        # says nothing about whether a 250 ms write can land, and must not turn events into 503s
        self.write_breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s)
        self.lru = LRU(self.config.lru_size, self.config.lru_ttl_s)
        self._client: Any = None
        self._write_client: Any = None
        self._append_script: Any = None

    # -- client --------------------------------------------------------------
    def _redis(self) -> Any:
        """Created lazily, in the event loop that uses it (no connection at import or init)."""
        if self._client is None:
            self._client = self._make_client(self.config.max_connections, self.config.call_timeout_s,
                                             self.config.pool_timeout_s)
        return self._client

    def _writer(self) -> Any:
        """The client for live-event writes: its own pool, with ``write_timeout_s`` socket timeouts.

        A write waits for a free connection within its own budget too (not the read path's
        ``pool_timeout_s``): a burst of event batches queues for a few milliseconds instead of
        being answered 503 because this replica's pool was busy for 5 ms. Half the budget, so a
        pool that stays full ends as ``pool`` (this replica is busy), not as a Redis timeout."""
        if self._write_client is None:
            self._write_client = self._make_client(self.config.write_connections, self.config.write_timeout_s,
                                                   self.config.write_timeout_s / 2)
        return self._write_client

    def _make_client(self, max_connections: int, socket_timeout_s: float, pool_timeout_s: float) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=max_connections, timeout=pool_timeout_s,
            socket_timeout=socket_timeout_s, socket_connect_timeout=self.config.connect_timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0,
        )
        return aioredis.Redis(connection_pool=pool)

    async def _run(self, coro_factory: Any, timeout_s: float | None, cap: bool = True, write: bool = False) -> Any:
        """Run one Redis call under the breaker. Only Redis's own faults count against it: an error
        from the server or the connection, or no answer within ``call_timeout_s``. A call cut
        short by its caller (a deadline tighter than ``call_timeout_s``, a cancelled request) or
        by this replica's own full pool says nothing about Redis and only frees the probe slot."""
        breaker = self.write_breaker if write else self.breaker
        probe = breaker.state != CLOSED
        if not breaker.allow():
            raise StoreUnavailable("breaker_open")
        budget = self.config.call_timeout_s if timeout_s is None else \
            (min(timeout_s, self.config.call_timeout_s) if cap else timeout_s)
        callers_deadline = cap and budget < self.config.call_timeout_s
        settled = False   # whether this call told the breaker something about Redis
        try:
            if budget <= 0:
                raise StoreUnavailable("deadline")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the call in a new Task
            async with asyncio.timeout(budget):
                result = await coro_factory(self._writer() if write else self._redis())
            breaker.record_success()
            settled = True
            return result
        except TimeoutError as exc:
            if callers_deadline:
                raise StoreUnavailable("deadline") from exc
            breaker.record_failure()
            settled = True
            raise StoreUnavailable("timeout") from exc
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - any client error means "no cache", never a 5xx
            if _pool_exhausted(exc):
                raise StoreUnavailable("pool", type(exc).__name__) from exc
            breaker.record_failure()
            settled = True
            raise StoreUnavailable("error", type(exc).__name__) from exc
        finally:
            if probe and not settled:   # cancelled, or cut by the caller: free the half-open slot
                breaker.release()

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
        for attr in ("_client", "_write_client"):
            client = getattr(self, attr)
            if client is None:
                continue
            setattr(self, attr, None)
            try:
                await client.aclose()
                await client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken client must not raise
                logger.debug("error while closing the redis client", exc_info=True)
        self._append_script = None

    # -- rows of published tables and live sessions ---------------------------
    async def get_row(self, table: str, tenant: str, entity: str, session_id: str | None = None,
                      timeout_s: float | None = None) -> Row:
        """``table``'s row for ``entity`` in the namespace the tenant's pointer names, plus the live
        events of ``session_id``: one round trip when the pointer is cached, two on a cold pointer.
        A versioned value (or its absence) is immutable, so it is served from the LRU once read."""
        end = None if timeout_s is None else time.monotonic() + timeout_s

        def left() -> float | None:  # each call gets what is left of the caller's budget
            return None if end is None else end - time.monotonic()

        ptr_key = keys.pointer_key(table, tenant)
        sess_key = keys.session_key(session_id, tenant) if session_id is not None else None
        value: Any | None = None
        live_raw: list[bytes] = []
        try:
            ns = self._pointer_cached(ptr_key)
            cached = self.lru.get(keys.entity_key(table, ns, entity, tenant)) if ns else None
            if ns is not None and cached is not None:
                if sess_key is not None:
                    _, live_raw = await self._get_and_list([], sess_key, left())
                value = cached
            else:
                lookup = [keys.entity_key(table, ns, entity, tenant)] if ns else [ptr_key]
                vals, live_raw = await self._get_and_list(lookup, sess_key, left())
                if ns is None:
                    ns = vals[0].decode() if vals[0] else None
                    self._remember_pointer(ptr_key, ns)
                    vals = (await self.get_many([keys.entity_key(table, ns, entity, tenant)], left())) \
                        if ns else [None]
                if ns is not None:
                    value = vals[0] if vals[0] is not None else _MISS
                    self.lru.put(keys.entity_key(table, ns, entity, tenant), value)
        except StoreUnavailable as exc:
            return Row(lookup="error", error=f"redis_{exc.reason}")
        live = [e for e in (codec.decode(r) for r in live_raw) if isinstance(e, dict)]
        if value is None or value == _MISS:
            return Row(version=ns, events=live, lookup="miss")
        return Row(value=codec.decode(value), version=ns, events=live, lookup="hit")

    async def append_events(self, tenant: str, session_id: str, events: list[str], batch_id: str | None,
                            ttl_s: int, max_len: int, stream_max_len: int, batch_ttl_s: int) -> tuple[int, bool]:
        """Store a batch of live events in one atomic script: append them to the session's list (its
        last ``max_len``, TTL refreshed) and to the tenant's event stream (``MAXLEN ~ stream_max_len``;
        fields ``session_id``, ``batch_id`` ("" for none) and ``event``, the encoded event).
        With a ``batch_id``, a batch already stored (within ``batch_ttl_s``) is not stored again.
        Returns (session length, duplicate); raises ``StoreUnavailable`` when nothing was stored
        for certain. The write has ``write_timeout_s`` on its own connections."""
        if self._append_script is None:
            self._append_script = self._writer().register_script(APPEND_EVENTS_LUA)
        script = self._append_script
        keys_ = [keys.session_key(session_id, tenant), keys.events_stream_key(tenant),
                 keys.batch_key(batch_id, tenant) if batch_id else ""]
        args = [ttl_s, max_len, stream_max_len, batch_ttl_s, session_id, batch_id or "", *events]
        length, duplicate = await self._run(lambda r: script(keys=keys_, args=args, client=r),
                                            self.config.write_timeout_s, cap=False, write=True)
        return int(length), bool(duplicate)

    async def _get_and_list(self, keys_: list[str], list_key: str | None,
                            timeout_s: float | None = None) -> tuple[list[bytes | None], list[bytes]]:
        """``GET`` each key and ``LRANGE`` one list in a single round trip."""
        async def op(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for key in keys_:
                pipe.get(key)
            if list_key is not None:
                pipe.lrange(list_key, 0, -1)
            return list(await pipe.execute())

        if not keys_ and list_key is None:
            return [], []
        out = await self._run(op, timeout_s)
        if list_key is None:
            return out, []
        return out[:-1], list(out[-1] or [])

    def _pointer_cached(self, key: str) -> str | None:
        value = self.lru.get(("ptr", key))
        return value if isinstance(value, str) else None

    def _remember_pointer(self, key: str, version: str | None) -> None:
        if version is not None and self.config.pointer_ttl_s > 0:
            self.lru.put(("ptr", key), version, self.config.pointer_ttl_s)


def _pool_exhausted(exc: BaseException) -> bool:
    """redis-py's BlockingConnectionPool had no free connection in time: this replica is busy, not Redis."""
    return type(exc).__name__ == "ConnectionError" and "No connection available" in str(exc)
