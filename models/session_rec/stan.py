"""V-STAN: sequence- and time-aware session kNN (Garg et al. 2019; Ludewig et al. 2021).

For a prefix of length n, a distinct item whose last occurrence is at 1-based position p
weighs ``w = exp((p - n) / lambda_spw)``. A candidate training session c (one sharing an
item; the ``sample_size`` most recent are kept) gets the cosine similarity
``sum(w over shared items) / (sqrt(sum(w**2)) * sqrt(|distinct items of c|))``, times
``exp(-(now - t_c) / lambda_snh)`` (neighbour recency). The ``k`` most similar are the
neighbours. Each distinct item i of neighbour c (at its last position q) receives
``sim * exp(-|q - q*| / lambda_inh) * exp((p* - n) / lambda_ipw) * (1 + idf_i * lambda_idf)``
where q* is the last position in c of any prefix item and p* the last prefix position of an
item that c holds. idf_i = log(#sessions / #events of i), as in session-rec's ``vstan``.

Sessions carry no timestamps in every format (Diginetica's session lines do not), so time
is the session's index in the time-ordered training data and ``now`` is one past the last
session; ``lambda_snh`` is therefore measured in sessions. Any lambda set to None is off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.session_rec.knn import _backoff, score_rows, session_item_matrix

logger = logging.getLogger(__name__)


def _decay(diff: np.ndarray, lam: float | None) -> np.ndarray | float:
    """exp(-diff / lam) for diff >= 0; 1 when the factor is off."""
    return 1.0 if lam is None else np.exp(-diff / lam)


class VSTAN:
    """Vectorised per-prefix V-STAN scorer over packed training sessions."""

    model_type: ClassVar[str] = "vstan"
    WEIGHTS = "vstan_sessions.npz"

    def __init__(self, items: np.ndarray, offsets: np.ndarray, n_items: int, k: int = 500, sample_size: int = 5000,
                 lambda_spw: float | None = 1.02, lambda_snh: float | None = None,
                 lambda_inh: float | None = 2.05, lambda_ipw: float | None = 1.02, lambda_idf: float | None = 5.0):
        self.items = np.asarray(items, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.n_items, self.n_sessions = n_items, len(self.offsets) - 1
        self.k, self.sample_size = k, sample_size
        self.lambda_spw, self.lambda_snh, self.lambda_inh = lambda_spw, lambda_snh, lambda_inh
        self.lambda_ipw, self.lambda_idf = lambda_ipw, lambda_idf
        sessions = [self.items[self.offsets[j]:self.offsets[j + 1]] for j in range(self.n_sessions)]
        s = session_item_matrix(sessions, n_items)
        self.s_t = s.T.tocsr()  # item -> sessions, ascending index = time order
        self.distinct = np.maximum(np.diff(s.indptr), 1).astype(np.float64)
        events = np.bincount(self.items, minlength=n_items).astype(np.float64)
        self.pop = events.astype(np.float32)
        idf = np.log(max(self.n_sessions, 1) / np.maximum(events, 1.0))
        self._item_factor = (1.0 + idf * (lambda_idf or 0.0)).astype(np.float64)
        self._back = _backoff(self.pop)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], n_items: int, **params: Any) -> VSTAN:
        lengths = np.fromiter((len(x) for x in sessions), dtype=np.int64, count=len(sessions))
        offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.concatenate(sessions).astype(np.int64) if len(sessions) else np.zeros(0, dtype=np.int64)
        return cls(items, offsets, n_items, **params)

    def _neighbours(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(distinct prefix items, neighbour sessions, their similarity, last shared prefix position)."""
        n = len(prefix)
        cur, rev_first = np.unique(prefix[::-1], return_index=True)
        last_pos = (n - rev_first).astype(np.float64)  # 1-based last position of each distinct item
        w = np.exp((last_pos - n) / self.lambda_spw) if self.lambda_spw is not None else np.ones(len(cur))
        indptr, indices = self.s_t.indptr, self.s_t.indices
        counts = indptr[cur + 1] - indptr[cur]
        if counts.sum() == 0:
            return None
        cand = np.concatenate([indices[indptr[i]:indptr[i + 1]] for i in cur])
        sess, inv = np.unique(cand, return_inverse=True)
        shared = np.bincount(inv, weights=np.repeat(w, counts), minlength=len(sess))
        p_star = np.zeros(len(sess))
        np.maximum.at(p_star, inv, np.repeat(last_pos, counts))
        if len(sess) > self.sample_size:  # the most recent candidates
            sess, shared, p_star = sess[-self.sample_size:], shared[-self.sample_size:], p_star[-self.sample_size:]
        sim = shared / (np.sqrt((w * w).sum()) * np.sqrt(self.distinct[sess]))
        sim = sim * _decay((self.n_sessions - sess).astype(np.float64), self.lambda_snh)
        if len(sess) > self.k:
            top = np.argpartition(-sim, self.k - 1)[:self.k]
            sess, sim, p_star = sess[top], sim[top], p_star[top]
        return cur, sess, sim, p_star

    def _score_one(self, prefix: np.ndarray, out: np.ndarray) -> None:
        found = self._neighbours(prefix)
        if found is None:
            return
        cur, sess, sim, p_star = found
        starts, ends = self.offsets[sess], self.offsets[sess + 1]
        lens = ends - starts
        flat = np.concatenate([self.items[a:b] for a, b in zip(starts, ends, strict=True)])
        seg = np.repeat(np.arange(len(sess)), lens)
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens) + 1  # 1-based within the session
        q_star = np.zeros(len(sess))
        hit = np.isin(flat, cur)
        np.maximum.at(q_star, seg[hit], pos[hit])
        # each (neighbour, item) once, at its last position
        key = seg * self.n_items + flat
        _, first_rev = np.unique(key[::-1], return_index=True)
        last = len(flat) - 1 - first_rev
        s_of, q = seg[last], pos[last].astype(np.float64)
        contrib = sim[s_of] * _decay(np.abs(q - q_star[s_of]), self.lambda_inh)
        if self.lambda_ipw is not None:
            contrib = contrib * np.exp((p_star[s_of] - len(prefix)) / self.lambda_ipw)
        scores = np.bincount(flat[last], weights=contrib, minlength=self.n_items) * self._item_factor
        out += scores.astype(np.float32)

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        return score_rows(self._score_one, prefixes, self.n_items, self._back)

    def config_dict(self) -> dict[str, Any]:
        return {"k": self.k, "sample_size": self.sample_size, "lambda_spw": self.lambda_spw,
                "lambda_snh": self.lambda_snh, "lambda_inh": self.lambda_inh, "lambda_ipw": self.lambda_ipw,
                "lambda_idf": self.lambda_idf}

    def save(self, directory: Path) -> None:
        np.savez_compressed(directory / self.WEIGHTS, items=self.items, offsets=self.offsets)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> VSTAN:
        with np.load(directory / cls.WEIGHTS) as z:
            items, offsets = z["items"], z["offsets"]
        if len(items) and int(items.max()) >= n_items:
            raise ValueError(f"{directory / cls.WEIGHTS}: item index {int(items.max())} >= n_items {n_items}")
        return cls(items, offsets, n_items, **config)

