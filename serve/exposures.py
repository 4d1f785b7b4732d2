"""Exposure logging off the hot path: a bounded in-replica buffer flushed to Redis Streams.

A response that shows items calls ``ExposureLog.record``: one tuple appended to a deque (about
a microsecond; no I/O, no encoding, never raises). A background task takes up to ``batch``
records every ``flush_interval_s`` (50 ms), encodes them (``store.explog.encode_batch``: field
names and tenant once per flush) and writes each tenant's share as ONE stream entry (one
``XADD ... MAXLEN ~ stream_max_len`` per tenant and flush, not one per exposure) on its own connection (``write_timeout_s``), so the
request path's Redis pool and deadlines never see it.

**When Redis is down** the records stay in the buffer and the flush retries with backoff (up to
``max_backoff_s``); they are written, in order, when Redis answers again. Exposures are side
effects of reads, so unlike ``/v1/events`` (stored or 503) a read is never refused for them:
the buffer is bounded by ``max_buffer`` records, sized for minutes of outage (150,000 records,
about 60 MB at most, is 5 minutes at 500 requests/s on one replica). Only when it is full is a
new record dropped, and never silently: ``tandem_exposures_dropped_total`` counts it
(``tandem_exposure_write_errors_total`` counts the failed flushes before that; the
replica's metrics read ``state()`` on each health check: no metric call per request), the
replica logs an error (at most once every 10 s, with the count), ``/v1/health`` shows
``exposures.dropped`` and ``degraded``, and the drain's KPI reader finds the gap in the
writer's ``seq`` and reports the records as lost. A replica that is stopped flushes what it
holds first (``close``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from store import explog, keys

logger = logging.getLogger(__name__)


class ExposureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_buffer: int = Field(150_000, ge=100, description="records held while Redis is down (then dropped, counted)")
    flush_interval_s: float = Field(0.05, gt=0, le=10)
    batch: int = Field(500, ge=1, le=100_000, description="records per flush at most (a flush runs on the event loop)")
    stream_max_len: int = Field(50_000, ge=100, description="XADD MAXLEN ~ per tenant stream, in entries "
                                "(one per flush: up to `batch` records each)")
    write_timeout_s: float = Field(1.0, gt=0, le=30)
    max_backoff_s: float = Field(2.0, gt=0, le=60)


class ExposureLog:
    """One replica's exposure writer (see the module docstring)."""

    def __init__(self, redis_url: str, config: ExposureConfig | None = None, client: Any = None):
        self.config = config or ExposureConfig.model_validate({})
        self.redis_url = redis_url
        self.writer = uuid.uuid4().hex[:12]
        self._client = client
        self._buf: deque[tuple[Any, ...]] = deque()
        self._seq: dict[str, int] = {}
        self.written = 0
        self.dropped = 0
        self.write_errors = 0  # flushes Redis refused or timed out (the records stayed buffered)
        self.last_error: str | None = None
        self._dropped_logged = 0
        self._next_drop_log = 0.0
        self._task: asyncio.Task[None] | None = None
        self._backoff = 0.0

    # -- request path ------------------------------------------------------------------------
    def record(self, tenant: str, experiment: str, variant: str, session_id: str, visitor_id: str | None,
               items: tuple[str, ...], model_version: str | None, source: str, endpoint: str) -> bool:
        """Queue one exposure; False (and counted) only when the buffer is full."""
        seq = self._seq.get(tenant, 0)
        self._seq[tenant] = seq + 1  # taken even when dropped: the gap shows the loss downstream
        if len(self._buf) >= self.config.max_buffer:
            self._drop()
            return False
        self._buf.append((tenant, experiment, variant, session_id, visitor_id, items, model_version, source,
                          endpoint, int(time.time() * 1000), seq))
        if self._task is None:
            self.start()
        return True

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now >= self._next_drop_log:
            logger.error("exposure buffer full (%d records, Redis unreachable: %s): %d exposure(s) dropped so far",
                         len(self._buf), self.last_error, self.dropped)
            self._next_drop_log = now + 10.0

    # -- background --------------------------------------------------------------------------
    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next async caller starts it
            return
        self._task = loop.create_task(self._flush_forever())

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.redis_url, socket_timeout=self.config.write_timeout_s,
                                                   socket_connect_timeout=self.config.write_timeout_s,
                                                   max_connections=2)
        return self._client

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval_s + self._backoff)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - never let the writer die; the records stay queued
                logger.exception("exposure flush failed unexpectedly")

    async def flush(self) -> int:
        """Write up to ``batch`` queued records; they leave the buffer only once Redis took them."""
        n = min(len(self._buf), self.config.batch)
        if n == 0:
            return 0
        by_tenant: dict[str, list[tuple[Any, ...]]] = {}
        for i in range(n):
            r = self._buf[i]
            by_tenant.setdefault(r[0], []).append(r[1:])  # explog.BATCH_FIELDS order
        cfg = self.config
        try:
            pipe = self._redis().pipeline(transaction=False)
            for tenant, rows in by_tenant.items():
                pipe.xadd(keys.log_stream("exposures", tenant),
                          {explog.FIELD: explog.encode_batch(tenant, self.writer, rows)},
                          maxlen=cfg.stream_max_len, approximate=True)
            async with asyncio.timeout(cfg.write_timeout_s):
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis down or slow: keep the records, back off, retry
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self.write_errors += 1
            self._backoff = min(cfg.max_backoff_s, max(0.05, self._backoff * 2))
            return 0
        for _ in range(n):
            self._buf.popleft()
        self.written += n
        if self._backoff:
            logger.info("exposure log writes again; %d record(s) still buffered", len(self._buf))
        self._backoff = 0.0
        self.last_error = None
        return n

    async def close(self, timeout_s: float = 2.0) -> None:
        """Flush what is buffered (a replica stopping), then stop the background task."""
        deadline = time.monotonic() + timeout_s
        while self._buf and time.monotonic() < deadline:
            if not await self.flush():
                break
        if self._task is not None:
            self._task.cancel()
        if self._buf:
            logger.error("replica stopping with %d exposure(s) not written (Redis: %s)", len(self._buf),
                         self.last_error)

    def state(self) -> dict[str, Any]:
        return {"buffered": len(self._buf), "dropped": self.dropped, "written": self.written,
                "write_errors": self.write_errors, "error": self.last_error}
