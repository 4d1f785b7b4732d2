"""String item ids at the edges, dense int indices inside."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.txt"


class ItemMap:
    """A fixed vocabulary: index ``i`` is item id ``ids[i]``."""

    def __init__(self, ids: Sequence[str]):
        self.ids: list[str] = [str(i) for i in ids]
        self.index: dict[str, int] = {item: i for i, item in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("item ids must be unique")
        for row, item in enumerate(self.ids):
            if not item or "\n" in item or "\t" in item:
                raise ValueError(f"item id at index {row} is empty or holds a tab/newline: {item!r}")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_sessions(cls, sessions: Iterable[Sequence[str]]) -> ItemMap:
        """Items in order of first appearance."""
        seen: dict[str, None] = {}
        for session in sessions:
            for item in session:
                seen.setdefault(str(item), None)
        return cls(list(seen))

    def encode(self, items: Iterable[str]) -> np.ndarray:
        """Indices of the known items, in order; unknown ids are dropped."""
        index = self.index
        return np.fromiter((index[i] for i in map(str, items) if i in index), dtype=np.int64)

    def decode(self, indices: Iterable[int]) -> list[str]:
        ids = self.ids
        return [ids[int(i)] for i in indices]

    def save(self, directory: Path) -> None:
        (directory / ITEMS_FILE).write_text("\n".join(self.ids) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ItemMap:
        path = directory / ITEMS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: item id map missing from the artifact")
        return cls(path.read_text(encoding="utf-8").splitlines())
