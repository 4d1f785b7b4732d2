"""Nearest-neighbour baselines: item-kNN (co-occurrence) and V-SKNN (session-rec).

Both score with scipy sparse / numpy and add a tiny popularity back-off
(``1e-6 * normalised popularity``) so items without neighbour evidence are ordered by
popularity instead of all tying at zero.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

BACKOFF = 1e-6


def session_item_matrix(sessions: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary (n_sessions, n_items): 1 where the item occurs in the session."""
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    rows = np.repeat(np.arange(len(sessions)), lengths)
    cols = np.concatenate(sessions) if len(sessions) else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(sessions), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _backoff(pop: np.ndarray) -> np.ndarray:
    return (BACKOFF * pop / max(float(pop.max()), 1.0)).astype(np.float32)


def score_rows(score_one: Any, prefixes: Sequence[np.ndarray], n_items: int, back: np.ndarray) -> np.ndarray:
    """Session-kNN scores for a batch: ``score_one(prefix, row)`` adds into a zeroed row per
    non-empty prefix, then the popularity back-off ``back`` breaks ties and fills empty rows."""
    out = np.zeros((len(prefixes), n_items), dtype=np.float32)
    for row, prefix in enumerate(prefixes):
        if len(prefix):
            score_one(np.asarray(prefix, dtype=np.int64), out[row])
    result: np.ndarray = out + back
    return result


class ItemKNN:
    """session-rec ``iknn``: sim(i, j) = co(i, j) / (n_i^a * n_j^(1-a) + lambda); scores from the last item."""

    model_type: ClassVar[str] = "itemknn"
    WEIGHTS = "itemknn_sim.npz"

    def __init__(self, sim: sp.csr_matrix, pop: np.ndarray, alpha: float = 0.5, lmbd: float = 20.0,
                 n_neighbors: int = 100):
        self.sim = sim.tocsr()
        self.pop = np.asarray(pop, dtype=np.float32)
        self.n_items = self.sim.shape[0]
        self.alpha, self.lmbd, self.n_neighbors = alpha, lmbd, n_neighbors
        self._back = _backoff(self.pop)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], n_items: int, alpha: float = 0.5, lmbd: float = 20.0,
            n_neighbors: int = 100) -> ItemKNN:
        s = session_item_matrix(sessions, n_items)
        n = np.asarray(s.sum(axis=0)).ravel()
        co = (s.T @ s).tocoo()
        keep = co.row != co.col
        r, c, v = co.row[keep], co.col[keep], co.data[keep]
        v = v / (n[r] ** alpha * n[c] ** (1 - alpha) + lmbd)
        sim = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(n_items, n_items))
        sim = _prune_rows(sim, n_neighbors)
        return cls(sim, n, alpha, lmbd, n_neighbors)

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        last = np.fromiter((p[-1] for p in prefixes), dtype=np.int64, count=len(prefixes))
        result: np.ndarray = self.sim[last].toarray() + self._back
        return result

    def config_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lmbd": self.lmbd, "n_neighbors": self.n_neighbors}

    def save(self, directory: Path) -> None:
        sp.save_npz(directory / self.WEIGHTS, self.sim)
        np.save(directory / "itemknn_pop.npy", self.pop)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> ItemKNN:
        sim = sp.load_npz(directory / cls.WEIGHTS).tocsr()
        if sim.shape != (n_items, n_items):
            raise ValueError(f"{directory / cls.WEIGHTS}: shape {sim.shape} for {n_items} items")
        return cls(sim, np.load(directory / "itemknn_pop.npy"), **config)


