"""K-fold lockstep cross-validation: folds, downsampling inside folds, reports, parity with one fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.evaluation.classification import pr_auc
from models.propensity.cv import cross_validate, downsample_mask, stratified_folds, time_splits
from models.propensity.model import PropensityConfig, fit_booster, raw_margin


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 2.5)))).astype(np.float64)
    return x, y


def test_stratified_folds_balance_each_class() -> None:
    y = np.r_[np.ones(50), np.zeros(450)]
    folds = stratified_folds(y, 5, seed=1)
    for f in range(5):
        assert (folds == f).sum() == 100 and y[folds == f].sum() == 10
    np.testing.assert_array_equal(folds, stratified_folds(y, 5, seed=1))
    with pytest.raises(ValueError):
        stratified_folds(y, 1, seed=1)


def test_downsample_mask_keeps_positives() -> None:
    y = np.r_[np.ones(100), np.zeros(10_000)]
    keep = downsample_mask(y, 0.2, seed=0)
    assert keep[:100].all() and 0.18 < keep[100:].mean() < 0.22
    assert downsample_mask(y, 1.0, seed=0).all()


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("imbalance", ["weight", "downsample", "focal"])
def test_cross_validate_reports_every_step(kind: str, imbalance: str) -> None:
    x, y = _data()
    cfg = PropensityConfig(kind=kind, imbalance=imbalance, num_boost_round=25, num_threads=1,
                           early_stopping_rounds=0)
    reports: list[dict[str, Any]] = []
    last = cross_validate(cfg, x, y, stratified_folds(y, 3, 0), ["a", "b", "c"], every=10, report=reports.append)
    assert [r["rounds"] for r in reports] == [10, 20, 25] and {k: last[k] for k in reports[-1]} == reports[-1]
    assert len(last["fold_pr_auc"]) == 3 and np.mean(last["fold_pr_auc"]) == pytest.approx(last["best_pr_auc"])
    best = max(reports, key=lambda r: r["pr_auc"])
    assert last["best_pr_auc"] == best["pr_auc"] and last["best_rounds"] == best["rounds"]
    assert 0.4 < last["best_pr_auc"] <= 1 and last["pr_auc_std"] >= 0


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_lockstep_fold_equals_a_plain_fit(kind: str) -> None:
    # growing a booster round by round gives the model fit_booster trains on the same rows
    # (no row/column sampling: XGBoost draws it from one process-wide generator, which
    # interleaved folds consume in another order)
    x, y = _data(2000, 3)
    folds = stratified_folds(y, 2, 0)
    cfg = PropensityConfig(kind=kind, imbalance="weight", num_boost_round=15, num_threads=1, early_stopping_rounds=0,
                           bagging_fraction=1.0, feature_fraction=1.0)
    reports: list[dict[str, Any]] = []
    cross_validate(cfg, x, y, folds, ["a", "b", "c"], every=15, report=reports.append)
    expected = []
    for f in range(2):
        fit, held = folds != f, folds == f
        booster = fit_booster(cfg, x[fit], y[fit], None, None, ["a", "b", "c"])
        expected.append(pr_auc(y[held], raw_margin(booster, kind, x[held])))
    assert reports[-1]["pr_auc"] == pytest.approx(float(np.mean(expected)), abs=1e-9)


def test_patience_stops_and_out_of_fold_margins_come_from_the_best_round() -> None:
    x, y = _data(2000, 5)
    cfg = PropensityConfig(num_boost_round=400, num_threads=1, learning_rate=0.3, early_stopping_rounds=0)
    splits = time_splits(len(y), 3)
    reports: list[dict[str, Any]] = []
    res = cross_validate(cfg, x, y, splits, ["a", "b", "c"], every=10, report=reports.append, patience=30, oof=True)
    assert res["rounds"] < 400 and res["rounds"] - res["best_rounds"] >= 30  # stopped by patience
    oof = res["oof_margin"]
    assert np.isnan(oof[: splits[0][1][0]]).all() and not np.isnan(oof[splits[0][1][0]:]).any()
    # the held-out margins are those of a plain fit on the fold's past at the best round count
    fit, held = splits[1]
    booster = fit_booster(cfg.model_copy(update={"num_boost_round": res["best_rounds"]}), x[fit], y[fit], None, None,
                          ["a", "b", "c"])
    np.testing.assert_allclose(oof[held], raw_margin(booster, "lightgbm", x[held]), rtol=1e-9, atol=1e-9)
    means = [np.mean([pr_auc(y[h], oof[h]) for _, h in splits])]
    assert res["best_pr_auc"] == pytest.approx(means[0], abs=1e-9)


@pytest.mark.parametrize("threads", [1, 0])
def test_a_fold_says_its_thread_count_in_every_lightgbm_call(threads: int) -> None:
    """LightGBM keeps one thread count per process, reset by each call from its own params (0 = all
    cores). Side-by-side folds run on one thread each, so the training Dataset must carry that count
    too: one built without it resets the count under a fold that is predicting (a segfault in CI)."""
    from models.propensity.cv import FoldBooster

    x, y = _data(400)
    fold = FoldBooster(PropensityConfig(num_boost_round=2, num_threads=threads), x[:300], y[:300],
                       ["a", "b", "c"], x[300:], y[300:])
    dataset_params = fold.booster.train_set.params   # what the Dataset was constructed with
    if threads:
        assert dataset_params["num_threads"] == threads and fold.booster.params["num_threads"] == threads
    else:   # the library default throughout
        assert "num_threads" not in dataset_params
