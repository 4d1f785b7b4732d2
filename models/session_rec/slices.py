"""Cold-start slices of a next-item evaluation, reported beside the overall figures.

* ``prefix_len_1``: the session so far is one click (the hardest, most common cold case);
* ``target_unseen``: the next item has no training event (a new item). Under protocol (a) such
  targets are dropped before pairing when the item is outside the catalogue; they are counted
  here as misses (``dropped``), since no closed-catalogue model can rank them. Items known from
  an item table (``--item-categories``) stay in the catalogue and are ranked;
* ``target_in_prefix``: the next item is already in the session (the repeat head's slice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.evaluation.ranking import ranking_metrics

logger = logging.getLogger(__name__)

SLICES = ("prefix_len_1", "target_unseen", "target_in_prefix")


def slice_masks(prefixes: Sequence[np.ndarray], targets: np.ndarray, train_counts: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Boolean mask over the pairs for each slice."""
    targets = np.asarray(targets, dtype=np.int64)
    lengths = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=len(prefixes))
    known = targets >= 0
    unseen = ~known.copy()
    unseen[known] = np.asarray(train_counts)[targets[known]] == 0
    in_prefix = np.fromiter((t >= 0 and bool(np.any(np.asarray(p) == t)) for p, t in zip(prefixes, targets,
                                                                                           strict=True)),
                            dtype=bool, count=len(prefixes))
    return {"prefix_len_1": lengths == 1, "target_unseen": unseen, "target_in_prefix": in_prefix}


def slice_report(ranks: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                 dropped_unseen: int = 0, cutoffs: Sequence[int] = (20, 10)) -> dict[str, dict[str, object]]:
    """Per slice: its size and each ranker's Recall/MRR on it.

    ``ranks[name]``: one rank per pair; NaN where that ranker was not run (a ranker is reported on
    the slices it ranked completely). Dropped unseen targets join ``target_unseen`` as misses."""
    n_pairs = len(next(iter(masks.values()))) if masks else 0
    out: dict[str, dict[str, object]] = {}
    for name, mask in masks.items():
        extra = dropped_unseen if name == "target_unseen" else 0
        entry: dict[str, object] = {"n": int(mask.sum()) + extra, "share": 0.0}
        if n_pairs + dropped_unseen:
            entry["share"] = round((int(mask.sum()) + extra) / (n_pairs + dropped_unseen), 6)
        if extra:
            entry["dropped_as_misses"] = extra
        out[name] = entry
        if not entry["n"]:
            continue
        for ranker, r in ranks.items():
            r = np.asarray(r, dtype=np.float64)
            if len(r) != n_pairs:
                raise ValueError(f"{ranker}: {len(r)} ranks for {n_pairs} pairs")
            sub = r[mask]
            if np.isnan(sub).any():
                continue
            sub = np.concatenate([sub, np.full(extra, np.inf)])  # a dropped target is a miss at any cutoff
            m = ranking_metrics(sub, cutoffs)
            entry[ranker] = {k: round(v, 6) for k, v in m.items() if k != "n"}
    return out


def cold_start_slices(model_ranks: np.ndarray, data: Any, fallbacks: dict[str, Any], tie: str = "conservative",
                      batch_size: int = 512) -> dict[str, dict[str, object]]:
    """The slices of a test evaluation (``data``: EncodedData) for the model (its ranks on every pair) and
    each fallback model (e.g. ``pop``, ``category``), ranked on the cold slices' pairs only."""
    from models.session_rec.base import item_counts
    from models.session_rec.evaluate import test_ranks

    n_items = len(data.items)
    masks = slice_masks(data.test_prefixes, data.test_targets, item_counts(data.train, n_items))
    cold = np.nonzero(masks["prefix_len_1"] | masks["target_unseen"])[0]
    ranks: dict[str, np.ndarray] = {"model": np.asarray(model_ranks, dtype=np.float64)}
    for name, fallback in fallbacks.items():
        r = np.full(len(data.test_targets), np.nan)
        if len(cold):
            r[cold] = test_ranks(fallback, data, tie, batch_size, rows=cold)
        ranks[name] = r
    return slice_report(ranks, masks, dropped_unseen=getattr(data, "unseen_targets_dropped", 0))
