"""Choose the default propensity pipeline on the training window only, and keep it honest.

The rule, fixed before any test figure was read:

1. **Folds from the training rows only.** With a time column: forward chaining over
   ``TIME_FOLDS + 1`` contiguous blocks in time order (each fold trains on the past and is
   scored on the next block). Without: stratified folds (5, or 3 above ``BIG`` rows).
   Folds whose held-out block lacks a class are dropped; with fewer than 2 positives a
   fold, no selection runs and the reference is kept.
2. **Candidates**, simplest first: ``lightgbm_default`` (LightGBM's own defaults, exactly
   100 rounds: the reference), then the tandem booster (``PropensityConfig`` defaults) with
   each imbalance strategy: ``none``, ``weight`` (class weights), ``downsample`` (negatives
   kept at ``keep_rate``, log-odds corrected), ``focal``. Each tandem candidate's round count
   is where its fold-mean PR-AUC peaks (checked every ``EVERY`` rounds, stopped ``PATIENCE``
   rounds after the peak).
3. **Score**: mean held-out PR-AUC over the folds. The best candidate is the one with the
   highest score; the chosen one is the *simplest* candidate whose score is within one
   standard error of the best (the standard error of the paired per-fold differences to the
   best): a more elaborate pipeline has to earn its place by more than fold noise.
4. **Calibration** (none, Platt, isotonic) is chosen on the chosen candidate's out-of-fold
   scores by cross-fitted log loss (``calibration.choose_method``); a more elaborate map must
   lower it by 0.5 %. Calibration never changes the ranking.
5. **Validation guard** (``guard``, after the final fit on all training rows): the chosen
   model's validation PR-AUC must not be below the reference's (fitted on the same rows);
   otherwise the reference is kept and the selection says why.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from models.propensity.calibration import Method, choose_method
from models.propensity.cv import Splits, cross_validate, fold_splits, stratified_folds, time_splits
from models.propensity.focal import sigmoid
from models.propensity.model import LIGHTGBM_DEFAULT_ROUNDS, PropensityConfig

logger = logging.getLogger(__name__)

REFERENCE: Final = "lightgbm_default"
STRATEGIES = ("none", "weight", "downsample", "focal")  # simplest first
TIME_FOLDS = 3
BIG = 50_000
EVERY = 10
PATIENCE = 50
MAX_ROUNDS = 1000


@dataclass
class Candidate:
    name: str
    cfg: PropensityConfig
    fixed_rounds: bool = False  # scored at exactly cfg.num_boost_round (the reference)


@dataclass
class Score:
    cv_pr_auc: float
    fold_pr_auc: list[float]
    rounds: int
    seconds: float


@dataclass
class Selection:
    """What was tried, what was chosen and why; ``as_dict`` goes into the job's JSON."""

    folds: str
    k: int
    rows: int
    candidates: dict[str, Score] = field(default_factory=dict)
    best: str = REFERENCE
    chosen: str = REFERENCE
    reason: str = ""
    calibration: str = "none"
    calibration_log_loss: dict[str, float] = field(default_factory=dict)
    reference_calibration: str = "none"
    validation: dict[str, Any] = field(default_factory=dict)
    kept_reference: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates"] = {k: {**asdict(v), "cv_pr_auc": round(v.cv_pr_auc, 6),
                               "fold_pr_auc": [round(x, 6) for x in v.fold_pr_auc]}
                           for k, v in self.candidates.items()}
        d["rule"] = ("simplest candidate within one paired standard error of the best mean fold PR-AUC on the "
                     "training window; kept only if not below lightgbm_default on validation")
        return d


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def reference_config(base: PropensityConfig) -> PropensityConfig:
    return PropensityConfig(kind="lightgbm", preset=REFERENCE, imbalance="none",
                            num_boost_round=LIGHTGBM_DEFAULT_ROUNDS, early_stopping_rounds=0,
                            num_threads=base.num_threads, seed=base.seed)


