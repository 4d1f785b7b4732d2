"""Pure decisions of the fallback chain: deadlines, step order, popular filtering.

The chain is model -> precomputed -> popular. Which steps are tried, and in which
order, depends only on what the request and the live session carry and which
models are loaded, so it is decided here without I/O and unit-tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

MODEL, PRECOMPUTED, POPULAR = "model", "precomputed", "popular"


class Deadline:
    """A per-request time budget in milliseconds."""

    def __init__(self, budget_ms: float, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self.start = clock()
        self.budget_s = budget_ms / 1000.0

    def remaining_s(self) -> float:
        return self.budget_s - (self._clock() - self.start)

    def expired(self) -> bool:
        return self.remaining_s() <= 0

    def elapsed_ms(self) -> float:
        return (self._clock() - self.start) * 1000.0


def score_steps(has_events: bool, has_model: bool) -> list[str]:
    """Order of sources for ``/v1/score``.

    New evidence (request or live events) makes the model first, since a
    precomputed score does not know it; without new evidence the precomputed
    score is the answer. Popular (the prior) always ends the chain.
    """
    if has_events and has_model:
        return [MODEL, PRECOMPUTED, POPULAR]
    return [PRECOMPUTED, POPULAR]


def recommend_steps(has_items: bool, has_model: bool) -> list[str]:
    """Order of sources for ``/v1/recommend`` (same rule as ``score_steps``)."""
    if has_items and has_model:
        return [MODEL, PRECOMPUTED, POPULAR]
    return [PRECOMPUTED, POPULAR]


def policy_steps(steps: list[str], policy: str | None, model_pinned: bool) -> list[str]:
    """The chain under an A/B variant's policy: ``popular`` (the control) serves popular only;
    a variant that pins this endpoint's model skips the precomputed step (those rows are the
    champion's); ``model`` and no experiment keep the chain."""
    if policy == "popular":
        return [POPULAR]
    if model_pinned:
        return [s for s in steps if s != PRECOMPUTED]
    return steps


def skip_reason(step: str, has_events: bool, has_model: bool) -> str | None:
    """Why the model step was left out, for the response and metrics."""
    if step != MODEL:
        return None
    if not has_model:
        return "no_model"
    if not has_events:
        return "no_events"
    return None


def top_popular(popular: Sequence[tuple[str, float]], seen: Iterable[str], k: int,
                exclude_seen: bool = True) -> list[tuple[str, float]]:
    """The first ``k`` popular items, leaving out ``seen`` ones when asked."""
    skip = set(seen) if exclude_seen else set()
    out: list[tuple[str, float]] = []
    for item, score in popular:
        if item in skip:
            continue
        out.append((item, float(score)))
        if len(out) >= k:
            break
    return out


def filter_recs(recs: Sequence[tuple[str, float]], seen: Iterable[str], k: int,
                exclude_seen: bool = True) -> list[tuple[str, float]]:
    """Precomputed recommendations minus items seen since they were computed."""
    return top_popular(recs, seen, k, exclude_seen)


class LatencyEstimate:
    """A running estimate of a model's latency, to skip it when the deadline cannot fit it.

    Models run inline on the event loop (a thread hop costs more than a small model),
    so a call cannot be interrupted: the chain instead skips the model step when the
    remaining budget is below ``estimate_ms``, an exponentially weighted mean plus a
    margin that decays slowly from spikes.
    """

    def __init__(self, alpha: float = 0.2, initial_ms: float = 0.0, half_life_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.alpha = alpha
        self.mean_ms = initial_ms
        self.peak_ms = initial_ms
        self.half_life_s = half_life_s
        self._clock = clock
        self._seen = clock()

    def observe(self, ms: float) -> None:
        self.mean_ms = ms if self.mean_ms == 0 else (1 - self.alpha) * self.mean_ms + self.alpha * ms
        self.peak_ms = max(ms, 0.9 * self.peak_ms)
        self._seen = self._clock()

    @property
    def estimate_ms(self) -> float:
        # A skipped model is never observed, so the estimate decays with time since the last
        # observation: one slow call (a cold start, a GC pause) cannot shut the model out for good.
        decay = 0.5 ** ((self._clock() - self._seen) / self.half_life_s)
        result: float = max(self.mean_ms, 0.5 * self.peak_ms) * decay
        return result

    def fits(self, remaining_s: float) -> bool:
        return remaining_s * 1000.0 > self.estimate_ms
