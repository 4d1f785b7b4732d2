"""Exact validation ranks of weighted hybrids of any number of parts, without re-scoring.

``CandidateTable.build`` scores every part once over the validation prefixes and keeps, per
row, each part's value on a candidate set: the union of every part's top ``k`` items and the
target. ``ranks(weights, temps)`` then gives the conservative rank of each target under
``HybridModel``'s mix ``sum_p w_p * dist_p`` (models.session_rec.hybrid.as_distribution),
exactly for every rank up to ``cap``:

* an item outside part p's top k has ``dist_p <= kth_p`` (the k-th value), so an item outside
  the candidate set mixes to at most ``B = sum_p w_p * kth_p`` (float rounding is monotone);
  if the target's mix is above B only candidates can outrank it and the count over the
  candidates (whose values are all stored exactly) is its rank;
* otherwise, if more than ``cap`` candidates already reach the target's mix, the rank is above
  ``cap`` (a miss at every cutoff <= cap; it is returned as n_items + 1); the remaining rows
  (rare: the target is weak in every part yet few candidates beat it) are returned for a
  full-catalogue rank (``full_ranks``).

A repeat part (models.session_rec.repeat) needs no special case: its top ``k`` holds the prefix
items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.session_rec.base import SessionModel
from models.session_rec.config import NEURAL_PARTS

logger = logging.getLogger(__name__)

TEMPERATURES: tuple[float, ...] = (1.0, 0.5, 0.3, 0.2, 0.1)


def _logsumexp_rows(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    m = z.max(axis=1)
    out: np.ndarray = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return out


@dataclass
class CandidateTable:
    """Per validation row: candidate items and each part's value on them.

    ``values[p]``: ``(rows, C)`` - a kNN part's sum-normalised score, a neural part's raw logit.
    ``kth[p]``: ``(rows,)`` the part's k-th largest value. ``lse[p]``: ``(rows, len(temperatures))``
    logsumexp of the neural part's logits / T (None for kNN parts). ``first``: ``(rows, C)``
    marks the first copy of each candidate (duplicates and padding are False). ``target_col``:
    the candidate column of the target (-1: target outside the catalogue).
    """

    part_types: list[str]
    cand: np.ndarray
    first: np.ndarray
    target_col: np.ndarray
    values: list[np.ndarray]
    kth: list[np.ndarray]
    lse: list[np.ndarray | None]
    temperatures: tuple[float, ...]
    n_items: int
    k: int

    @classmethod
    def build(cls, parts: Sequence[SessionModel], prefixes: Sequence[np.ndarray], targets: np.ndarray,
              k: int = 100, batch_size: int = 128, temperatures: Sequence[float] = TEMPERATURES,
              progress: Callable[[int, int], None] | None = None) -> CandidateTable:
        n_items = parts[0].n_items
        k = min(k, n_items)
        targets = np.asarray(targets, dtype=np.int64)
        n_rows, n_parts = len(prefixes), len(parts)
        width = n_parts * k + 1
        cand = np.zeros((n_rows, width), dtype=np.int64)
        values = [np.zeros((n_rows, width), dtype=np.float32) for _ in parts]
        kth = [np.zeros(n_rows, dtype=np.float32) for _ in parts]
        neural = [p.model_type in NEURAL_PARTS for p in parts]
        lse = [np.zeros((n_rows, len(temperatures)), dtype=np.float64) if nn else None for nn in neural]
        for start in range(0, n_rows, batch_size):
            stop = min(n_rows, start + batch_size)
            batch = [np.asarray(p, dtype=np.int64) for p in prefixes[start:stop]]
            dists = []
            for i, part in enumerate(parts):
                s = np.asarray(part.score(batch), dtype=np.float64)
                if neural[i]:
                    for j, t in enumerate(temperatures):
                        lse[i][start:stop, j] = _logsumexp_rows(s, t)  # type: ignore[index]
                else:
                    s = np.maximum(s, 0.0)
                    s = s / np.maximum(s.sum(axis=1, keepdims=True), 1e-30)
                dists.append(s)
            cols = []
            for i, d in enumerate(dists):
                top = np.argpartition(-d, k - 1, axis=1)[:, :k]
                cols.append(top)
                kth[i][start:stop] = np.take_along_axis(d, top, axis=1).min(axis=1)
            block = np.concatenate(cols + [targets[start:stop, None]], axis=1)
            cand[start:stop] = np.maximum(block, 0)
            rows = np.arange(stop - start)[:, None]
            for i, d in enumerate(dists):
                values[i][start:stop] = d[rows, cand[start:stop]]
            if progress is not None:
                progress(stop, n_rows)
        # first copy of each candidate in each row; an unknown target (-1) is no candidate
        valid = np.ones(cand.shape, dtype=bool)
        valid[:, -1] = targets >= 0
        order = np.argsort(np.where(valid, cand, -1), axis=1, kind="stable")
        sorted_c = np.take_along_axis(np.where(valid, cand, -1), order, axis=1)
        first_sorted = np.ones(cand.shape, dtype=bool)
        first_sorted[:, 1:] = sorted_c[:, 1:] != sorted_c[:, :-1]
        first_sorted &= sorted_c >= 0
        first = np.zeros(cand.shape, dtype=bool)
        np.put_along_axis(first, order, first_sorted, axis=1)
        target_col = np.where(targets >= 0, width - 1, -1)
        return cls([p.model_type for p in parts], cand, first, target_col, values, kth, lse,
                   tuple(temperatures), n_items, k)

    @property
    def n_rows(self) -> int:
        return len(self.cand)

    def dist(self, part: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(values on the candidates, k-th value) of one part as a distribution at ``temperature``."""
        lse = self.lse[part]
        if lse is None:
            if temperature != 1.0:
                raise ValueError(f"a temperature applies to neural parts only, not {self.part_types[part]!r}")
            return self.values[part], self.kth[part]
        j = self.temperatures.index(temperature)
        v = np.exp(self.values[part] / temperature - lse[:, j:j + 1])
        return v, np.exp(self.kth[part] / temperature - lse[:, j])

    def ranks(self, weights: Sequence[float], temperatures: Sequence[float] | None = None,
              cap: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """(rank per row, rows that need a full-catalogue rank). Ranks above ``cap`` are n_items + 1."""
        temps = list(temperatures) if temperatures is not None else [1.0] * len(weights)
        mix = np.zeros(self.cand.shape, dtype=np.float64)
        bound = np.zeros(self.n_rows, dtype=np.float64)
        for i, (w, t) in enumerate(zip(weights, temps, strict=True)):
            if w:
                v, kth = self.dist(i, t)
                mix += w * v
                bound += w * kth
        mix = mix.astype(np.float32)  # HybridModel.score returns float32: ties as it ranks them
        bound32 = bound.astype(np.float32)
        ok = self.target_col >= 0
        mix_t = mix[:, -1]
        count = ((mix >= mix_t[:, None]) & self.first).sum(axis=1).astype(np.float64)
        ranks = np.full(self.n_rows, float(self.n_items + 1))
        exact = ok & ((mix_t > bound32) | (self.k >= self.n_items))  # k = n_items: every item is a candidate
        ranks[exact] = count[exact]
        ranks[ranks > cap] = self.n_items + 1
        need_full = np.nonzero(ok & ~exact & (count <= cap))[0]
        return ranks, need_full


def full_ranks(parts: Sequence[SessionModel], weights: Sequence[float], temperatures: Sequence[float] | None,
               prefixes: Sequence[np.ndarray], targets: np.ndarray, batch_size: int = 512, cap: int = 20) -> np.ndarray:
    """Conservative full-catalogue ranks under HybridModel's mix (for the rows ``ranks`` could not settle);
    ranks above ``cap`` are n_items + 1, as ``CandidateTable.ranks`` returns them."""
    from models.evaluation.ranking import ranks_from_scores
    from models.session_rec.hybrid import HybridModel

    model = HybridModel(parts, weights, temperatures)
    out = np.zeros(len(prefixes))
    for start in range(0, len(prefixes), batch_size):
        batch = list(prefixes[start:start + batch_size])
        out[start:start + len(batch)] = ranks_from_scores(model.score(batch), targets[start:start + len(batch)])
    out[out > cap] = model.n_items + 1
    return out