def candidates(base: PropensityConfig, strategies: tuple[str, ...] = STRATEGIES) -> list[Candidate]:
    """The reference, then ``base`` with each imbalance strategy (``base.num_boost_round`` is the cap)."""
    out = [Candidate(REFERENCE, reference_config(base), fixed_rounds=True)]
    out += [Candidate(s, base.model_copy(update={"imbalance": s, "preset": "tandem"})) for s in strategies]
    return out


def make_splits(y: np.ndarray, time_ordered: bool, seed: int) -> tuple[str, Splits]:
    """Folds over the training rows (in time order when ``time_ordered``), each held-out part
    holding both classes; empty when there are too few positives."""
    y = np.asarray(y)
    if time_ordered:
        splits = time_splits(len(y), TIME_FOLDS)
        kind = "time"
    else:
        k = min(5 if len(y) <= BIG else 3, int(y.sum()) // 2, int(len(y) - y.sum()) // 2)
        splits = fold_splits(stratified_folds(y, k, seed)) if k >= 2 else []
        kind = "stratified"
    usable = [(f, h) for f, h in splits if 2 <= y[h].sum() < len(h) and 2 <= y[f].sum() < len(f)]
    return kind, usable


def one_se_choice(order: list[str], scores: dict[str, Score]) -> tuple[str, str, str]:
    """``(best, chosen, reason)``: the simplest name in ``order`` within one paired standard error of the best."""
    best = max(order, key=lambda n: (scores[n].cv_pr_auc, -order.index(n)))
    top = np.asarray(scores[best].fold_pr_auc)
    for name in order:
        diff = top - np.asarray(scores[name].fold_pr_auc)
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if float(diff.mean()) <= se:
            if name == best:
                return best, name, (f"{name} has the best mean fold PR-AUC ({scores[name].cv_pr_auc:.4f}), more "
                                    "than one standard error above every simpler candidate")
            return best, name, (f"{name} ({scores[name].cv_pr_auc:.4f}) is within one standard error ({se:.4f}) of "
                                f"the best, {best} ({scores[best].cv_pr_auc:.4f}), and simpler")
    raise AssertionError("the best candidate is always within its own standard error")


def select(x: np.ndarray, y: np.ndarray, feature_names: list[str], base: PropensityConfig, *,
           categorical: list[str] | None = None, time_ordered: bool = False, seed: int = 0,
           strategies: tuple[str, ...] = STRATEGIES,
           parallel: int | None = None) -> tuple[Selection, Candidate, dict[str, Candidate]]:
    """Cross-validate the candidates on the training rows ``x, y`` (in time order when
    ``time_ordered``) and choose by the module's rule. Returns the selection, the chosen
    candidate with its round count set, and every candidate by name (round counts set).

    Candidates run side by side on ``parallel`` threads (default: the usable cores), each
    booster on one thread: on a busy machine a booster's OpenMP team waits for its slowest
    thread at every step, so one thread per booster is also the robust choice."""
    t0 = time.perf_counter()
    y = np.asarray(y, dtype=np.float64)
    kind, splits = make_splits(y, time_ordered, seed)
    cands = candidates(base.model_copy(update={"num_boost_round": min(base.num_boost_round, MAX_ROUNDS)}),
                       strategies)
    by_name = {c.name: c for c in cands}
    sel = Selection(folds=kind, k=len(splits), rows=len(y))
    if len(splits) < 2 if kind == "stratified" else not splits:
        sel.reason = f"too few positives ({int(y.sum())}) for {kind} folds: kept lightgbm_default"
        sel.seconds = round(time.perf_counter() - t0, 2)
        logger.warning("selection: %s", sel.reason)
        return sel, by_name[REFERENCE], by_name
    oof: dict[str, np.ndarray] = {}
    # XGBoost draws its row sampling from one process-wide generator: side by side it would not repeat
    workers = 1 if base.kind == "xgboost" else max(1, min(len(cands), parallel if parallel is not None
                                                         else cpu_count()))
    if workers > 1:  # one thread per booster, candidates side by side (LightGBM and XGBoost release the GIL)
        for c in cands:
            c.cfg = c.cfg.model_copy(update={"num_threads": 1})

    def run(c: Candidate) -> tuple[dict[str, Any], float]:
        t = time.perf_counter()
        res = cross_validate(c.cfg, x, y, splits, feature_names, every=c.cfg.num_boost_round if c.fixed_rounds
                             else EVERY, categorical=categorical or (), patience=0 if c.fixed_rounds else PATIENCE,
                             oof=True)
        if c.fixed_rounds:  # scored where it ends, not at its best round
            res.update(best_pr_auc=res["pr_auc"], best_rounds=res["rounds"])
        logger.info("selection: %s fold PR-AUC %.4f at %d rounds (%.1f s)", c.name, res["best_pr_auc"],
                    res["best_rounds"], time.perf_counter() - t)
        return res, time.perf_counter() - t

    # the longest runs first (the results do not depend on the order): the tandem booster without
    # reweighting and with focal loss usually run the most rounds, downsampling the fewest rows
    first = {"none": 0, "focal": 1, REFERENCE: 2, "weight": 3, "downsample": 4}
    with ThreadPoolExecutor(workers, thread_name_prefix="cv") as pool:
        futures = {c.name: pool.submit(run, c) for c in sorted(cands, key=lambda c: first.get(c.name, 5))}
        results = [futures[c.name].result() for c in cands]
    for c, (res, seconds) in zip(cands, results, strict=True):
        c.cfg = c.cfg.model_copy(update={"num_boost_round": int(res["best_rounds"]), "early_stopping_rounds": 0,
                                         "num_threads": base.num_threads})
        sel.candidates[c.name] = Score(float(res["best_pr_auc"]), res["fold_pr_auc"], int(res["best_rounds"]),
                                       round(seconds, 2))
        oof[c.name] = res["oof_margin"]
    sel.best, sel.chosen, sel.reason = one_se_choice([c.name for c in cands], sel.candidates)
    groups = np.full(len(y), -1)
    for i, (_, held) in enumerate(splits):
        groups[held] = i
    sel.calibration, sel.calibration_log_loss = _calibration(by_name[sel.chosen], oof[sel.chosen], y, groups)
    sel.reference_calibration = (sel.calibration if sel.chosen == REFERENCE
                                 else _calibration(by_name[REFERENCE], oof[REFERENCE], y, groups)[0])
    sel.seconds = round(time.perf_counter() - t0, 2)
    logger.info("selection: chose %s (%s); calibration %s", sel.chosen, sel.reason, sel.calibration)
    return sel, by_name[sel.chosen], by_name


def _calibration(c: Candidate, margin: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[Method,
                                                                                           dict[str, float]]:
    held = groups >= 0
    keep = c.cfg.keep_rate if c.cfg.imbalance == "downsample" else 1.0
    return choose_method(sigmoid(margin[held]), y[held], groups[held], keep_rate=keep)


def guard(sel: Selection, y_val: np.ndarray, chosen_scores: np.ndarray | None,
          reference_scores: np.ndarray) -> bool:
    """Validation check after the final fit: ``True`` (and the selection records it) when the
    reference must be kept because the chosen model's validation PR-AUC is below it."""
    from models.evaluation.classification import pr_auc

    y_val = np.asarray(y_val)
    if y_val.size == 0 or y_val.min() == y_val.max():
        sel.validation = {"note": "validation split lacks a class: no validation check"}
        return False
    ref = pr_auc(y_val, reference_scores)
    if chosen_scores is None or sel.chosen == REFERENCE:
        sel.validation = {"pr_auc": {REFERENCE: round(ref, 6)}}
        return False
    mine = pr_auc(y_val, chosen_scores)
    sel.validation = {"pr_auc": {sel.chosen: round(mine, 6), REFERENCE: round(ref, 6)}}
    if mine < ref:
        sel.kept_reference = True
        sel.reason = (f"{sel.chosen} won on the training folds but is below {REFERENCE} on validation "
                      f"({mine:.4f} < {ref:.4f}): kept {REFERENCE}")
        sel.calibration = sel.reference_calibration
        logger.warning("selection: %s", sel.reason)
        return True
    return False
