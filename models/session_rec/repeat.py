"""A repeat head: an explicit score for the items already in the session.

Repeat consumption is common in e-commerce sessions: on the validation carve of Diginetica
19 % of next items were already in the prefix (9.5 % the last item), on RSC15 36 % (26 %).
This part scores only prefix items: an occurrence ``d`` steps before the end (0 = the last
item) adds ``exp(-d / tau)``, so the score of an item is its recency-weighted count, and each
row is normalised to sum 1 (rows of empty prefixes stay 0). Every other item scores 0.

It is a hybrid part (``model_type = "repeat"``): the hybrid adds ``w * repeat`` to the mix of
the other parts' distributions, with ``w`` and ``tau`` chosen on a validation split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

logger = logging.getLogger(__name__)


def repeat_scores(prefix: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(distinct prefix items, their normalised recency-weighted counts) for one prefix."""
    prefix = np.asarray(prefix, dtype=np.int64)
    if not len(prefix):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    dist = np.arange(len(prefix) - 1, -1, -1, dtype=np.float64)  # steps before the end; last item = 0
    items, inverse = np.unique(prefix, return_inverse=True)
    weight = np.bincount(inverse, weights=np.exp(-dist / tau), minlength=len(items))
    return items, weight / weight.sum()


class RepeatModel:
    """Scores the items of the prefix by recency-weighted count (see the module doc)."""

    model_type: ClassVar[str] = "repeat"
    CONFIG_FILE = "repeat.json"

    def __init__(self, n_items: int, tau: float = 1.0):
        if tau <= 0:
            raise ValueError(f"repeat tau must be > 0, got {tau}")
        self.n_items, self.tau = int(n_items), float(tau)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], n_items: int, tau: float = 1.0) -> RepeatModel:
        return cls(n_items, tau)  # nothing to learn from the training sessions

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(prefixes), self.n_items), dtype=np.float32)
        for row, prefix in enumerate(prefixes):
            items, weight = repeat_scores(prefix, self.tau)
            if len(items) and int(items.max()) >= self.n_items:
                raise ValueError(f"prefix item {int(items.max())} is outside the catalogue of {self.n_items}")
            out[row, items] = weight
        return out

    def config_dict(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def save(self, directory: Path) -> None:
        (directory / self.CONFIG_FILE).write_text(json.dumps(self.config_dict()), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> RepeatModel:
        return cls(n_items, float(config.get("tau", 1.0)))
