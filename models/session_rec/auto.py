"""``--model auto``: the model family, its epochs and the hybrid weights, chosen on validation.

Every choice is made on a split carved from the end of the (time-ordered) training sessions:
the first ``1 - valid_fraction`` train the candidates, the rest give next-item validation pairs
(protocol (a): items the carve never saw are dropped, as for a test split). The test split is
never read here. Within ``time_budget_min`` of CPU time (this process's, plus the training
worker's; CPU time, not wall clock, so a busy shared machine changes how long the choice takes
but not what it chooses - on an idle machine with one torch thread the two are close):

1. the kNN candidates (``auto.knn``) are fitted on the carve (seconds);
2. the neural candidates (``auto.neural``) are probed and the best trained, epoch by epoch with
   validation, then fine-tuned on the held-out sessions (models.session_rec.neural_search), in the
   time the budget leaves after reserving what steps 3-4 are estimated to take;
3. every candidate, the repeat head at each ``repeat_taus`` and a neural part at each softmax
   temperature are scored once on the validation pairs (models.session_rec.blend.CandidateTable)
   and a weighted blend is grown greedily: start from the best single part, add the part and
   weight that most raise recall@20 + mrr@20, while the gain is at least ``min_gain``; then the
   weights and temperature are refined coordinate-wise;
4. the chosen kNN parts are refitted on all of train; the neural part is the fine-tuned network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.evaluation.ranking import next_item_pairs, ranking_metrics
from models.session_rec.base import SessionModel, item_counts
from models.session_rec.blend import CandidateTable, full_ranks
from models.session_rec.config import NEURAL_PARTS, AutoConfig, PartSpec
from models.session_rec.evaluate import fit_on
from models.session_rec.neural_search import NeuralOutcome, objective, search_neural
from models.session_rec.repeat import RepeatModel

logger = logging.getLogger(__name__)

FORWARD_STEPS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
REFINE_FACTORS = (0.5, 0.7, 1.4, 2.0)
SEARCH_SECONDS = 120.0  # reserved for the blend search


@dataclass
class Carve:
    """The validation carve of a training set (see the module doc)."""

    train: list[np.ndarray]
    holdout: list[np.ndarray]
    prefixes: list[np.ndarray]
    targets: np.ndarray
    n_pairs_all: int


def carve(sessions: Sequence[np.ndarray], n_items: int, fraction: float, max_pairs: int, seed: int) -> Carve:
    """First ``1 - fraction`` sessions train; next-item pairs of the rest (a seeded sample of at most
    ``max_pairs``, in order) validate."""
    cut = int(round(len(sessions) * (1 - fraction)))
    if cut < 1 or cut >= len(sessions):
        raise ValueError(f"{len(sessions)} training sessions: too few to carve a validation split of {fraction}")
    train, holdout = list(sessions[:cut]), list(sessions[cut:])
    known = item_counts(train, n_items) > 0
    prefixes, targets = next_item_pairs(s[known[s]] for s in holdout)
    n_all = len(prefixes)
    if not n_all:
        raise ValueError("the validation carve has no next-item pair with items seen in the carved train split")
    if n_all > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(n_all, max_pairs, replace=False))
        prefixes, targets = [prefixes[i] for i in keep], targets[keep]
    return Carve(train, holdout, prefixes, targets, n_all)


@dataclass
class Candidate:
    name: str
    model_type: str
    params: dict[str, Any]
    model: SessionModel  # fitted on the carve
    fit_seconds: float = 0.0


@dataclass
class BlendChoice:
    names: list[str]
    weights: list[float]
    temperatures: list[float]
    value: float
    path: list[dict[str, Any]] = field(default_factory=list)


def search_blend(table: CandidateTable, names: Sequence[str], exclusive: Sequence[Sequence[int]] = (),
                 min_gain: float = 0.0005) -> BlendChoice:
    """Greedy forward selection then coordinate refinement of weights and temperatures (module doc, step 3).

    ``exclusive``: groups of columns of which at most one may join (the repeat head's taus)."""
    n = len(names)
    neural = [table.lse[i] is not None for i in range(n)]
    temps_grid = table.temperatures

    def figures(w: np.ndarray, t: Sequence[float]) -> dict[str, float]:
        ranks, need_full = table.ranks(list(w), list(t))
        if need_full.size:  # rows the table cannot settle: their count is a lower bound of the rank
            ranks[need_full] = _lower_bound(table, w, t, need_full)
        return ranking_metrics(ranks, (20,))

    def value(w: np.ndarray, t: Sequence[float]) -> float:
        return objective(figures(w, t))

    temps = [1.0] * n
    single_figures = [figures(np.eye(n)[i], temps) for i in range(n)]
    singles = [objective(f) for f in single_figures]
    best = int(np.argmax(singles))
    w = np.eye(n)[best]
    cur = singles[best]
    path: list[dict[str, Any]] = [{"step": "start", "part": names[best], "value": round(cur, 6),
                                   "singles": {names[i]: round(v, 6) for i, v in enumerate(singles)},
                                   "singles_recall@20_mrr@20": {names[i]: [round(f["recall@20"], 4),
                                                                           round(f["mrr@20"], 4)]
                                                                for i, f in enumerate(single_figures)}}]

    def blocked(i: int) -> bool:
        return any(i in g and any(w[j] > 0 for j in g if j != i) for g in exclusive)

    while True:
        trial_best: tuple[float, int, float, float] | None = None
        for i in range(n):
            if w[i] > 0 or blocked(i):
                continue
            for a in FORWARD_STEPS:
                cand_w = (1 - a) * w + a * np.eye(n)[i]
                for t in (temps_grid if neural[i] else (1.0,)):
                    cand_t = list(temps)
                    cand_t[i] = t
                    v = value(cand_w, cand_t)
                    if trial_best is None or v > trial_best[0]:
                        trial_best = (v, i, a, t)
        if trial_best is None or trial_best[0] < cur + min_gain:
            break
        v, i, a, t = trial_best
        w = (1 - a) * w + a * np.eye(n)[i]
        temps[i] = t
        cur = v
        path.append({"step": "add", "part": names[i], "share": a, "temperature": t, "value": round(v, 6)})
    for _ in range(3):  # refinement rounds
        improved = False
        for i in (int(j) for j in np.nonzero(w)[0]):
            if np.count_nonzero(w) == 1:
                break
            for f in REFINE_FACTORS:
                cand_w = w.copy()
                cand_w[i] *= f
                cand_w /= cand_w.sum()
                v = value(cand_w, temps)
                if v > cur + 1e-6:
                    w, cur, improved = cand_w, v, True
            if neural[i]:
                for t in temps_grid:
                    cand_t = list(temps)
                    cand_t[i] = t
                    v = value(w, cand_t)
                    if v > cur + 1e-6:
                        temps, cur, improved = cand_t, v, True
        if not improved:
            break
    path.append({"step": "refined", "value": round(cur, 6),
                 "weights": {names[int(i)]: round(float(w[i]), 4) for i in np.nonzero(w)[0]}})
    chosen = [int(i) for i in np.nonzero(w)[0]]
    total = float(w.sum())
    return BlendChoice([names[i] for i in chosen], [round(float(w[i]) / total, 6) for i in chosen],
                       [temps[i] for i in chosen], cur, path)


def _lower_bound(table: CandidateTable, w: np.ndarray, t: Sequence[float], rows: np.ndarray) -> np.ndarray:
    """The candidate count of ``rows`` (a lower bound of the rank) - used only inside the search."""
    mix = np.zeros((len(rows), table.cand.shape[1]))
    for i, (wi, ti) in enumerate(zip(w, t, strict=True)):
        if wi:
            v, _ = table.dist(i, ti)
            mix += wi * v[rows]
    mix32 = mix.astype(np.float32)
    count: np.ndarray = ((mix32 >= mix32[:, -1:]) & table.first[rows]).sum(axis=1).astype(np.float64)
    return count


# (candidates, carve, n_items, seed, CPU seconds allowed) -> the search's outcome
NeuralRunner = Callable[[Sequence[PartSpec], Carve, int, int, float], "NeuralOutcome | None"]


def in_process_neural(candidates: Sequence[PartSpec], cv: Carve, n_items: int, seed: int, allowance_s: float,
                      epoch_pairs: int = 5000, patience: int = 2,
                      clock: Callable[[], float] = time.process_time) -> NeuralOutcome | None:
    """The neural search in this process (tests, research); the job runs it in a Ray Train worker."""
    return search_neural(candidates, cv.train, cv.holdout, cv.prefixes[:epoch_pairs], cv.targets[:epoch_pairs],
                         n_items, seed, clock() + allowance_s, patience=patience, clock=clock)


@dataclass
class AutoResult:
    model: SessionModel
    parts: list[str]
    weights: list[float]
    temperatures: list[float]
    report: dict[str, Any]


def run_auto(sessions: Sequence[np.ndarray], n_items: int, cfg: AutoConfig, seed: int = 42,
             neural: NeuralRunner | None = None, clock: Callable[[], float] = time.process_time,
             item_category: np.ndarray | None = None) -> AutoResult:
    """Steps 1-4 of the module doc on encoded, time-ordered training sessions. ``clock``: this
    process's CPU seconds; ``neural`` reports the CPU its worker used (its outcome's ``seconds``).
    ``item_category`` (a category index per item) adds the category fallback as a candidate."""

    def fit(model_type: str, train: list[np.ndarray], params: dict[str, Any]) -> SessionModel:
        if model_type == "category":
            from models.session_rec.cold import CategoryModel

            assert item_category is not None
            return CategoryModel.fit(train, item_category, **params)
        return fit_on(model_type, train, n_items, params)

    t_start = clock()
    wall_start = time.monotonic()
    budget = cfg.time_budget_min * 60.0
    cv = carve(sessions, n_items, cfg.valid_fraction, cfg.valid_pairs, seed)
    timings: dict[str, float] = {}
    cands: list[Candidate] = []
    probe = cv.prefixes[:256]
    score_est = 0.0  # seconds to score all validation pairs with every kNN candidate
    specs = list(cfg.knn)
    if item_category is not None:
        specs.append(PartSpec(name="category", model="category"))
    for spec in specs:
        t0 = clock()
        params = spec.resolved()
        fitted = fit(spec.model, cv.train, params)
        fit_s = clock() - t0
        t0 = clock()
        fitted.score(probe)
        score_est += (clock() - t0) * len(cv.prefixes) / max(len(probe), 1)
        cands.append(Candidate(spec.name, spec.model, params, fitted, fit_s))
    timings["knn_fit_seconds"] = clock() - t_start
    outcome: NeuralOutcome | None = None
    neural_specs = list(cfg.neural)
    if neural_specs:
        reserve = score_est * 1.3 + SEARCH_SECONDS + sum(c.fit_seconds for c in cands) * 1.5
        allowance = budget - (clock() - t_start) - reserve
        runner = neural or (lambda c, v, n, s, a: in_process_neural(c, v, n, s, a, cfg.epoch_valid_pairs,
                                                                       cfg.patience, clock))
        if allowance > 0:
            outcome = runner(neural_specs, cv, n_items, seed, allowance)
        else:
            logger.info("auto: the budget leaves no time for the neural candidates")
        timings["neural_cpu_seconds"] = outcome.seconds if outcome is not None else 0.0
    parts: list[tuple[str, str, dict[str, Any], SessionModel]] = [(c.name, c.model_type, c.params, c.model)
                                                                  for c in cands]
    if outcome is not None:
        parts.append((outcome.name, outcome.model_type, outcome.params, outcome.carve))
    repeat_cols = []
    for tau in cfg.repeat_taus:
        repeat_cols.append(len(parts))
        parts.append((f"repeat_tau{tau:g}", "repeat", {"tau": tau}, RepeatModel(n_items, tau)))
    t0 = clock()
    table = CandidateTable.build([p[3] for p in parts], cv.prefixes, cv.targets)
    timings["valid_scoring_seconds"] = clock() - t0
    t0 = clock()
    choice = search_blend(table, [p[0] for p in parts], [repeat_cols], cfg.min_gain)
    timings["blend_search_seconds"] = clock() - t0
    # the chosen blend's exact validation figures
    idx = [[p[0] for p in parts].index(nm) for nm in choice.names]
    w_full = np.zeros(len(parts))
    t_full = [1.0] * len(parts)
    for i, wi, ti in zip(idx, choice.weights, choice.temperatures, strict=True):
        w_full[i], t_full[i] = wi, ti
    ranks, need_full = table.ranks(list(w_full), t_full)
    if need_full.size:
        ranks[need_full] = full_ranks([parts[i][3] for i in idx], choice.weights, choice.temperatures,
                                      [cv.prefixes[r] for r in need_full], cv.targets[need_full])
    valid = {k: round(v, 6) for k, v in ranking_metrics(ranks, (20, 10)).items()}
    t0 = clock()
    final_parts: list[SessionModel] = []
    for i in idx:
        name, model_type, params, _ = parts[i]
        if model_type in NEURAL_PARTS:
            assert outcome is not None
            final_parts.append(outcome.final)
        else:
            final_parts.append(fit(model_type, list(sessions), params))
    timings["final_fit_seconds"] = clock() - t0
    timings["cpu_seconds"] = clock() - t_start + (timings.get("neural_cpu_seconds", 0.0) if neural else 0.0)
    timings["wall_seconds"] = time.monotonic() - wall_start
    if len(final_parts) == 1:
        model: SessionModel = final_parts[0]
    else:
        from models.session_rec.hybrid import HybridModel

        model = HybridModel(final_parts, choice.weights, choice.temperatures)
    report: dict[str, Any] = {
        "chosen": [{"name": parts[i][0], "model_type": parts[i][1], "weight": w, "temperature": t,
                    "params": parts[i][2]} for i, w, t in zip(idx, choice.weights, choice.temperatures,
                                                                 strict=True)],
        "valid": valid, "valid_pairs": len(cv.prefixes), "valid_pairs_all": cv.n_pairs_all,
        "carve_sessions": len(cv.train), "holdout_sessions": len(cv.holdout),
        "search_path": choice.path, "budget_cpu_seconds": budget,
        **{k: round(v, 2) for k, v in timings.items()}}
    if outcome is not None:
        report["neural"] = {"chosen": outcome.name, "epochs": outcome.epochs, "probes": outcome.probes,
                            "curve": outcome.curve, "seconds": round(outcome.seconds, 2)}
    return AutoResult(model, [parts[i][0] for i in idx], choice.weights, choice.temperatures, report)
