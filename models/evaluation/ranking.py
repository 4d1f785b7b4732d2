"""Next-item full-ranking metrics: Recall@k and MRR@k over the whole catalogue.

Tie rule (explicit): ``conservative`` (the official GRU4Rec default) ranks every item
whose score equals the target's above the target, so rank = #items with score >= target.
``standard`` ranks ties below (rank = #items with score > target + 1); ``median`` splits them.
A target with a non-finite score (e.g. masked) gets rank = n_items + 1, a miss at any cutoff.

Protocols:
  (a) session TSV (GRU4Rec / session-rec): test events whose item is not in the training
      catalogue are dropped first (as the official ``iter_data`` does), then every next
      position of every test session is a (prefix, target) pair.
  (b) prefix -> target (SR-GNN split): one pair per line; unknown prefix items are dropped,
      an unknown target counts as a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

CUTOFFS: tuple[int, ...] = (1, 5, 10, 20)
TIE_RULES = ("conservative", "standard", "median")


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray, tie: str = "conservative") -> np.ndarray:
    """1-based rank of each row's target among all columns of ``scores``."""
    if tie not in TIE_RULES:
        raise ValueError(f"tie rule {tie!r} unknown; expected one of {TIE_RULES}")
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(targets):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} do not match")
    n = scores.shape[1]
    valid = (targets >= 0) & (targets < n)
    t = np.full(len(targets), -np.inf, dtype=scores.dtype)
    t[valid] = scores[np.nonzero(valid)[0], targets[valid]]
    greater = (scores > t[:, None]).sum(axis=1)
    if tie == "standard":
        ranks = greater + 1.0
    else:
        equal = (scores == t[:, None]).sum(axis=1)
        ranks = (greater + equal).astype(np.float64) if tie == "conservative" else greater + 0.5 * (equal - 1) + 1.0
    ranks = np.asarray(ranks, dtype=np.float64)
    ranks[~valid | ~np.isfinite(t)] = np.inf  # a miss at every cutoff, even one above the catalogue size
    return ranks


class RankMetrics:
    """Accumulates ranks and reports recall@k and mrr@k."""

    def __init__(self, cutoffs: Sequence[int] = CUTOFFS):
        self.cutoffs = tuple(cutoffs)
        self._ranks: list[np.ndarray] = []

    def add_ranks(self, ranks: np.ndarray) -> None:
        self._ranks.append(np.asarray(ranks, dtype=np.float64))

    def add(self, scores: np.ndarray, targets: np.ndarray, tie: str = "conservative") -> None:
        self.add_ranks(ranks_from_scores(scores, targets, tie))

    @property
    def n(self) -> int:
        return int(sum(len(r) for r in self._ranks))

    def result(self) -> dict[str, float]:
        return ranking_metrics(np.concatenate(self._ranks) if self._ranks else np.zeros(0), self.cutoffs)


def ranking_metrics(ranks: np.ndarray, cutoffs: Sequence[int] = CUTOFFS) -> dict[str, float]:
    """``n``, ``recall@k`` and ``mrr@k`` of 1-based ranks (0.0 for no ranks)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {"n": float(len(ranks))}
    for c in cutoffs:
        hit = ranks <= c
        out[f"recall@{c}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"mrr@{c}"] = float((hit / ranks).mean()) if len(ranks) else 0.0
    return out


def next_item_pairs(sessions: Iterable[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Protocol (a): every next position of every session -> (prefix, target)."""
    prefixes: list[np.ndarray] = []
    targets: list[int] = []
    for s in sessions:
        for pos in range(1, len(s)):
            prefixes.append(s[:pos])
            targets.append(int(s[pos]))
    return prefixes, np.asarray(targets, dtype=np.int64)


def evaluate(score_fn: Callable[[list[np.ndarray]], np.ndarray], prefixes: Sequence[np.ndarray],
             targets: np.ndarray, tie: str = "conservative", cutoffs: Sequence[int] = CUTOFFS,
             batch_size: int = 512, exclude_seen: bool = False) -> dict[str, float]:
    """Score prefixes in batches and rank each target over the full catalogue.

    ``targets`` may hold -1 for a target outside the catalogue (always a miss). With
    ``exclude_seen`` the prefix items are masked out before ranking (off for protocol (a),
    where repeated clicks are legitimate targets).
    """
    return ranking_metrics(rank_targets(score_fn, prefixes, targets, tie, batch_size, exclude_seen), cutoffs)


def rank_targets(score_fn: Callable[[list[np.ndarray]], np.ndarray], prefixes: Sequence[np.ndarray],
                 targets: np.ndarray, tie: str = "conservative", batch_size: int = 512,
                 exclude_seen: bool = False) -> np.ndarray:
    """The full-catalogue rank of every target (as ``evaluate``), for metrics on slices of the pairs."""
    ranks: list[np.ndarray] = []
    for start in range(0, len(prefixes), batch_size):
        batch = list(prefixes[start:start + batch_size])
        scores = np.array(score_fn(batch), dtype=np.float32)
        scores[~np.isfinite(scores)] = -np.inf
        if exclude_seen:
            for row, p in enumerate(batch):
                scores[row, p] = -np.inf
        ranks.append(ranks_from_scores(scores, targets[start:start + batch_size], tie))
    return np.concatenate(ranks) if ranks else np.zeros(0)
