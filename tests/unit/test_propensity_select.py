"""The default pipeline's selection rule: time folds never train on the future, the one-standard-
error rule prefers the simpler model, default LightGBM is kept when nothing beats it (on the
folds or on validation), and the whole path runs on a generated CTR table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluation.classification import pr_auc
from models.propensity.auto import train_auto
from models.propensity.calibration import Calibrator, choose_method
from models.propensity.cv import time_splits
from models.propensity.data import LABEL, prepare
from models.propensity.model import PropensityConfig
from models.propensity.predictor import PropensityPredictor
from models.propensity.select import REFERENCE, Score, Selection, guard, make_splits, one_se_choice, select
from models.propensity.synthetic_ctr import generate_ctr


def test_time_splits_train_on_the_past_only() -> None:
    splits = time_splits(100, 3)
    assert len(splits) == 3
    for fit, held in splits:
        assert fit.max() < held.min() and fit.min() == 0
    assert [len(h) for _, h in splits] == [25, 25, 25]
    assert np.array_equal(np.concatenate([h for _, h in splits]), np.arange(25, 100))


def test_folds_without_both_classes_are_dropped() -> None:
    y = np.zeros(400)
    y[:40] = 1  # every positive in the first time block
    kind, splits = make_splits(y, time_ordered=True, seed=0)
    assert kind == "time" and splits == []
    kind, splits = make_splits(y, time_ordered=False, seed=0)
    assert kind == "stratified" and len(splits) == 5 and all(y[h].sum() == 8 for _, h in splits)


def _score(*folds: float) -> Score:
    return Score(float(np.mean(folds)), list(folds), 100, 0.0)


def test_one_standard_error_rule_prefers_the_simpler_candidate() -> None:
    order = [REFERENCE, "none", "weight"]
    # weight is best on average but within noise of none: none (simpler) is chosen
    scores = {REFERENCE: _score(0.60, 0.50, 0.55), "none": _score(0.70, 0.60, 0.66),
              "weight": _score(0.69, 0.63, 0.665)}
    best, chosen, reason = one_se_choice(order, scores)
    assert (best, chosen) == ("weight", "none") and "simpler" in reason
    # a consistent gain on every fold earns its place
    scores["weight"] = _score(0.75, 0.65, 0.71)
    assert one_se_choice(order, scores)[1] == "weight"
    # the reference within noise of the best: the reference is kept
    scores = {REFERENCE: _score(0.70, 0.60, 0.66), "none": _score(0.66, 0.64, 0.67),
              "weight": _score(0.60, 0.55, 0.60)}
    assert one_se_choice(order, scores)[1] == REFERENCE


def _frame(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logit = 1.5 * x[:, 0] * x[:, 1] + np.sin(3 * x[:, 2]) - 2.0
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)


def test_default_lightgbm_is_kept_when_the_candidates_are_worse_on_the_folds() -> None:
    # a crippled tandem booster (stumps, tiny learning rate, few rounds) cannot learn the
    # interaction: the rule must keep plain default LightGBM
    x, y = _frame(3000, 0)
    weak = PropensityConfig(num_leaves=2, max_depth=1, learning_rate=0.001, num_boost_round=20, num_threads=1)
    sel, chosen, _ = select(x, y, ["a", "b", "c", "d"], weak, strategies=("none", "weight"))
    assert chosen.name == REFERENCE and sel.chosen == REFERENCE and sel.best == REFERENCE
    assert sel.candidates[REFERENCE].rounds == 100 and sel.k == 5
    assert sel.candidates[REFERENCE].cv_pr_auc > sel.candidates["none"].cv_pr_auc + 0.05


def test_the_validation_guard_keeps_the_reference() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(float)
    good, bad = y + rng.normal(0, 0.5, 500), y + rng.normal(0, 1.5, 500)
    sel = Selection(folds="stratified", k=5, rows=1000, chosen="weight", calibration="isotonic",
                    reference_calibration="none")
    assert guard(sel, y, bad, good) is True
    assert sel.kept_reference and "below lightgbm_default on validation" in sel.reason
    assert sel.calibration == "none"  # the reference's own calibration choice
    assert sel.validation["pr_auc"]["weight"] < sel.validation["pr_auc"][REFERENCE]
    sel2 = Selection(folds="stratified", k=5, rows=1000, chosen="weight")
    assert guard(sel2, y, good, bad) is False and not sel2.kept_reference


def test_too_few_positives_keep_the_reference() -> None:
    x, y = _frame(200, 1)
    y[:] = 0
    y[:3] = 1
    sel, chosen, _ = select(x, y, ["a", "b", "c", "d"], PropensityConfig(num_threads=1))
    assert chosen.name == REFERENCE and "too few positives" in sel.reason


def test_calibration_choice_by_cross_fitted_log_loss() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.01, 0.6, 6000)
    y = (rng.random(6000) < p).astype(float)
    groups = np.arange(6000) % 3
    assert choose_method(p, y, groups)[0] == "none"  # already calibrated
    method, losses = choose_method(np.sqrt(p), y, groups)  # over-confident scores
    assert method in ("platt", "isotonic") and losses[method] < losses["none"]
    cal = Calibrator(method="platt").fit(np.sqrt(p), y)
    assert abs(cal(np.sqrt(p)).mean() - y.mean()) < 0.01
    assert np.all(np.diff(cal(np.sort(np.sqrt(p)))) >= 0)  # monotone: ranking unchanged


def test_the_default_path_on_a_generated_ctr_table(tmp_path: Path) -> None:
    table = generate_ctr(6000, seed=3)
    path = tmp_path / "ctr.csv"
    table.to_csv(path, index=False)
    prep = prepare(str(path), "click", "hour", seed=0)
    assert "device_ip" in prep.encoding.dropped and "_p_true" not in prep.features
    assert {"C1", "C2", "site_category"} <= set(prep.encoding.categorical)
    trained = train_auto(prep.parts, prep.encoding, PropensityConfig(num_boost_round=300, num_threads=1),
                         time_ordered=True)
    sel = trained.selection
    assert sel.folds == "time" and sel.k == 3 and set(sel.candidates) == {REFERENCE, "none", "weight", "downsample",
                                                                          "focal"}
    assert REFERENCE in sel.validation["pr_auc"]
    # never below the reference on validation
    val_scores = sel.validation["pr_auc"]
    assert val_scores.get(sel.chosen, val_scores[REFERENCE]) >= val_scores[REFERENCE] or sel.kept_reference
    from models.propensity.artifact import save

    save(tmp_path / "a", trained.booster, trained.artifact)
    pred = PropensityPredictor(str(tmp_path / "a"))
    raw_test = prep.raw.loc[prep.parts.test.index]
    scores = pred.predict_proba(raw_test)
    assert pr_auc(prep.parts.test[LABEL].to_numpy(), scores) > prep.parts.test[LABEL].mean() * 1.5
    # online rows arrive as JSON-like objects: same scores, and unseen values do not fail
    online = raw_test.head(20).astype(object)
    np.testing.assert_allclose(pred.predict_proba(online), scores[:20], rtol=1e-12)
    odd = online.assign(C1="never-seen", site_category=None, I1="garbage")
    assert np.isfinite(pred.predict_proba(odd)).all()
    assert pd.Series(trained.artifact.encoding["dropped"]).index.tolist() == list(prep.encoding.dropped)


@pytest.mark.parametrize("imbalance", ["downsample", "focal"])
def test_explicit_strategy_limits_the_candidates(imbalance: str) -> None:
    x, y = _frame(2000, 5)
    sel, _, by_name = select(x, y, ["a", "b", "c", "d"], PropensityConfig(num_boost_round=60, num_threads=1),
                             strategies=(imbalance,))
    assert set(sel.candidates) == {REFERENCE, imbalance}
    assert by_name[imbalance].cfg.imbalance == imbalance and by_name[imbalance].cfg.early_stopping_rounds == 0


def test_holdout_report_has_intervals_deciles_and_the_paired_difference() -> None:
    from models.propensity.report import holdout_report

    rng = np.random.default_rng(7)
    y = (rng.random(2000) < 0.15).astype(float)
    model = 1 / (1 + np.exp(-(3 * y + rng.normal(0, 1.2, 2000) - 2)))
    ref = 1 / (1 + np.exp(-(3 * y + rng.normal(0, 1.6, 2000) - 2)))
    rep = holdout_report(y, model, {"lightgbm_default": ref}, threshold=0.4, min_precision=0.3, resamples=200)
    t = rep["test"]
    assert t["pr_auc_ci"][0] < t["pr_auc"] < t["pr_auc_ci"][1]
    op = t["operating_point"]
    assert op["recall"] == pytest.approx(((model >= 0.4) & (y == 1)).sum() / y.sum(), abs=1e-6)
    assert op["recall_ci"][0] <= op["recall"] <= op["recall_ci"][1]
    assert len(t["deciles"]) == 10 and sum(d["positives"] for d in t["deciles"]) == y.sum()
    assert t["deciles"][0]["rate"] > t["deciles"][-1]["rate"]
    vs = rep["vs_lightgbm_default"]
    assert vs["pr_auc_diff"] == pytest.approx(t["pr_auc"] - rep["baselines"]["lightgbm_default"]["pr_auc"], abs=1e-6)
    assert vs["pr_auc_diff_ci"][0] <= vs["pr_auc_diff"] <= vs["pr_auc_diff_ci"][1]


def test_candidates_side_by_side_score_as_one_after_another() -> None:
    x, y = _frame(2500, 8)
    base = PropensityConfig(num_boost_round=80, num_threads=1)
    one, _, _ = select(x, y, ["a", "b", "c", "d"], base, strategies=("none", "weight", "focal"), parallel=1)
    many, _, _ = select(x, y, ["a", "b", "c", "d"], base, strategies=("none", "weight", "focal"), parallel=4)
    assert {k: (v.cv_pr_auc, v.rounds) for k, v in one.candidates.items()} == \
        {k: (v.cv_pr_auc, v.rounds) for k, v in many.candidates.items()}
    assert one.chosen == many.chosen and one.calibration == many.calibration


def test_xgboost_family_is_selected_against_default_lightgbm(tmp_path: Path) -> None:
    table = generate_ctr(3000, seed=9)
    path = tmp_path / "ctr.csv"
    table.to_csv(path, index=False)
    prep = prepare(str(path), "click", None, seed=0)
    trained = train_auto(prep.parts, prep.encoding, PropensityConfig(kind="xgboost", num_boost_round=100,
                                                                     num_threads=1), strategies=("none", "weight"))
    sel = trained.selection
    assert set(sel.candidates) == {REFERENCE, "none", "weight"}
    assert trained.cfg.kind == ("lightgbm" if trained.artifact.config["selected"] == REFERENCE else "xgboost")
    from models.propensity.artifact import save

    save(tmp_path / "a", trained.booster, trained.artifact)
    scores = PropensityPredictor(str(tmp_path / "a")).predict_proba(prep.raw.loc[prep.parts.test.index])
    assert np.isfinite(scores).all() and scores.std() > 0
