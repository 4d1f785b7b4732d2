"""A category-aware fallback for cold start: new items and one-click sessions.

``CategoryModel`` scores ``P(category | session) * P(item | category)``:

* ``P(c | session)``: each prefix item votes, with weight ``exp(-d / tau)`` (``d`` steps before
  the end), for the categories that followed its category in training sessions (the
  category-transition matrix, which holds "stays in the same category" too); the votes are
  normalised and smoothed with the global category popularity (weight ``eps``).
* ``P(i | c)``: the item's training count plus ``alpha``, over its category's total, so items
  of the catalogue that no training session holds (new items) keep a share of their
  category: they can be recommended, which popularity and the session models cannot do.

Items without a known category form one category of their own. The fallback never sees a
test split: counts and transitions come from the training sessions, categories from an item
table (``itemId;categoryId``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


class CategoryModel:
    model_type: ClassVar[str] = "category"
    WEIGHTS = "category.npz"

    def __init__(self, item_category: np.ndarray, counts: np.ndarray, transitions: sp.csr_matrix,
                 alpha: float = 0.5, tau: float = 1.0, eps: float = 0.01):
        if alpha <= 0 or tau <= 0 or not 0 <= eps <= 1:
            raise ValueError(f"category model: alpha {alpha} and tau {tau} must be > 0, eps {eps} in [0, 1]")
        self.item_category = np.asarray(item_category, dtype=np.int64)
        self.n_items = len(self.item_category)
        self.counts = np.asarray(counts, dtype=np.float64)
        if len(self.counts) != self.n_items or int(self.item_category.min(initial=0)) < 0:
            raise ValueError("category model: one count and one category index (>= 0) per item")
        self.n_categories = int(self.item_category.max(initial=-1)) + 1
        self.transitions = transitions.tocsr()
        self.alpha, self.tau, self.eps = float(alpha), float(tau), float(eps)
        cat_total = np.bincount(self.item_category, weights=self.counts + alpha, minlength=self.n_categories)
        self.p_item = (self.counts + alpha) / cat_total[self.item_category]  # P(i | its category)
        events = np.bincount(self.item_category, weights=self.counts, minlength=self.n_categories)
        self.p_category = (events + 1.0) / (events.sum() + self.n_categories)  # smoothed category popularity
        rows = np.asarray(self.transitions.sum(axis=1)).ravel()
        self._row_norm = np.where(rows > 0, rows, 1.0)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], item_category: np.ndarray, alpha: float = 0.5,
            tau: float = 1.0, eps: float = 0.01) -> CategoryModel:
        """Counts and category transitions (each consecutive pair of a session) from training sessions."""
        item_category = np.asarray(item_category, dtype=np.int64)
        n_items = len(item_category)
        n_cat = int(item_category.max(initial=-1)) + 1
        counts = np.bincount(np.concatenate(sessions), minlength=n_items) if sessions else np.zeros(n_items)
        src = [item_category[s[:-1]] for s in sessions if len(s) > 1]
        dst = [item_category[s[1:]] for s in sessions if len(s) > 1]
        if src:
            a, b = np.concatenate(src), np.concatenate(dst)
            trans = sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(n_cat, n_cat))
            trans.sum_duplicates()
        else:
            trans = sp.csr_matrix((n_cat, n_cat))
        return cls(item_category, counts, trans, alpha, tau, eps)

    def category_scores(self, prefix: np.ndarray) -> np.ndarray:
        """P(category | prefix), shape (n_categories,)."""
        prefix = np.asarray(prefix, dtype=np.int64)
        if not len(prefix):
            return np.array(self.p_category, dtype=np.float64)
        decay = np.exp(-np.arange(len(prefix) - 1, -1, -1, dtype=np.float64) / self.tau)
        cats = self.item_category[prefix]
        votes = np.bincount(cats, weights=decay, minlength=self.n_categories)
        seen = np.nonzero(votes)[0]
        # each voting category spreads its weight over the categories that followed it in training; a category
        # never followed by anything in training votes for itself
        nxt = np.asarray((sp.diags(votes[seen] / self._row_norm[seen]) @ self.transitions[seen]).sum(axis=0)).ravel()
        unseen = seen[np.asarray(self.transitions[seen].sum(axis=1)).ravel() == 0]
        nxt[unseen] += votes[unseen]
        nxt /= nxt.sum()
        out: np.ndarray = (1 - self.eps) * nxt + self.eps * self.p_category
        return out

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(prefixes), self.n_items), dtype=np.float32)
        for row, prefix in enumerate(prefixes):
            out[row] = self.category_scores(prefix)[self.item_category] * self.p_item
        return out

    def config_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "tau": self.tau, "eps": self.eps}

    def save(self, directory: Path) -> None:
        t = self.transitions.tocoo()
        np.savez_compressed(directory / self.WEIGHTS, item_category=self.item_category, counts=self.counts,
                            t_row=t.row, t_col=t.col, t_val=t.data, n_categories=self.n_categories)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> CategoryModel:
        with np.load(directory / cls.WEIGHTS) as z:
            n_cat = int(z["n_categories"])
            trans = sp.csr_matrix((z["t_val"], (z["t_row"], z["t_col"])), shape=(n_cat, n_cat))
            item_category, counts = z["item_category"], z["counts"]
        if len(item_category) != n_items:
            raise ValueError(f"{directory / cls.WEIGHTS}: {len(item_category)} items for {n_items}")
        return cls(item_category, counts, trans, **config)


def category_index(item_ids: Sequence[str], categories: dict[str, str]) -> tuple[np.ndarray, int]:
    """Dense category index per item (items without a category share one extra index); (index, n_unknown)."""
    names: dict[str, int] = {}
    out = np.empty(len(item_ids), dtype=np.int64)
    missing = 0
    for i, item in enumerate(item_ids):
        cat = categories.get(item)
        if cat is None:
            missing += 1
            cat = "\0unknown"
        out[i] = names.setdefault(cat, len(names))
    return out, missing
