"""One predictor for online recommendation and Ray Data batch precompute.

``SessionRecPredictor(artifact_dir)`` loads any recommender artifact (pop, itemknn, vstan,
vsknn, gru4rec, sasrec). Item ids are strings at this interface. Unknown items in a
prefix are ignored; an empty or fully unknown prefix gets popularity.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.session_rec.artifact import load_artifact

logger = logging.getLogger(__name__)

REGISTRY_NAME = "recommender"


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best per row, best first (equal scores: lower index first).

    One ``torch.topk`` of k + 1 per call: when the (k+1)-th score is strictly below the k-th
    the set is exact and only k entries are ordered; rows with a tie at the cut fall back to
    a scan of that row for the lowest-index tied items.
    """
    import torch

    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        empty = np.zeros((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    vals_t, idx_t = torch.topk(torch.from_numpy(scores), min(k + 1, n), dim=1, sorted=True)
    vals, part = vals_t.numpy(), idx_t.numpy()
    tied = np.nonzero(vals[:, k] == vals[:, k - 1])[0] if n > k else np.zeros(0, dtype=np.int64)
    vals, part = vals[:, :k].copy(), part[:, :k].copy()
    for row in tied:  # ties at the cut: keep the lowest-index items among those equal to the k-th score
        kth = vals[row, k - 1]
        above = part[row][vals[row] > kth]
        part[row] = np.concatenate([above, np.nonzero(scores[row] == kth)[0][:k - len(above)]])
        vals[row] = scores[row, part[row]]
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def top_k_row(scores: np.ndarray, k: int, groups: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of one row (1-D), same result (ties: lower index first); the online path.

    Exact candidate pruning instead of a selection over the whole row: the row is split into
    ``groups`` strided groups, and the k-th largest group maximum ``t`` is a lower bound of the
    k-th best score (at least k items reach it), so every item of the top k scores ``>= t``.
    Only those candidates (typically a few dozen) are sorted by (-score, index). Costs two
    vectorised passes over the row, no catalogue-sized sort or heap.
    """
    n = len(scores)
    k = min(k, n)
    rows = n // groups
    if k < 1 or rows < 2 or k > groups:
        idx, vals = top_k(scores[None], k)
        return idx[0], vals[0]
    maxima = scores[:rows * groups].reshape(rows, groups).max(axis=0)
    tail = scores[rows * groups:]  # fewer than ``groups`` items: each is its own group
    if len(tail):
        maxima = np.concatenate([maxima, tail])
    t = np.partition(maxima, len(maxima) - k)[len(maxima) - k]
    cand = np.flatnonzero(scores >= t)
    if len(cand) < k:  # NaN scores: leave them to the general path
        idx, vals = top_k(scores[None], k)
        return idx[0], vals[0]
    cvals = scores[cand]
    order = np.lexsort((cand, -cvals))[:k]
    return cand[order], cvals[order]


class SessionRecPredictor:
    """Top-K items for session prefixes; also a Ray Data callable class."""

    registry_name: ClassVar[str] = REGISTRY_NAME  # ``store.registry.load_predictor`` fetches this name

    def __init__(self, artifact_dir: str, version: str | None = None, batch_size: int = 256, k: int = 20,
                 exclude_seen: bool = True):
        """``k`` and ``exclude_seen`` are the defaults of ``__call__`` (Ray Data passes only the batch)."""
        art = load_artifact(artifact_dir)
        self.model = art.model
        self.items = art.items
        self.meta = art.meta
        self.model_type: str = art.meta["model_type"]
        self.version: str = version or str(art.meta.get("version") or artifact_dir.rstrip("/").split("/")[-1])
        self.batch_size = batch_size
        self.k, self.exclude_seen = k, exclude_seen
        pop = np.asarray(art.popularity, dtype=np.float32)
        self._pop_scores = pop / max(float(pop.max()), 1.0)
        self._local = threading.local()  # per-thread score row for the online path
        logger.info("loaded %s recommender %s (%d items)", self.model_type, self.version, len(self.items))

    @classmethod
    def from_artifact(cls, artifact_dir: str) -> SessionRecPredictor:
        return cls(artifact_dir)

    # -- scoring -------------------------------------------------------------
    def _encode(self, items: Sequence[str]) -> np.ndarray:
        if isinstance(items, str):
            raise TypeError("items must be a list of item id strings, not one string")
        return self.items.encode(items)

    def score_encoded(self, prefixes: list[np.ndarray]) -> np.ndarray:
        """Scores for encoded prefixes; empty prefixes get popularity."""
        out = np.empty((len(prefixes), len(self.items)), dtype=np.float32)
        known = [i for i, p in enumerate(prefixes) if len(p)]
        empty = [i for i, p in enumerate(prefixes) if not len(p)]
        if empty:
            out[empty] = self._pop_scores
        for start in range(0, len(known), self.batch_size):
            rows = known[start:start + self.batch_size]
            out[rows] = self.model.score([prefixes[i] for i in rows])
        return out

    def recommend_many(self, sessions: Sequence[Sequence[str]], k: int = 20,
                       exclude_seen: bool = True) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        prefixes = [self._encode(s) for s in sessions]
        scores = self.score_encoded(prefixes)
        if exclude_seen:
            for row, prefix in enumerate(prefixes):
                scores[row, prefix] = -np.inf
        idx, vals = top_k(scores, k)
        ids = self.items.ids
        return [[(ids[i], float(v)) for i, v in zip(r, s, strict=True) if np.isfinite(v)]
                for r, s in zip(idx, vals, strict=True)]

    def popular(self, k: int) -> list[tuple[str, float]]:
        """The top ``k`` items by training popularity (scores scaled to the top item's): the fallback."""
        order = np.argsort(-self._pop_scores, kind="stable")[:k]
        return [(str(self.items.ids[i]), float(self._pop_scores[i])) for i in order]

    def recommend(self, items: list[str], k: int = 20, exclude_seen: bool = True) -> list[tuple[str, float]]:
        """The top ``k`` (item id, score) pairs after the prefix ``items``.

        Online path: a model with ``score_one`` (GRU4Rec) writes the row into a per-thread buffer
        reused across calls, others score one prefix in place; seen items are masked by index and
        ``top_k_row`` picks the top ``k``. Same result as ``recommend_many([items])[0]``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        prefix = self._encode(items)
        if not len(prefix):
            return self.recommend_many([items], k=k, exclude_seen=exclude_seen)[0]
        score_one = getattr(self.model, "score_one", None)
        if score_one is not None and not getattr(getattr(self.model, "net", None), "training", False):
            scores = score_one(prefix, out=self._row())  # written into this thread's reused row
        else:
            scores = self.model.score([prefix])[0]
            if scores.dtype != np.float32 or not scores.flags.writeable or not scores.flags.c_contiguous:
                scores = np.array(scores, dtype=np.float32)
        if exclude_seen:
            scores[prefix] = -np.inf
        idx, vals = top_k_row(scores, k)
        ids = self.items.ids
        return [(ids[i], v) for i, v in zip(idx.tolist(), vals.tolist(), strict=True) if math.isfinite(v)]

    def _row(self) -> np.ndarray:
        row = getattr(self._local, "row", None)
        if row is None:
            row = self._local.row = np.empty(len(self.items), dtype=np.float32)
        return row

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # -- Ray Data ------------------------------------------------------------
    def __call__(self, batch: pd.DataFrame, k: int | None = None, exclude_seen: bool | None = None) -> pd.DataFrame:
        """``map_batches(batch_format="pandas")``: session_id, items -> session_id, recs, rec_scores."""
        for column in ("session_id", "items"):
            if column not in batch.columns:
                raise ValueError(f"batch is missing column {column!r}; got {list(batch.columns)}")
        sessions: list[list[str]] = []
        for row, value in enumerate(batch["items"]):
            if value is None or isinstance(value, str):
                raise ValueError(f"row {row} (session_id={batch['session_id'].iloc[row]!r}): "
                                 f"field 'items' must be a list of strings, got {type(value).__name__}")
            sessions.append([str(v) for v in value])
        recs = self.recommend_many(sessions, k=self.k if k is None else k,
                                   exclude_seen=self.exclude_seen if exclude_seen is None else exclude_seen)
        return pd.DataFrame({"session_id": batch["session_id"].to_numpy(),
                             "recs": [[i for i, _ in r] for r in recs],
                             "rec_scores": [[s for _, s in r] for r in recs]})

    def describe(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "version": self.version, "n_items": len(self.items),
                "metrics": self.meta.get("metrics", {})}
