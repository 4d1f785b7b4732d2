"""Fit the in-process baselines and evaluate any SessionModel on encoded data."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.evaluation.ranking import evaluate, rank_targets, ranking_metrics
from models.session_rec.base import PopModel, SessionModel
from models.session_rec.data import EncodedData
from models.session_rec.knn import VSKNN, ItemKNN

logger = logging.getLogger(__name__)

BASELINES = ("pop", "itemknn", "vsknn", "vstan", "repeat")


def fit_baseline(model_type: str, data: EncodedData, params: dict[str, Any]) -> SessionModel:
    return fit_on(model_type, data.train, len(data.items), params)  # type: ignore[arg-type]


def fit_on(model_type: str, sessions: list[np.ndarray], n_items: int, params: dict[str, Any]) -> SessionModel:
    """Fit a non-neural model on encoded sessions over a catalogue of ``n_items``."""
    if model_type == "pop":
        return PopModel.fit(sessions, n_items)
    if model_type == "itemknn":
        return ItemKNN.fit(sessions, n_items, **params)
    if model_type == "vsknn":
        return VSKNN.fit(sessions, n_items, **params)
    if model_type == "repeat":
        from models.session_rec.repeat import RepeatModel

        return RepeatModel.fit(sessions, n_items, **params)
    if model_type == "vstan":
        from models.session_rec.stan import VSTAN

        return VSTAN.fit(sessions, n_items, **params)
    raise ValueError(f"{model_type!r} is not a baseline; expected one of {BASELINES}")


def test_ranks(model: SessionModel, data: EncodedData, tie: str = "conservative", batch_size: int = 512,
               exclude_seen: bool = False, rows: np.ndarray | None = None) -> np.ndarray:
    """Full-catalogue rank of each test target (``rows``: only those pairs); an empty prefix (no known
    item) or an unknown target is a miss (rank n_items + 1)."""
    rows = np.arange(len(data.test_prefixes)) if rows is None else np.asarray(rows, dtype=np.int64)
    ranks = np.full(len(rows), float(model.n_items + 1))
    keep = np.array([i for i, r in enumerate(rows) if len(data.test_prefixes[r])], dtype=np.int64)
    if len(keep) < len(rows):
        logger.info("%d test prefixes have no known item; they count as misses", len(rows) - len(keep))
    if len(keep):
        prefixes = [data.test_prefixes[r] for r in rows[keep]]
        ranks[keep] = rank_targets(model.score, prefixes, data.test_targets[rows[keep]], tie=tie,
                                   batch_size=batch_size, exclude_seen=exclude_seen)
    return ranks


def hybrid_test_ranks(model: Any, data: EncodedData, tie: str = "conservative", batch_size: int = 512
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``test_ranks`` of a HybridModel and of each of its parts, every part scored once per batch."""
    from models.evaluation.ranking import ranks_from_scores
    from models.session_rec.hybrid import as_distribution

    n = len(data.test_prefixes)
    ranks = np.full(n, float(model.n_items + 1))
    part_ranks = [ranks.copy() for _ in model.parts]
    keep = np.array([i for i, p in enumerate(data.test_prefixes) if len(p)], dtype=np.int64)
    for start in range(0, len(keep), batch_size):
        rows = keep[start:start + batch_size]
        prefixes = [data.test_prefixes[r] for r in rows]
        targets = data.test_targets[rows]
        mix = np.zeros((len(rows), model.n_items), dtype=np.float64)
        for i, (part, w, t) in enumerate(zip(model.parts, model.weights, model.temperatures, strict=True)):
            scores = np.asarray(part.score(prefixes), dtype=np.float32)
            part_ranks[i][rows] = ranks_from_scores(scores, targets, tie)
            if w:
                mix += w * as_distribution(part.model_type, scores, t)
        ranks[rows] = ranks_from_scores(mix.astype(np.float32), targets, tie)
    return ranks, part_ranks


def evaluate_model(model: SessionModel, data: EncodedData, tie: str = "conservative",
                   batch_size: int = 512, exclude_seen: bool = False,
                   ranks: np.ndarray | None = None) -> dict[str, float]:
    """Full-catalogue Recall@k / MRR@k of ``model`` on the test pairs (see models.evaluation.ranking);
    ``ranks``: this model's ``test_ranks``, when the caller has them already."""
    t0 = time.perf_counter()
    if ranks is None:
        ranks = test_ranks(model, data, tie, batch_size, exclude_seen)
    out = ranking_metrics(ranks)
    out["eval_seconds"] = time.perf_counter() - t0
    out["unknown_targets"] = float(np.sum(data.test_targets < 0))
    return out


def evaluate_with_slices(model: SessionModel, data: EncodedData, tie: str = "conservative", batch_size: int = 512,
                         part_names: list[str] | None = None, item_category: np.ndarray | None = None
                         ) -> tuple[dict[str, float], dict[str, dict[str, object]]]:
    """Test metrics of ``model`` (and, for a hybrid, of each part, named by ``part_names``, in the same
    scoring pass) and its cold-start slices beside popularity and, with ``item_category``, the
    category fallback (models.session_rec.slices)."""
    from models.session_rec.hybrid import HybridModel
    from models.session_rec.slices import cold_start_slices

    t0 = time.perf_counter()
    part_metrics: dict[str, float] = {}
    if isinstance(model, HybridModel):
        ranks, part_ranks = hybrid_test_ranks(model, data, tie, batch_size)
        names = part_names or [p.model_type for p in model.parts]
        for name, r in zip(names, part_ranks, strict=True):
            pm = ranking_metrics(r)
            part_metrics.update({f"{name}_{k}": pm[k] for k in ("recall@20", "mrr@20", "recall@10", "mrr@10")})
    else:
        ranks = test_ranks(model, data, tie, batch_size)
    metrics = {**evaluate_model(model, data, ranks=ranks), **part_metrics}
    metrics["eval_seconds"] = time.perf_counter() - t0
    n_items = len(data.items)  # type: ignore[arg-type]
    fallbacks: dict[str, SessionModel] = {"pop": PopModel.fit(data.train, n_items)}
    if item_category is not None:
        from models.session_rec.cold import CategoryModel

        fallbacks["category"] = CategoryModel.fit(data.train, item_category)
    return metrics, cold_start_slices(ranks, data, fallbacks, tie, batch_size)


def evaluate_predictor(predictor: Any, prefixes: Sequence[Sequence[str]], targets: Sequence[str],
                       tie: str = "conservative") -> dict[str, float]:
    """Recall@k / MRR@k of a ``SessionRecPredictor`` on raw-id pairs, each model in its own catalogue.

    Two models with different catalogues are compared on the SAME pairs: a target a model
    does not know is a miss for it, and unknown prefix items are dropped (as online)."""
    index = predictor.items.index
    enc = [predictor.items.encode(p) for p in prefixes]
    tgt = np.fromiter((index.get(str(t), -1) for t in targets), dtype=np.int64, count=len(targets))
    out = evaluate(predictor.score_encoded, enc, tgt, tie=tie)
    top1 = predictor.recommend_many([list(p) for p in prefixes[:500]], k=1, exclude_seen=False) if prefixes else []
    out["distinct_top1"] = float(len({r[0][0] for r in top1 if r}))
    out["n"] = float(len(targets))
    return out
