"""Model reports: PR and calibration curves for propensity, Recall@k and MRR@k by cutoff for a
recommender. Plain data in (labels and scores; ranks of the true next item), HTML out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models.evaluation.classification import brier, expected_calibration_error, pr_auc, pr_curve
from pipelines.reports.html import Section, esc, figure, render_page, write_page

logger = logging.getLogger(__name__)

MODEL_REPORT = "report.html"
"""The model report's name inside a model artifact (and so inside its registry version)."""

COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f")


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per equal-width score bin: mean score, observed positive rate, count (empty bins dropped)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    keep = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=bins) / n
        rate = np.bincount(idx, weights=y, minlength=bins) / n
    return pd.DataFrame({"mean_score": mean_p[keep], "observed_rate": rate[keep], "count": n[keep]})


def recall_mrr_by_cutoff(ranks: np.ndarray, ks: Sequence[int]) -> pd.DataFrame:
    """Recall@k and MRR@k from 1-based ranks of the true item (``inf`` or 0 = not ranked)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("recall_mrr_by_cutoff: no ranks")
    r = np.where(r <= 0, np.inf, r)
    rows = [{"k": int(k), "recall": float(np.mean(r <= k)), "mrr": float(np.mean(np.where(r <= k, 1.0 / r, 0.0)))}
            for k in ks]
    return pd.DataFrame(rows)


def render_propensity_report(y: np.ndarray, scores: Mapping[str, np.ndarray], *, title: str = "Propensity model",
                             subtitle: str = "", bins: int = 10) -> str:
    """PR curves and a calibration (reliability) diagram for one or more scorers on the same labels."""
    y = np.asarray(y, dtype=np.float64)
    if not scores:
        raise ValueError("render_propensity_report: no scores to plot")
    fig_pr = figure(6.0, 4.5)
    ax = fig_pr.subplots()
    fig_cal = figure(6.0, 4.5)
    axc = fig_cal.subplots()
    axc.plot([0, 1], [0, 1], color="#888", ls=":", label="perfectly calibrated")
    rows = []
    for i, (name, p) in enumerate(scores.items()):
        p = np.asarray(p, dtype=np.float64)
        precision, recall, _ = pr_curve(y, p)
        ap = pr_auc(y, p)
        c = COLORS[i % len(COLORS)]
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", color=c, label=f"{name} (AP {ap:.3f})")
        cal = calibration_curve(y, p, bins)
        axc.plot(cal["mean_score"], cal["observed_rate"], marker="o", color=c, label=name)
        rows.append({"model": name, "PR-AUC": ap, "Brier": brier(y, p), "ECE": expected_calibration_error(y, p, bins)})
    ax.axhline(float(y.mean()), color="#888", ls=":", label=f"base rate {y.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    axc.set_xlabel("mean predicted probability")
    axc.set_ylabel("observed rate")
    axc.set_title(f"Calibration ({bins} equal-width bins)")
    axc.grid(alpha=0.3)
    axc.legend(fontsize=8)
    sec = Section("Ranking and calibration", [esc(f"{y.size:,} rows, {int(y.sum()):,} positives.")],
                  plots=[("pr_curve", fig_pr), ("calibration", fig_cal)], tables=[pd.DataFrame(rows)])
    return render_page(title, subtitle or "propensity", [sec])


def cutoffs_from_metrics(metrics: Mapping[str, float]) -> pd.DataFrame:
    """Recall@k and MRR@k by cutoff from an evaluation's ``recall@K`` / ``mrr@K`` entries."""
    ks = sorted({int(k.split("@", 1)[1]) for k in metrics if k.startswith("recall@") and k[7:].isdigit()})
    if not ks:
        raise ValueError("cutoffs_from_metrics: no recall@k entries")
    return pd.DataFrame([{"k": k, "recall": float(metrics[f"recall@{k}"]), "mrr": float(metrics.get(f"mrr@{k}", np.nan))}
                         for k in ks])


def render_recommender_report(ranks: Mapping[str, np.ndarray | Mapping[str, float]], *,
                              ks: Sequence[int] = (1, 5, 10, 20, 50, 100),
                              title: str = "Recommender", subtitle: str = "", n_events: int | None = None) -> str:
    """Recall@k and MRR@k by cutoff for one or more recommenders on the same test events: per
    recommender, the ranks of the true next items, or its evaluation's ``recall@k``/``mrr@k`` metrics."""
    if not ranks:
        raise ValueError("render_recommender_report: no ranks to plot")
    fig = figure(10.0, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    table = []
    shown: set[int] = set()
    for i, (name, r) in enumerate(ranks.items()):
        df = cutoffs_from_metrics(r) if isinstance(r, Mapping) else recall_mrr_by_cutoff(r, ks)
        shown.update(int(k) for k in df["k"])
        c = COLORS[i % len(COLORS)]
        ax1.plot(df["k"], df["recall"], marker="o", color=c, label=name)
        ax2.plot(df["k"], df["mrr"], marker="o", color=c, label=name)
        table.append({"model": name, **{f"R@{k}": v for k, v in zip(df["k"], df["recall"], strict=True)}})
    for ax, what in ((ax1, "Recall@k"), (ax2, "MRR@k")):
        ax.set_xscale("log")
        ax.set_xticks(sorted(shown), [str(k) for k in sorted(shown)])
        ax.set_xlabel("cutoff k")
        ax.set_ylabel(what)
        ax.set_title(f"{what} by cutoff")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    first = next(iter(ranks.values()))
    n = n_events if n_events is not None else (int(first.get("n", 0)) if isinstance(first, Mapping) else len(first))
    sec = Section("Next-item accuracy by cutoff", [esc(f"{n:,} test events.")], plots=[("recall_at_k", fig)],
                  tables=[pd.DataFrame(table)])
    return render_page(title, subtitle or "session recommender", [sec])


def write_propensity_report(y: np.ndarray, scores: Mapping[str, np.ndarray], path: str | os.PathLike[str],
                            **kw: object) -> Path:
    return write_page(render_propensity_report(y, scores, **kw), path)  # type: ignore[arg-type]


def write_recommender_report(ranks: Mapping[str, np.ndarray | Mapping[str, float]], path: str | os.PathLike[str],
                             **kw: object) -> Path:
    return write_page(render_recommender_report(ranks, **kw), path)  # type: ignore[arg-type]