def _prune_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row."""
    m = m.tocsr()
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo > k:
            top = lo + np.argpartition(-m.data[lo:hi], k - 1)[:k]
        else:
            top = np.arange(lo, hi)
        rows.append(np.full(len(top), r))
        cols.append(m.indices[top])
        vals.append(m.data[top])
    if not rows:
        return m
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape)


class VSKNN:
    """Vector multiplication session kNN (Ludewig & Jannach; session-rec ``vsknn``).

    Prefix item i at 1-based position p of n gets weight p/n ('div'); a candidate
    session's similarity is the sum of the weights of shared items over the number of
    distinct prefix items. Candidates are the ``sample_size`` most recent sessions
    sharing an item, neighbours the ``k`` most similar. A neighbour contributes
    sim * decay to each of its items, decay = 1/step of the most recent shared prefix
    item ('div_score'), and item scores are scaled by (1 + idf * idf_weighting).
    """

    model_type: ClassVar[str] = "vsknn"
    WEIGHTS = "vsknn_sessions.npz"

    def __init__(self, sessions: sp.csr_matrix, pop: np.ndarray, k: int = 100, sample_size: int = 500,
                 idf_weighting: float = 1.0):
        self.s = sessions.tocsr()
        self.s_t = self.s.T.tocsr()  # item -> sessions, ascending session index = time order
        self.n_items = self.s.shape[1]
        self.pop = np.asarray(pop, dtype=np.float32)
        self.k, self.sample_size, self.idf_weighting = k, sample_size, idf_weighting
        n_sess = max(self.s.shape[0], 1)
        df = np.asarray(self.s.sum(axis=0)).ravel()
        self.idf = np.log(n_sess / np.maximum(df, 1.0)).astype(np.float32)
        self._item_factor = (1.0 + self.idf * idf_weighting).astype(np.float32)
        self._back = _backoff(self.pop)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], n_items: int, k: int = 100, sample_size: int = 500,
            idf_weighting: float = 1.0) -> VSKNN:
        s = session_item_matrix(sessions, n_items)
        pop = np.bincount(np.concatenate(sessions), minlength=n_items) if sessions else np.zeros(n_items)
        return cls(s, pop, k, sample_size, idf_weighting)

    def _score_one(self, prefix: np.ndarray, out: np.ndarray) -> None:
        n = len(prefix)
        # last occurrence of each distinct item: weight p/n, step n - p + 1
        rev_items, rev_first = np.unique(prefix[::-1], return_index=True)
        last_pos = n - rev_first  # 1-based
        weight = last_pos / n
        step = n - last_pos + 1
        indptr, indices = self.s_t.indptr, self.s_t.indices
        counts = indptr[rev_items + 1] - indptr[rev_items]
        if counts.sum() == 0:
            return
        cand = np.concatenate([indices[indptr[i]:indptr[i + 1]] for i in rev_items])
        w = np.repeat(weight, counts)
        st = np.repeat(step, counts)
        sess, inv = np.unique(cand, return_inverse=True)
        sim = np.bincount(inv, weights=w) / len(rev_items)
        min_step = np.full(len(sess), np.iinfo(np.int64).max)
        np.minimum.at(min_step, inv, st)
        if len(sess) > self.sample_size:  # most recent sessions (highest index)
            sess, sim, min_step = sess[-self.sample_size:], sim[-self.sample_size:], min_step[-self.sample_size:]
        if len(sess) > self.k:
            top = np.argpartition(-sim, self.k - 1)[:self.k]
            sess, sim, min_step = sess[top], sim[top], min_step[top]
        contrib = sim / min_step
        sp_ind, sp_ptr = self.s.indices, self.s.indptr
        lens = sp_ptr[sess + 1] - sp_ptr[sess]
        items = np.concatenate([sp_ind[sp_ptr[j]:sp_ptr[j + 1]] for j in sess])
        out += np.bincount(items, weights=np.repeat(contrib, lens), minlength=self.n_items).astype(np.float32)
        out *= self._item_factor

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        return score_rows(self._score_one, prefixes, self.n_items, self._back)

    def config_dict(self) -> dict[str, Any]:
        return {"k": self.k, "sample_size": self.sample_size, "idf_weighting": self.idf_weighting}

    def save(self, directory: Path) -> None:
        sp.save_npz(directory / self.WEIGHTS, self.s)
        np.save(directory / "vsknn_pop.npy", self.pop)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> VSKNN:
        s = sp.load_npz(directory / cls.WEIGHTS).tocsr()
        if s.shape[1] != n_items:
            raise ValueError(f"{directory / cls.WEIGHTS}: {s.shape[1]} item columns for {n_items} items")
        return cls(s, np.load(directory / "vsknn_pop.npy"), **config)
