"""Custom Serve metrics: latency by endpoint, cache lookups, fallbacks, breaker state.

``ServeMetrics`` is created inside a replica (never at import); ``NullMetrics``
has the same methods and does nothing, for tests and the bare benchmark peer.
Cache hit ratio = ``tandem_cache_lookups_total{result="hit"}`` / all lookups.

The two counters are summed in process and added to Ray's counters at most once per
``flush_interval_s`` (and on every Serve health check), so a request pays one metric
record (its latency) instead of three: each record costs ~15 µs of a replica's CPU.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 1000]


class NullMetrics:
    def latency(self, endpoint: str, ms: float, status: int) -> None: ...

    def cache_lookup(self, table: str, result: str) -> None: ...

    def fallback(self, endpoint: str, reason: str) -> None: ...

    def breaker(self, code: int) -> None: ...

    def model_swap(self, ok: bool) -> None: ...

    def exposures(self, written: int, dropped: int, buffered: int, write_errors: int) -> None: ...

    def experiment(self, tenant: str, experiment: str, rolled_back: bool) -> None: ...

    def pointer_missing(self, table: str, tenant: str, missing: bool) -> None: ...

    def flush(self) -> None: ...


class ServeMetrics(NullMetrics):
    """Metrics exported through Ray's Prometheus endpoint (``ray.serve.metrics``)."""

    def __init__(self, flush_interval_s: float = 1.0) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        self._latency = Histogram("tandem_request_latency_ms", description="Handler latency by endpoint (ms)",
                                  boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("endpoint", "status"))  # type: ignore[arg-type]
        self._lookups = Counter("tandem_cache_lookups_total", description="Precomputed-table lookups by result",
                                tag_keys=("table", "result"))  # type: ignore[arg-type]
        self._fallbacks = Counter("tandem_fallbacks_total", description="Requests not served by their first "
                                  "choice, by reason", tag_keys=("endpoint", "reason"))  # type: ignore[arg-type]
        self._breaker = Gauge("tandem_redis_breaker_state", description="0 closed, 1 half-open, 2 open")
        self._swaps = Counter("tandem_model_swaps_total", description="Model hot swaps by result",
                              tag_keys=("result",))
        self._swap_failed = Gauge("tandem_model_swap_failed", description="1 while the last model swap failed "
                                  "(the replica kept its previous models), else 0")
        self._exp_written = Counter("tandem_exposures_written_total", description="Exposure records written to "
                                    "the experiment log streams")
        self._exp_dropped = Counter("tandem_exposures_dropped_total", description="Exposure records dropped: the "
                                    "replica's buffer was full (Redis unreachable for minutes)")
        self._exp_write_errors = Counter("tandem_exposure_write_errors_total", description="Exposure flushes "
                                         "Redis refused or timed out (the records stayed buffered, retried)")
        self._exp_buffered = Gauge("tandem_exposures_buffered", description="Exposure records waiting for Redis")
        self._exp_rolled_back = Gauge("tandem_experiment_rolled_back", description="1 while the tenant's experiment "
                                      "is rolled back to control (guardrail or kill switch), 0 while it runs",
                                      tag_keys=("tenant", "experiment"))  # type: ignore[arg-type]
        self._exp_totals = (0, 0, 0)
        self._pointer_missing = Gauge("tandem_pointer_missing", description="1 when a precomputed table's pointer "
                                      "or its namespace is missing in Redis", tag_keys=("table", "tenant"))  # type: ignore[arg-type]
        self._breaker_code: int | None = None
        self._swap_failed_value: float | None = None
        self._flush_interval_s = flush_interval_s
        self._next_flush = time.monotonic() + flush_interval_s
        self._pending_lookups: dict[tuple[str, str], int] = {}
        self._pending_fallbacks: dict[tuple[str, str], int] = {}

    def latency(self, endpoint: str, ms: float, status: int) -> None:
        self._latency.observe(ms, tags={"endpoint": endpoint, "status": str(status)})

    def cache_lookup(self, table: str, result: str) -> None:
        self._count(self._pending_lookups, (table, result))

    def fallback(self, endpoint: str, reason: str) -> None:
        self._count(self._pending_fallbacks, (endpoint, reason))

    def _count(self, pending: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
        pending[key] = pending.get(key, 0) + 1
        if time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Add the counts summed since the last flush to Ray's counters, and set the gauges again:
        Ray 2.60 exports a gauge only for about 20 s after its last ``set`` (health checks call
        this every few seconds, so a replica's breaker state never drops out of Prometheus)."""
        self._next_flush = time.monotonic() + self._flush_interval_s
        if self._breaker_code is not None:
            self._breaker.set(self._breaker_code)
        if self._swap_failed_value is not None:
            self._swap_failed.set(self._swap_failed_value)
        for counter, names, pending in ((self._lookups, ("table", "result"), self._pending_lookups),
                                        (self._fallbacks, ("endpoint", "reason"), self._pending_fallbacks)):
            for key, n in pending.items():
                counter.inc(n, tags=dict(zip(names, key, strict=True)))
            pending.clear()

    def model_swap(self, ok: bool) -> None:
        self._swaps.inc(1, tags={"result": "ok" if ok else "failed"})
        self._swap_failed_value = 0.0 if ok else 1.0
        self._swap_failed.set(self._swap_failed_value)

    def exposures(self, written: int, dropped: int, buffered: int, write_errors: int) -> None:
        """The exposure writer's running totals (read on each health check)."""
        w0, d0, e0 = self._exp_totals
        if written > w0:
            self._exp_written.inc(written - w0)
        if dropped > d0:
            self._exp_dropped.inc(dropped - d0)
        if write_errors > e0:
            self._exp_write_errors.inc(write_errors - e0)
        self._exp_totals = (written, dropped, write_errors)
        self._exp_buffered.set(buffered)

    def experiment(self, tenant: str, experiment: str, rolled_back: bool) -> None:
        self._exp_rolled_back.set(1 if rolled_back else 0, tags={"tenant": tenant, "experiment": experiment})

    def breaker(self, code: int) -> None:
        # called on every request: set on a change here, and again by every flush (see ``flush``)
        if code != self._breaker_code:
            self._breaker.set(code)
            self._breaker_code = code

    def pointer_missing(self, table: str, tenant: str, missing: bool) -> None:
        self._pointer_missing.set(1.0 if missing else 0.0, tags={"table": table, "tenant": tenant})
