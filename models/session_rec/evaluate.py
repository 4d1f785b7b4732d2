"""Fit the in-process baselines and evaluate any SessionModel on encoded data."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from models.evaluation.ranking import evaluate
from models.session_rec.base import PopModel, SessionModel
from models.session_rec.data import EncodedData
from models.session_rec.knn import VSKNN, ItemKNN

logger = logging.getLogger(__name__)

BASELINES = ("pop", "itemknn", "vsknn", "vstan")


def fit_baseline(model_type: str, data: EncodedData, params: dict[str, Any]) -> SessionModel:
    n = len(data.items)  # type: ignore[arg-type]
    if model_type == "pop":
        return PopModel.fit(data.train, n)
    if model_type == "itemknn":
        return ItemKNN.fit(data.train, n, **params)
    if model_type == "vsknn":
        return VSKNN.fit(data.train, n, **params)
    if model_type == "vstan":
        from models.session_rec.stan import VSTAN

        return VSTAN.fit(data.train, n, **params)
    raise ValueError(f"{model_type!r} is not a baseline; expected one of {BASELINES}")


def evaluate_model(model: SessionModel, data: EncodedData, tie: str = "conservative",
                   batch_size: int = 512, exclude_seen: bool = False) -> dict[str, float]:
    """Full-catalogue Recall@k / MRR@k of ``model`` on the test pairs (see models.evaluation.ranking)."""
    t0 = time.perf_counter()
    keep = [i for i, p in enumerate(data.test_prefixes) if len(p)]
    if len(keep) < len(data.test_prefixes):
        logger.info("%d test prefixes have no known item; they count as misses",
                    len(data.test_prefixes) - len(keep))
    prefixes = [data.test_prefixes[i] for i in keep]
    targets = data.test_targets[keep]
    out = evaluate(model.score, prefixes, targets, tie=tie, batch_size=batch_size, exclude_seen=exclude_seen)
    total = len(data.test_prefixes)
    if total and len(keep) < total:  # rescale: empty prefixes are misses
        frac = len(keep) / total
        out = {k: (v * frac if k != "n" else float(total)) for k, v in out.items()}
    out["eval_seconds"] = time.perf_counter() - t0
    out["unknown_targets"] = float(np.sum(data.test_targets < 0))
    return out
