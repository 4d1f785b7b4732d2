"""A weighted hybrid of session models (session-rec's 'weighted' hybrid).

Each part's scores become a distribution over the catalogue - softmax for neural
logits, sum-normalised for non-negative kNN scores - and the hybrid is their weighted
sum. A neural part can have a softmax temperature T (``softmax(scores / T)``): a loss
such as BPR-max leaves logits with a narrow range (a few units per prefix), whose plain
softmax is nearly uniform and so barely moves the mix; T < 1 sharpens it. T = 1 (the
default) is the plain softmax. Weights and temperatures are chosen on a validation
split, never on test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.session_rec.base import SessionModel
from models.session_rec.config import NEURAL_PARTS, check_temperatures

logger = logging.getLogger(__name__)

NEURAL = NEURAL_PARTS


def as_distribution(model_type: str, scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """One distribution per row: ``softmax(scores / temperature)`` for neural parts, sum-normalised otherwise."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = np.asarray(scores, dtype=np.float64)
    if model_type in NEURAL:
        if temperature != 1.0:
            scores = scores / temperature
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        result: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return result
    if temperature != 1.0:
        raise ValueError(f"a temperature applies to neural parts {NEURAL} only, not {model_type!r}")
    s = np.maximum(scores, 0.0)
    result = s / np.maximum(s.sum(axis=1, keepdims=True), 1e-30)
    return result


class HybridModel:
    model_type: ClassVar[str] = "hybrid"

    def __init__(self, parts: Sequence[SessionModel], weights: Sequence[float],
                 temperatures: Sequence[float] | None = None):
        if len(parts) != len(weights) or not parts:
            raise ValueError(f"{len(parts)} parts but {len(weights)} weights")
        if len({p.n_items for p in parts}) != 1:
            raise ValueError("hybrid parts must share one item catalogue")
        temps = [1.0] * len(parts) if temperatures is None else [float(t) for t in temperatures]
        check_temperatures([p.model_type for p in parts], temps)
        self.parts, self.weights, self.temperatures = list(parts), [float(w) for w in weights], temps
        self.n_items = parts[0].n_items

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(prefixes), self.n_items), dtype=np.float64)
        for part, w, t in zip(self.parts, self.weights, self.temperatures, strict=True):
            if w:
                out += w * as_distribution(part.model_type, part.score(prefixes), t)
        return out.astype(np.float32)

    def config_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self.weights}
        if any(t != 1.0 for t in self.temperatures):  # absent = all 1 (artifacts written before temperatures)
            out["temperatures"] = self.temperatures
        out["parts"] = [{"model_type": p.model_type, "model_config": p.config_dict()} for p in self.parts]
        return out

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
        return cls(parts, config.get("weights", []), config.get("temperatures"))
