"""A weighted hybrid of session models (session-rec's 'weighted' hybrid).

Each part's scores become a distribution over the catalogue - softmax for neural
logits, sum-normalised for non-negative kNN scores - and the hybrid is their weighted
sum. The weights are chosen on a validation split, never on test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.session_rec.base import SessionModel

logger = logging.getLogger(__name__)

NEURAL = ("gru4rec", "sasrec")


def as_distribution(model_type: str, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if model_type in NEURAL:
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    s = np.maximum(scores, 0.0)
    return s / np.maximum(s.sum(axis=1, keepdims=True), 1e-30)


class HybridModel:
    model_type: ClassVar[str] = "hybrid"

    def __init__(self, parts: Sequence[SessionModel], weights: Sequence[float]):
        if len(parts) != len(weights) or not parts:
            raise ValueError(f"{len(parts)} parts but {len(weights)} weights")
        if len({p.n_items for p in parts}) != 1:
            raise ValueError("hybrid parts must share one item catalogue")
        self.parts, self.weights = list(parts), [float(w) for w in weights]
        self.n_items = parts[0].n_items

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(prefixes), self.n_items), dtype=np.float64)
        for part, w in zip(self.parts, self.weights, strict=True):
            if w:
                out += w * as_distribution(part.model_type, part.score(prefixes))
        return out.astype(np.float32)

    def config_dict(self) -> dict[str, Any]:
        return {"weights": self.weights,
                "parts": [{"model_type": p.model_type, "model_config": p.config_dict()} for p in self.parts]}

    def save(self, directory: Path) -> None:
        for i, part in enumerate(self.parts):
            sub = directory / f"part{i}"
            sub.mkdir(parents=True, exist_ok=True)
            part.save(sub)
            (sub / "part.json").write_text(json.dumps({"model_type": part.model_type}), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> HybridModel:
        from models.session_rec.artifact import model_class

        parts = []
        for i, spec in enumerate(config.get("parts", [])):
            parts.append(model_class(spec["model_type"]).load(directory / f"part{i}", spec["model_config"], n_items))
        return cls(parts, config.get("weights", []))
