"""Imbalanced binary classification metrics: PR-AUC first, then calibration and operating points.

Pure numpy. ``pr_auc`` is average precision (the step-wise area under the
precision-recall curve, as scikit-learn computes it); ties in scores are
treated as one threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.size}) and scores ({p.size}) differ in length")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, p


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at each distinct score, highest score first."""
    y, p = _check(y, p)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]  # last index of each distinct score
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    pos = ys.sum()
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / pos if pos > 0 else np.zeros_like(tp)
    return precision, recall, ps[last]


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_n - R_{n-1}) * P_n."""
    precision, recall, _ = pr_curve(y, p)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    y, p = _check(y, p)
    n_pos, n_neg = y.sum(), (1 - y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty_like(p)
    sp = p[order]
    # average ranks for ties
    _, first, counts = np.unique(sp, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    y, p = _check(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean score| over equal-width score bins."""
    y, p = _check(y, p)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / y.size)


def recall_at_precision(y: np.ndarray, p: np.ndarray, min_precision: float) -> tuple[float, float]:
    """Highest recall with precision >= ``min_precision`` and its threshold (inf if none)."""
    precision, recall, thr = pr_curve(y, p)
    ok = precision >= min_precision
    if not ok.any():
        return 0.0, float("inf")
    best = np.flatnonzero(ok)[np.argmax(recall[ok])]
    return float(recall[best]), float(thr[best])


def precision_at_recall(y: np.ndarray, p: np.ndarray, min_recall: float) -> float:
    """Highest precision among thresholds with recall >= ``min_recall``."""
    precision, recall, _ = pr_curve(y, p)
    ok = recall >= min_recall
    return float(precision[ok].max()) if ok.any() else 0.0


@dataclass(frozen=True)
class ClassificationReport:
    rows: int
    positives: int
    pr_auc: float
    roc_auc: float
    log_loss: float
    brier: float
    ece: float
    recall_at_precision: float
    precision_at_recall: float
    min_precision: float
    min_recall: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def evaluate(y: np.ndarray, p: np.ndarray, min_precision: float = 0.3, min_recall: float = 0.5) -> ClassificationReport:
    y, p = _check(y, p)
    return ClassificationReport(
        rows=int(y.size), positives=int(y.sum()), pr_auc=pr_auc(y, p), roc_auc=roc_auc(y, p),
        log_loss=log_loss(y, p), brier=brier(y, p), ece=expected_calibration_error(y, p),
        recall_at_precision=recall_at_precision(y, p, min_precision)[0],
        precision_at_recall=precision_at_recall(y, p, min_recall),
        min_precision=min_precision, min_recall=min_recall,
    )


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` scores against ``expected`` (quantile bins)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        return 0.0 if np.allclose(actual, expected[0]) else float("inf")
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / expected.size
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / actual.size
    e, a = np.maximum(e, 1e-6), np.maximum(a, 1e-6)
    return float(np.sum((a - e) * np.log(a / e)))


def _weighted_curve(ys: np.ndarray, w: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct-score boundary ``last`` of rows sorted by descending
    score, each row counted ``w`` times."""
    tp = np.cumsum(w * ys)[last]
    seen = np.cumsum(w)[last]
    pos = tp[-1] if tp.size else 0.0
    precision = np.where(seen > 0, tp / np.maximum(seen, 1e-12), 1.0)
    recall = tp / pos if pos > 0 else np.zeros_like(tp)
    return precision, recall


def _ranked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="mergesort")
    ps = p[order]
    return order, y[order], np.r_[np.flatnonzero(np.diff(ps)), ps.size - 1]


def _interval(values: np.ndarray, level: float) -> list[float]:
    a = (1 - level) / 2
    return [round(float(np.quantile(values, a)), 6), round(float(np.quantile(values, 1 - a)), 6)]


def bootstrap(y: np.ndarray, scores: dict[str, np.ndarray], min_precision: float,
              thresholds: dict[str, float] | None = None, reference: str | None = None, n: int = 1000,
              seed: int = 0, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Percentile bootstrap over rows (the same resamples for every model, so differences are paired).

    Per model: ``pr_auc_ci``, ``recall_at_precision_ci`` (best recall with precision >=
    ``min_precision`` within each resample) and, for a model in ``thresholds``, the recall and
    precision at that fixed threshold (``recall_at_threshold_ci``, ``precision_at_threshold_ci``).
    With ``reference``, every other model also gets ``pr_auc_diff_ci`` (model minus reference)
    and ``ahead_share`` (share of resamples where it is ahead)."""
    y = np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ranked = {name: _ranked(y, np.asarray(p, dtype=np.float64)) for name, p in scores.items()}
    above = {name: np.asarray(scores[name]) >= t for name, t in (thresholds or {}).items()}
    draws: dict[str, dict[str, list[float]]] = {name: {"pr_auc": [], "recall_at_precision": [],
                                                       "recall_at_threshold": [], "precision_at_threshold": []}
                                                for name in scores}
    for _ in range(n):
        w = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size).astype(np.float64)
        if (w * y).sum() == 0:
            continue
        for name, (order, ys, last) in ranked.items():
            precision, recall = _weighted_curve(ys, w[order], last)
            d = draws[name]
            d["pr_auc"].append(float(np.sum(np.diff(np.r_[0.0, recall]) * precision)))
            ok = precision >= min_precision
            d["recall_at_precision"].append(float(recall[ok].max()) if ok.any() else 0.0)
            if name in above:
                hit = above[name]
                d["recall_at_threshold"].append(float((w * y * hit).sum() / (w * y).sum()))
                flagged = (w * hit).sum()
                d["precision_at_threshold"].append(float((w * y * hit).sum() / flagged) if flagged else 1.0)
    out: dict[str, dict[str, Any]] = {}
    for name, d in draws.items():
        out[name] = {f"{k}_ci": _interval(np.asarray(v), level) for k, v in d.items() if v}
    if reference is not None and reference in draws:
        ref = np.asarray(draws[reference]["pr_auc"])
        for name, d in draws.items():
            if name != reference:
                diff = np.asarray(d["pr_auc"]) - ref
                out[name]["pr_auc_diff_ci"] = _interval(diff, level)
                out[name]["ahead_share"] = round(float((diff > 0).mean()), 4)
    return out


def decile_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    """Rows ranked by score (highest first) in ``bins`` equal parts: per part its rows,
    positives, actual rate, mean / min / max score, lift over the overall rate, and the
    cumulative share of all positives captured down to it."""
    y, p = _check(y, p)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    edges = np.linspace(0, y.size, bins + 1).round().astype(int)
    overall, total = y.mean(), y.sum()
    rows, captured = [], 0.0
    for i in range(bins):
        a, b = edges[i], edges[i + 1]
        if b <= a:
            continue
        part_y, part_p = ys[a:b], ps[a:b]
        captured += part_y.sum()
        rows.append({"decile": i + 1, "rows": int(b - a), "positives": int(part_y.sum()),
                     "rate": round(float(part_y.mean()), 6), "mean_score": round(float(part_p.mean()), 6),
                     "min_score": round(float(part_p.min()), 6), "max_score": round(float(part_p.max()), 6),
                     "lift": round(float(part_y.mean() / overall), 4) if overall > 0 else 0.0,
                     "cumulative_recall": round(float(captured / total), 4) if total > 0 else 0.0})
    return rows
