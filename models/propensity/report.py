"""The test report of a propensity model next to its baselines, read once per final model.

Protocol: every model is scored on the same test rows. Point figures are ``evaluate``'s
(PR-AUC first); intervals are 95 % percentile bootstraps over test rows with the same
resamples for every model, so ``vs_lightgbm_default`` is a paired difference. The operating
point is the served threshold (chosen on validation) applied to test: its recall and
precision with their intervals. The decile table ranks test rows by score and puts each
tenth's actual rate beside its mean score (no uplift: scores against outcomes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.evaluation.classification import bootstrap, decile_table, evaluate

REFERENCE = "lightgbm_default"


def holdout_report(y: np.ndarray, scores: np.ndarray, baselines: dict[str, np.ndarray], threshold: float,
                min_precision: float, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"test": ..., "baselines": ..., "vs_lightgbm_default": ...}`` for the job's JSON."""
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    boot = bootstrap(y, {"model": scores, **baselines}, min_precision, thresholds={"model": threshold},
                     reference=REFERENCE if REFERENCE in baselines else None, n=resamples, seed=seed)
    flagged = scores >= threshold
    hits = float((flagged & (y == 1)).sum())
    test: dict[str, Any] = {
        **evaluate(y, scores, min_precision).as_dict(),
        "pr_auc_ci": boot["model"].get("pr_auc_ci"),
        "recall_at_precision_ci": boot["model"].get("recall_at_precision_ci"),
        "operating_point": {
            "threshold": float(threshold), "flagged": int(flagged.sum()),
            "recall": round(hits / y.sum(), 6) if y.sum() else 0.0,
            "precision": round(hits / flagged.sum(), 6) if flagged.any() else 1.0,
            "recall_ci": boot["model"].get("recall_at_threshold_ci"),
            "precision_ci": boot["model"].get("precision_at_threshold_ci"),
        },
        "deciles": decile_table(y, scores),
    }
    base = {name: {**evaluate(y, p, min_precision).as_dict(), "pr_auc_ci": boot[name].get("pr_auc_ci")}
            for name, p in baselines.items()}
    out: dict[str, Any] = {"test": test, "baselines": base}
    if REFERENCE in baselines:
        out["vs_lightgbm_default"] = {
            "pr_auc_diff": round(test["pr_auc"] - base[REFERENCE]["pr_auc"], 6),
            "pr_auc_diff_ci": boot["model"].get("pr_auc_diff_ci"),
            "ahead_share": boot["model"].get("ahead_share"),
            "bootstrap": f"{resamples} paired resamples of the {len(y)} test rows",
        }
    return out
