"""Cross-validation of one booster configuration, folds trained in lockstep.

A small validation split is a noisy judge: on UCI Online Shoppers (1,850 validation rows,
about 290 positives) the PR-AUC gaps between configurations are inside its noise. Scoring a
configuration by its mean held-out PR-AUC over several folds uses many more labelled rows.
The folds grow one boosting round at a time together, so the mean held-out PR-AUC is known
after every ``every`` rounds: a scheduler (ASHA) can stop a weak configuration early, and
``patience`` stops a run whose fold mean has not improved for that many rounds.

Folds are either fold ids (``stratified_folds``: every other fold trains) or explicit
``(fit rows, held-out rows)`` pairs (``time_splits``: forward chaining, each fold trains on
the past only).

No Ray here: ``report`` is any callable (``ray.tune.report``, ``ray.train.report``, a list's
``append``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.evaluation.classification import pr_auc
from models.propensity.model import PropensityConfig, lightgbm_params, raw_margin, xgboost_setup

logger = logging.getLogger(__name__)

Splits = list[tuple[np.ndarray, np.ndarray]]  # (fit rows, held-out rows) per fold


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) per row; each class spread evenly over the folds (seeded)."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        fold[idx] = rng.permutation(len(idx)) % k
    return fold


def fold_splits(folds: np.ndarray) -> Splits:
    """``(fit, held)`` row indices per fold id: each fold is held out once, the others train."""
    folds = np.asarray(folds)
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]


def time_splits(n: int, k: int) -> Splits:
    """Forward chaining over rows in time order: ``k + 1`` contiguous blocks; fold ``i`` trains on
    blocks ``0..i`` and holds out block ``i + 1`` (never trains on the future)."""
    if k < 1:
        raise ValueError(f"need at least 1 fold, got {k}")
    edges = np.linspace(0, n, k + 2).round().astype(np.int64)
    return [(np.arange(0, edges[i + 1]), np.arange(edges[i + 1], edges[i + 2])) for i in range(k)]


def downsample_mask(y: np.ndarray, keep_rate: float, seed: int) -> np.ndarray:
    """All positives and a ``keep_rate`` share of negatives (same rule as ``downsample_negatives``)."""
    if keep_rate >= 1.0:
        return np.ones(len(y), dtype=bool)
    result: np.ndarray = (np.asarray(y) == 1) | (np.random.default_rng(seed).random(len(y)) < keep_rate)
    return result


class FoldBooster:
    """One booster grown a round at a time (``update``) on one fold's training rows, scored on
    its held-out rows (LightGBM adds the new trees' margins; XGBoost predicts them afresh)."""

    def __init__(self, cfg: PropensityConfig, x: np.ndarray, y: np.ndarray, feature_names: list[str],
                 x_held: np.ndarray, y_held: np.ndarray, categorical: Sequence[str] = ()):
        self.kind = cfg.kind
        self.x_held, self.y_held = x_held, y_held
        self.booster: Any
        self.fobj: Any
        if cfg.kind == "lightgbm":
            import lightgbm as lgb

            params = lightgbm_params(cfg, y)
            self.fobj = None
            if callable(params["objective"]):  # as lightgbm.train does for a custom objective
                self.fobj, params["objective"] = params["objective"], "none"
            params["metric"] = "average_precision"  # rank-based: the same on margins and probabilities
            self.threads = int(params.get("num_threads", 0))
            # LightGBM keeps one thread count for the whole process, set by every call from its params
            # (0 = all cores): a Dataset built without it while a side-by-side fold predicts on one
            # thread can give that prediction a second OpenMP thread with no buffer (a segfault)
            self.booster = lgb.Booster(params=params, train_set=lgb.Dataset(
                x, label=y, feature_name=feature_names, categorical_feature=list(categorical) or "auto",
                params={"verbose": -1, **({"num_threads": self.threads} if self.threads else {})}))
            # held-out margins kept incrementally (a LightGBM validation set would do the same, but its
            # score updates ignore num_threads: OpenMP on every core, which crawls on a busy machine)
            self.held_margin, self.scored = np.zeros(len(y_held)), 0
        else:
            import xgboost as xgb

            params, self.fobj = xgboost_setup(cfg, y)
            self.dtrain = xgb.DMatrix(x, label=y, feature_names=feature_names)
            self.booster = xgb.Booster(params, [self.dtrain])
        self.rounds = 0

    def update(self) -> None:
        if self.kind == "lightgbm":
            self.booster.update(fobj=self.fobj)
        else:
            self.booster.update(self.dtrain, iteration=self.rounds, fobj=self.fobj)
        self.rounds += 1

    def pr_auc(self) -> float:
        """Held-out PR-AUC (average precision) of the current model."""
        if self.kind == "lightgbm":
            if self.rounds > self.scored:
                self.held_margin += self.booster.predict(self.x_held, start_iteration=self.scored,
                                                         num_iteration=self.rounds - self.scored, raw_score=True,
                                                         num_threads=self.threads)
                self.scored = self.rounds
            return pr_auc(self.y_held, self.held_margin)
        return pr_auc(self.y_held, self.margin(self.x_held))

    def margin(self, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
        return raw_margin(self.booster, self.kind, x, rounds=rounds or self.rounds)


def _as_splits(folds: np.ndarray | Splits) -> Splits:
    return fold_splits(folds) if isinstance(folds, np.ndarray) else list(folds)


def cross_validate(cfg: PropensityConfig, x: np.ndarray, y: np.ndarray, folds: np.ndarray | Splits,
                   feature_names: list[str], every: int, report: Callable[[dict[str, Any]], None] | None = None,
                   *, categorical: Sequence[str] = (), patience: int = 0, oof: bool = False) -> dict[str, Any]:
    """Grow one booster per fold for up to ``cfg.num_boost_round`` rounds; every ``every`` rounds
    (and at the last) ``report`` gets ``rounds``, the mean held-out ``pr_auc`` over folds and its
    ``pr_auc_std``, and the best mean so far with its round count (``best_pr_auc``,
    ``best_rounds``). With ``patience`` > 0 it stops once the best mean is that many rounds old.
    Negatives are downsampled inside each fold's training rows only, never in held-out rows.

    Returns the last report plus ``fold_pr_auc`` (per fold, at ``best_rounds``) and, with
    ``oof``, ``oof_margin`` (held-out raw margins at ``best_rounds``, NaN for rows never held out)."""
    splits = _as_splits(folds)
    models = []
    for f, (fit, held) in enumerate(splits):
        if cfg.imbalance == "downsample":
            fit = fit[downsample_mask(y[fit], cfg.keep_rate, cfg.seed + f)]
        models.append(FoldBooster(cfg, x[fit], y[fit], feature_names, x[held], y[held], categorical))
    best, best_rounds, best_folds, last = -1.0, 0, np.zeros(len(models)), {}
    for r in range(1, cfg.num_boost_round + 1):
        for m in models:
            m.update()
        if r % every and r != cfg.num_boost_round:
            continue
        values = np.array([m.pr_auc() for m in models])
        mean = float(values.mean())
        if mean > best:
            best, best_rounds, best_folds = mean, r, values
        last = {"rounds": r, "pr_auc": mean, "pr_auc_std": float(values.std()), "best_pr_auc": best,
                "best_rounds": best_rounds}
        if report is not None:
            report(last)
        if patience and r - best_rounds >= patience:
            break
    out: dict[str, Any] = {**last, "fold_pr_auc": [float(v) for v in best_folds]}
    if oof:
        margins = np.full(len(y), np.nan)
        for m, (_, held) in zip(models, splits, strict=True):
            margins[held] = m.margin(x[held], best_rounds)
        out["oof_margin"] = margins
    return out
