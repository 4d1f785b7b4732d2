"""Counters are summed in process and reach Ray's counters on flush (interval or health check)."""

from __future__ import annotations

from typing import Any

import pytest

from serve.metrics import ServeMetrics


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.calls.append((value, tags))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("observe", value, tags))


def test_counts_are_summed_then_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    m = ServeMetrics(flush_interval_s=3600)
    lookups, fallbacks, latency = Sink(), Sink(), Sink()
    m._lookups, m._fallbacks, m._latency = lookups, fallbacks, latency  # type: ignore[assignment]
    for result in ("hit", "hit", "miss"):
        m.cache_lookup("score", result)
    m.fallback("score", "no_precomputed")
    m.latency("score", 1.5, 200)
    assert lookups.calls == [] and fallbacks.calls == []          # not yet: one record per request saved
    assert latency.calls == [("observe", 1.5, {"endpoint": "score", "status": "200"})]
    m.flush()
    assert lookups.calls == [(2, {"table": "score", "result": "hit"}), (1, {"table": "score", "result": "miss"})]
    assert fallbacks.calls == [(1, {"endpoint": "score", "reason": "no_precomputed"})]
    m.flush()                                                     # nothing new, nothing recorded twice
    assert len(lookups.calls) == 2 and len(fallbacks.calls) == 1
    clock = [0.0]
    monkeypatch.setattr("serve.metrics.time.monotonic", lambda: clock[0])
    m = ServeMetrics(flush_interval_s=1.0)
    m._lookups = lookups  # type: ignore[assignment]
    m.cache_lookup("recs", "hit")
    clock[0] = 1.5                                                # past the interval: the next call flushes
    m.cache_lookup("recs", "hit")
    assert lookups.calls[-1] == (2, {"table": "recs", "result": "hit"})


def test_a_failed_model_swap_is_a_metric_until_the_next_good_one() -> None:
    class Gauge:
        def __init__(self) -> None:
            self.values: list[float] = []

        def set(self, value: float) -> None:
            self.values.append(value)

    m = ServeMetrics(flush_interval_s=3600)
    swaps, failed = Sink(), Gauge()
    m._swaps, m._swap_failed = swaps, failed  # type: ignore[assignment]
    m.model_swap(ok=False)
    m.model_swap(ok=True)
    assert swaps.calls == [(1, {"result": "failed"}), (1, {"result": "ok"})]
    assert failed.values == [1, 0]
