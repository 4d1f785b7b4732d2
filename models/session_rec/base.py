"""The contract every session model meets, and the popularity baseline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

logger = logging.getLogger(__name__)


class SessionModel(Protocol):
    """Scores the whole catalogue for a batch of encoded session prefixes."""

    model_type: ClassVar[str]
    n_items: int

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        """float32 array ``(len(prefixes), n_items)``; higher is better."""
        ...

    def config_dict(self) -> dict[str, Any]: ...

    def save(self, directory: Path) -> None: ...


def item_counts(sessions: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Training events per item."""
    if not sessions:
        return np.zeros(n_items, dtype=np.float64)
    return np.bincount(np.concatenate(sessions), minlength=n_items).astype(np.float64)


class PopModel:
    """Most popular items, whatever the session."""

    model_type: ClassVar[str] = "pop"
    WEIGHTS = "popularity.npy"

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.float32)
        self.n_items = len(self.counts)

    @classmethod
    def fit(cls, sessions: Sequence[np.ndarray], n_items: int) -> PopModel:
        return cls(item_counts(sessions, n_items))

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(prefixes), self.n_items)).copy()

    def config_dict(self) -> dict[str, Any]:
        return {}

    def save(self, directory: Path) -> None:
        np.save(directory / self.WEIGHTS, self.counts)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> PopModel:
        counts = np.load(directory / cls.WEIGHTS)
        if len(counts) != n_items:
            raise ValueError(f"{directory / cls.WEIGHTS}: {len(counts)} counts for {n_items} items")
        return cls(counts)
