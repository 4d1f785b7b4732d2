"""Promote a registered propensity model to champion behind gates, or roll the champion back.

``python -m jobs.promote --registry URI --candidate VERSION|latest [--holdout PATH --label COL
[--time-column COL]] [--tolerance 0.01] [--psi-max 0.25] [--json]``
``python -m jobs.promote --registry URI --rollback [--json]``

Gates (all must pass; a refusal names each failed gate with its numbers, exits 1 and
leaves the registry unchanged):

- ``pr_auc``: the candidate is not worse than the champion on the SAME holdout:
  PR-AUC(candidate) >= PR-AUC(champion) - tolerance. With ``--holdout`` both models score
  the table with ``PropensityPredictor`` (with ``--time-column`` only rows later than both
  models' validation data are used, so neither has seen them). Without it, the test metrics
  stored with each artifact are compared only when both were evaluated on the same data
  window; otherwise the gate fails and asks for ``--holdout``.
- ``not_collapsed``: the candidate's scores spread (std > epsilon, more than one distinct
  value) and their mean is within ``--base-rate-ratio`` of the observed base rate.
- ``psi``: with ``--holdout``, PSI of the candidate's holdout scores against its own stored
  validation quantiles <= bound (the PSI against the champion's validation scores is reported
  too); without it, PSI of the candidate's validation scores against the champion's <= bound.
  Stored distributions are 21 quantiles, so bin shares come from their CDF.

With no champion yet, the candidate becomes champion (the distribution gate still applies).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.evaluation.classification import pr_auc
from models.propensity.data import DataError, binary_label, load_table
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from store.registry import ModelVersion, Registry, RegistryError, load_predictor

logger = logging.getLogger(__name__)

STD_EPS = 1e-6
WINDOW_KEYS_IGNORED = {"rows"}



class PromoteConfig(BaseModel):
    """What ``promote`` needs (``python -m jobs.promote`` flags, same names)."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(description="registry URI (local dir or s3://)")
    candidate: str | None = Field(None, description="version to promote, or 'latest'")
    holdout: str | None = Field(None, description="table (Parquet/CSV) to score both models on")
    label: str | None = Field(None, description="label column of holdout")
    time_column: str | None = None
    tolerance: float = Field(0.01, ge=0, description="allowed PR-AUC drop vs the champion")
    psi_max: float = Field(0.25, gt=0, description="bound on the score PSI")
    base_rate_ratio: float = Field(3.0, gt=1)

    @model_validator(mode="after")
    def _holdout_needs_label(self) -> PromoteConfig:
        if self.holdout and not self.label:
            raise ValueError("holdout needs label (--holdout needs --label)")
        return self


def rollback(registry_uri: str) -> dict[str, Any]:
    """Restore the previous champion."""
    reg = Registry(registry_uri)
    current = reg.champion(REGISTRY_NAME)
    result = {"action": "rollback", "from": current, "champion": reg.rollback(REGISTRY_NAME)}
    logger.info("rolled back %s -> %s", current, result["champion"])
    return result

@dataclass
class Gate:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Holdout:
    features: pd.DataFrame
    y: np.ndarray
    source: str


def resolve_candidate(reg: Registry, candidate: str) -> str:
    """A version id; ``latest`` is the most recently registered version."""
    versions = reg.versions(REGISTRY_NAME)
    if not versions:
        raise RegistryError(f"{REGISTRY_NAME}: no registered versions at {reg.uri}")
    if candidate != "latest":
        if candidate not in versions:
            raise RegistryError(f"{REGISTRY_NAME}: candidate {candidate!r} is not registered at {reg.uri}")
        return candidate
    return max(versions, key=lambda v: (float(reg.get(REGISTRY_NAME, v).meta.get("registered_at", 0)), v))


def _metrics(mv: ModelVersion, pred: PropensityPredictor) -> dict[str, Any]:
    return mv.meta.get("metrics") or pred.metrics or {}


def _window(mv: ModelVersion) -> dict[str, Any]:
    return {k: v for k, v in (mv.meta.get("data_window") or {}).items() if k not in WINDOW_KEYS_IGNORED}


def _validation_max(mv: ModelVersion) -> pd.Timestamp | None:
    value = (mv.meta.get("data_window") or {}).get("validation_max")
    try:
        return pd.Timestamp(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def load_holdout(path: str, label: str, time_column: str | None, models: list[ModelVersion]) -> Holdout:
    """The holdout table; with a time column, only rows after every model's validation window."""
    raw = load_table(path)
    y = binary_label(raw, label, path).astype(np.float64)
    if time_column:
        if time_column not in raw.columns:
            raise DataError(f"{path}: time column {time_column!r} not found; columns are {list(raw.columns)}")
        edges = [t for t in (_validation_max(mv) for mv in models) if t is not None]
        if edges:
            cutoff = max(edges)
            times = pd.to_datetime(raw[time_column])
            keep = (times > cutoff).to_numpy()
            logger.info("holdout %s: %d of %d rows after %s (the latest validation data)", path, keep.sum(),
                        len(raw), cutoff)
            raw, y = raw.loc[keep], y[keep]
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise DataError(f"{path}: holdout has {len(y)} usable rows with {int(y.sum())} positives; "
                        "need both classes to compare PR-AUC")
    return Holdout(raw.drop(columns=[label]), y, path)


def gate_pr_auc(cand: ModelVersion, cand_pred: PropensityPredictor, champ: ModelVersion,
                champ_pred: PropensityPredictor, holdout: Holdout | None, cand_scores: np.ndarray | None,
                tolerance: float) -> Gate:
    if holdout is not None and cand_scores is not None:
        c, h = pr_auc(holdout.y, cand_scores), pr_auc(holdout.y, champ_pred.predict_proba(holdout.features))
        where = f"holdout {holdout.source} ({len(holdout.y)} rows)"
    else:
        if _window(cand) != _window(champ) or not _window(cand):
            return Gate("pr_auc", False, "candidate and champion were tested on different data windows "
                        f"({_window(cand)} vs {_window(champ)}); pass --holdout PATH --label COL to score "
                        "both on the same data", {})
        ct, ht = _metrics(cand, cand_pred).get("test", {}), _metrics(champ, champ_pred).get("test", {})
        if "pr_auc" not in ct or "pr_auc" not in ht:
            return Gate("pr_auc", False, "stored test PR-AUC missing from an artifact; pass --holdout", {})
        c, h = float(ct["pr_auc"]), float(ht["pr_auc"])
        where = "stored test metrics (same data window)"
    ok = c >= h - tolerance
    return Gate("pr_auc", ok, f"candidate PR-AUC {c:.4f} vs champion {h:.4f} on {where}; "
                f"{'within' if ok else 'worse than'} tolerance {tolerance}",
                {"candidate": round(c, 6), "champion": round(h, 6), "tolerance": tolerance})


def gate_not_collapsed(cand_pred: PropensityPredictor, cand_meta: dict[str, Any], holdout: Holdout | None,
                       cand_scores: np.ndarray | None, ratio: float) -> Gate:
    if cand_scores is not None and holdout is not None:
        scores, base, where = cand_scores, float(holdout.y.mean()), "holdout"
    else:
        q = np.asarray(cand_meta.get("validation_scores") or [], dtype=np.float64)
        if q.size == 0:
            return Gate("not_collapsed", False, "no holdout and no stored validation_scores to check", {})
        scores, base, where = q, float(cand_pred.base_rate), "stored validation quantiles"
    std, distinct, mean = float(np.std(scores)), int(np.unique(np.round(scores, 9)).size), float(np.mean(scores))
    problems = []
    if std <= STD_EPS:
        problems.append(f"score std {std:.2e} <= {STD_EPS:.0e}")
    if distinct < 2:
        problems.append("all scores equal")
    # quantiles are not a sample of the mean; check the base rate only on real scores
    if where == "holdout" and base > 0 and not (base / ratio <= mean <= base * ratio):
        problems.append(f"mean score {mean:.4f} outside [{base / ratio:.4f}, {base * ratio:.4f}] "
                        f"(base rate {base:.4f} / x{ratio})")
    detail = "; ".join(problems) or f"std {std:.4f}, {distinct} distinct, mean {mean:.4f} vs base rate {base:.4f}"
    return Gate("not_collapsed", not problems, f"{detail} on {where}",
                {"std": round(std, 6), "distinct": distinct, "mean": round(mean, 6), "base_rate": round(base, 6)})


def _cdf_from_quantiles(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(score <= x) from evenly spaced quantiles (levels 0..1); ties (atoms) take the top level."""
    levels = np.linspace(0.0, 1.0, q.size)
    values, last = np.unique(q[::-1], return_index=True)  # for each distinct value, its highest level
    top = levels[::-1][last]
    return np.interp(x, values, top, left=0.0, right=1.0)


def psi_quantiles(expected_q: np.ndarray, actual: np.ndarray, actual_is_sample: bool, bins: int = 10) -> float:
    """PSI of ``actual`` (quantiles, or a raw sample) against stored quantiles, on the expected deciles.

    The stored summaries are 21 quantiles, not samples, so bin shares come from the
    quantile CDF (exact for the expected distribution up to its 5 % resolution).
    """
    expected_q = np.sort(np.asarray(expected_q, dtype=np.float64))
    edges = np.unique(np.quantile(expected_q, np.linspace(0, 1, bins + 1))[1:-1])
    cdf_e = np.concatenate([[0.0], _cdf_from_quantiles(expected_q, edges), [1.0]])
    if actual_is_sample:
        a = np.sort(np.asarray(actual, dtype=np.float64))
        cdf_a = np.concatenate([[0.0], np.searchsorted(a, edges, side="right") / max(a.size, 1), [1.0]])
    else:
        cdf_a = np.concatenate([[0.0], _cdf_from_quantiles(np.sort(np.asarray(actual, np.float64)), edges), [1.0]])
    e, a = np.maximum(np.diff(cdf_e), 1e-4), np.maximum(np.diff(cdf_a), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def gate_psi(cand_meta: dict[str, Any], champ_meta: dict[str, Any] | None, cand_scores: np.ndarray | None,
             psi_max: float) -> Gate:
    own = np.asarray(cand_meta.get("validation_scores") or [], dtype=np.float64)
    numbers: dict[str, Any] = {"max": psi_max}
    if champ_meta is not None and champ_meta.get("validation_scores") and own.size:
        numbers["vs_champion_validation"] = psi_quantiles(np.asarray(champ_meta["validation_scores"]), own, False)
    if cand_scores is not None and own.size:
        numbers["holdout_vs_own_validation"] = psi_quantiles(own, cand_scores, True)
    values = {k: v for k, v in numbers.items() if k != "max"}
    if not values:
        why = "no stored validation_scores" if not own.size else "no champion and no holdout"
        return Gate("psi", True, f"nothing to compare ({why})", numbers)
    # With a holdout the gate is the candidate's own drift (holdout vs its validation scores);
    # the PSI against the champion's validation scores is then reported only: two calibrated
    # models of the same data can differ there through isotonic ties alone.
    gated = ["holdout_vs_own_validation"] if "holdout_vs_own_validation" in values else list(values)
    bad = {k: values[k] for k in gated if not values[k] <= psi_max}
    text = ", ".join(f"PSI {k} {v:.4f}{'' if k in gated else ' (reported only)'}" for k, v in values.items())
    return Gate("psi", not bad, f"{text}; bound {psi_max}",
                {k: (round(v, 6) if np.isfinite(v) else str(v)) for k, v in numbers.items()})


def propensity_gates(reg: Registry, version: str, champion: str | None, holdout: Holdout | None,
                     tolerance: float = 0.01, psi_max: float = 0.25, base_rate_ratio: float = 3.0,
                     cache_dir: str | None = None) -> list[Gate]:
    """The propensity gates for ``version`` against ``champion`` (models from the shared model cache)."""
    cand = reg.get(REGISTRY_NAME, version)
    cand_pred = load_predictor(PropensityPredictor, reg.uri, version, cache_dir)
    champ = reg.get(REGISTRY_NAME, champion) if champion else None
    champ_pred = load_predictor(PropensityPredictor, reg.uri, champion, cache_dir) if champion else None
    cand_scores = cand_pred.predict_proba(holdout.features) if holdout is not None else None
    cand_metrics = _metrics(cand, cand_pred)
    gates = [gate_not_collapsed(cand_pred, cand_metrics, holdout, cand_scores, base_rate_ratio),
             gate_psi(cand_metrics, _metrics(champ, champ_pred) if champ and champ_pred else None, cand_scores,
                      psi_max)]
    if champ is not None and champ_pred is not None:
        gates.insert(0, gate_pr_auc(cand, cand_pred, champ, champ_pred, holdout, cand_scores, tolerance))
    return gates


def recommender_gates(reg: Registry, version: str, champion: str | None,
                      pairs: tuple[list[list[str]], list[str]], tolerance: float = 0.01, k: int = 20,
                      cache_dir: str | None = None) -> list[Gate]:
    """The recommender gates, the same policy as propensity's on the same holdout:

    - ``recall_at_k``: Recall@k(candidate) >= Recall@k(champion) - tolerance on the SAME
      next-item pairs (raw item ids, ``models.session_rec.data.raw_next_item_pairs``) (each model ranks in its own catalogue; a
      target it does not know is a miss), MRR@k reported;
    - ``not_collapsed``: the candidate's top-1 differs across prefixes (more than one item),
      and it hits at least one target when the champion does."""
    from models.session_rec.evaluate import evaluate_predictor
    from models.session_rec.predictor import SessionRecPredictor

    prefixes, targets = pairs
    if not targets:
        return [Gate("recall_at_k", False, "holdout has no session of 2+ items to evaluate on", {})]
    where = f"the same {len(targets)} holdout next-item pairs"
    cand = evaluate_predictor(load_predictor(SessionRecPredictor, reg.uri, version, cache_dir), prefixes, targets)
    rk, mk = f"recall@{k}", f"mrr@{k}"
    gates = []
    champ: dict[str, float] | None = None
    if champion:
        champ = evaluate_predictor(load_predictor(SessionRecPredictor, reg.uri, champion, cache_dir), prefixes,
                                   targets)
        ok = cand[rk] >= champ[rk] - tolerance
        gates.append(Gate("recall_at_k", ok, f"candidate {rk} {cand[rk]:.4f} vs champion {champ[rk]:.4f} "
                          f"(MRR {cand[mk]:.4f} vs {champ[mk]:.4f}) on {where}; "
                          f"{'within' if ok else 'worse than'} tolerance {tolerance}",
                          {"candidate": round(cand[rk], 6), "champion": round(champ[rk], 6),
                           "candidate_mrr": round(cand[mk], 6), "champion_mrr": round(champ[mk], 6),
                           "tolerance": tolerance, "pairs": len(targets)}))
    problems = []
    if cand["distinct_top1"] < 2 and len(targets) > 1:
        problems.append("the same top-1 item for every prefix")
    if champ is not None and champ[rk] > 0 and cand[rk] == 0:
        problems.append(f"no hit at {k} where the champion has {champ[rk]:.4f}")
    gates.append(Gate("not_collapsed", not problems, "; ".join(problems) or
                      f"{int(cand['distinct_top1'])} distinct top-1 items, {rk} {cand[rk]:.4f} on {where}",
                      {"distinct_top1": int(cand["distinct_top1"]), rk: round(cand[rk], 6)}))
    return gates


def apply_gates(reg: Registry, name: str, version: str, champion: str | None, gates: list[Gate],
                set_champion: bool = True) -> dict[str, Any]:
    """The decision of ``gates`` for ``version``: promote it (when all pass) or say why not."""
    ok = all(g.passed for g in gates)
    result: dict[str, Any] = {"action": "promote", "model": name, "candidate": version, "champion": champion,
                              "promoted": ok, "gates": [asdict(g) for g in gates]}
    if ok:
        detail = "; ".join(f"{g.name}: {g.detail}" for g in gates)
        if set_champion:
            reg.set_champion(name, version, detail if champion else "first champion; " + detail)
        result["champion"] = version
        result["previous_champion"] = champion
    else:
        result["reason"] = "; ".join(f"{g.name}: {g.detail}" for g in gates if not g.passed)
    return result


def promote(opts: PromoteConfig) -> dict[str, Any]:
    """Run the gates on ``opts.candidate``; set it champion only if every gate passes."""
    reg = Registry(opts.registry)
    version = resolve_candidate(reg, opts.candidate)
    champion = reg.champion(REGISTRY_NAME)
    if version == champion:
        return {"action": "promote", "candidate": version, "champion": champion, "promoted": False,
                "gates": [], "reason": f"{version} is already the champion"}
    holdout = None
    if opts.holdout:
        models = [reg.get(REGISTRY_NAME, v) for v in (version, champion) if v]
        holdout = load_holdout(opts.holdout, opts.label, opts.time_column, models)
    gates = propensity_gates(reg, version, champion, holdout, opts.tolerance, opts.psi_max, opts.base_rate_ratio)
    return apply_gates(reg, REGISTRY_NAME, version, champion, gates)
