"""The refresh loop's own metrics, exported through Ray's Prometheus endpoint.

The loop is a Ray driver (``ray job submit``), so ``ray.util.metrics`` records go through
the node's metrics agent to the same ``/metrics`` endpoint that already exports Ray's and
Serve's metrics (``--metrics-export-port``): one scrape target, no extra exporter or text
file to keep in sync, and the series carry Ray's node labels. Ray prefixes the names with
``ray_`` (``ray_tandem_refresh_ticks_total``). A counter restarts from zero when a killed
loop restarts, which Prometheus' ``rate``/``increase`` handle as a reset.

``NullLoopMetrics`` keeps the same methods for runs without Ray (unit tests).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

TICK_BOUNDARIES_S = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600]

# name -> (kind, description, tag keys); the Grafana dashboard and its test read this table.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tandem_refresh_ticks_total": ("counter", "Refresh ticks by cadence and outcome", ("cadence", "outcome")),
    "tandem_refresh_tick_seconds": ("histogram", "Refresh tick duration (s)", ("cadence",)),
    "tandem_refresh_last_success_timestamp": ("gauge", "Unix time of the last successful tick", ("cadence",)),
    "tandem_promotion_decisions_total": ("counter", "Slow-tick promotion decisions", ("model", "decision", "gate")),
    "tandem_quarantined_events_total": ("counter", "Events quarantined by the feature job, by reason", ("reason",)),
    "tandem_redis_used_memory_bytes": ("gauge", "Redis used_memory after the tick", ()),
    "tandem_redis_maxmemory_bytes": ("gauge", "Redis maxmemory (0 = no cap)", ()),
    "tandem_gc_namespaces_deleted_total": ("counter", "Redis namespaces deleted by GC", ()),
    "tandem_pointers_republished_total": ("counter", "Missing pointers found and republished by a tick",
                                          ("table",)),
    "tandem_swap_seconds": ("gauge", "Seconds from a promotion to every replica serving it", ()),
}


class NullLoopMetrics:
    def register(self, defs: dict[str, tuple[str, str, tuple[str, ...]]]) -> None: ...

    def record(self, name: str, value: float = 1.0, **tags: str) -> None: ...


class LoopMetrics(NullLoopMetrics):
    """``ray.util.metrics`` objects for ``METRICS``, created in the driver (never at import).

    Ray 2.60 exports a gauge only for about 20 s after its last ``set``, while the loop may sleep
    for minutes between ticks: a daemon thread sets every gauge's last value again every
    ``refresh_s`` so the dashboard never shows a gap."""

    def __init__(self, refresh_s: float = 10.0) -> None:
        self._m: dict[str, Any] = {}
        self._kinds: dict[str, str] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        self._refresh_s = refresh_s
        self._refresher: threading.Thread | None = None
        self.register(METRICS)

    def _keep_gauges(self) -> None:
        while True:
            time.sleep(self._refresh_s)
            with self._lock:
                values = list(self._gauges.items())
            for (name, tags), value in values:
                try:
                    self._m[name].set(value, tags=dict(tags) or None)
                except Exception:  # noqa: BLE001 - a metric must never fail the loop
                    logger.debug("gauge %s could not be set again", name, exc_info=True)

    def register(self, defs: dict[str, tuple[str, str, tuple[str, ...]]]) -> None:
        """More metrics (a per-tick check's ``METRICS`` table), same shape as ``METRICS``."""
        from ray.util.metrics import Counter, Gauge, Histogram

        for name, (kind, desc, tags) in defs.items():
            if name in self._m:
                continue
            self._kinds[name] = kind
            if kind == "counter":
                self._m[name] = Counter(name, description=desc, tag_keys=tags)
            elif kind == "gauge":
                self._m[name] = Gauge(name, description=desc, tag_keys=tags)
            else:
                self._m[name] = Histogram(name, description=desc, boundaries=TICK_BOUNDARIES_S, tag_keys=tags)

    def record(self, name: str, value: float = 1.0, **tags: str) -> None:
        if name not in self._m:
            logger.warning("metric %s is not registered; not recorded", name)
            return
        kind = self._kinds[name]
        metric = self._m[name]
        try:
            if kind == "counter":
                if value > 0:
                    metric.inc(value, tags=tags or None)
            elif kind == "gauge":
                metric.set(value, tags=tags or None)
                with self._lock:
                    self._gauges[(name, tuple(sorted(tags.items())))] = float(value)
                if self._refresher is None:
                    self._refresher = threading.Thread(target=self._keep_gauges, name="tandem-gauges", daemon=True)
                    self._refresher.start()
            else:
                metric.observe(value, tags=tags or None)
        except Exception:  # noqa: BLE001 - a metric must never fail a tick
            logger.exception("metric %s could not be recorded", name)


def loop_metrics() -> NullLoopMetrics:
    try:
        import ray

        if ray.is_initialized():
            return LoopMetrics()
    except ImportError:
        pass
    return NullLoopMetrics()
