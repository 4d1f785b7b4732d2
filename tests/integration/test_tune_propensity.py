"""jobs.tune_propensity: tiny Optuna + ASHA sweeps on the shared cluster (Train V2 trials), refit, test once, register."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import tune_propensity
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from store.registry import Registry, load_predictor


def _table(path: Path, n: int = 1500) -> Path:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 4))
    y = rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 0] + x[:, 1] - 2.5)))
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)]).assign(
        cutoff_time=pd.date_range("2026-01-01", periods=n, freq="h"), purchased=y.astype(int),
        channel=rng.choice(["ads", "direct", "mail"], size=n))
    df.to_parquet(path / "table.parquet")
    return path / "table.parquet"


def test_tiny_sweep_refits_best_and_registers(ray_cluster: object, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    table = _table(tmp_path)
    rc = tune_propensity.main(["--features", str(table), "--label", "purchased", "--time-column", "cutoff_time",
                               "--trials", "3", "--rounds", "20", "--report-every", "5", "--grace-rounds", "5",
                               "--trainer", "booster", "--calibration-folds", "2", "--registry", str(tmp_path / "reg"),
                               "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    trials = pd.read_csv(result["trials_csv"])
    assert len(trials) == 3 and trials["val_pr_auc"].notna().all()
    assert set(trials["kind"]) <= {"lightgbm", "xgboost"}
    assert set(trials["imbalance"]) <= {"weight", "downsample", "focal", "none"}
    # best = highest validation PR-AUC; the test split appears only in the final evaluation
    assert result["best"]["val_pr_auc"] == pytest.approx(trials["val_pr_auc"].max())
    assert result["split"] == "time" and result["test"]["rows"] == 1500 - int(1500 * 0.85)
    assert 0 < result["test"]["pr_auc"] <= 1
    reg = Registry(str(tmp_path / "reg"))
    assert reg.champion(REGISTRY_NAME) == result["version"]
    pred = load_predictor(PropensityPredictor, str(tmp_path / "reg"), cache_dir=str(tmp_path / "cache"))
    scores = pred.predict_proba(pd.read_parquet(table).head(50))
    assert scores.shape == (50,) and np.all((scores >= 0) & (scores <= 1)) and np.std(scores) > 0
    assert len(reg.get(REGISTRY_NAME).meta["metrics"]["validation_scores"]) == 21


@pytest.mark.slow
def test_ray_train_trials_stopped_by_asha_free_their_cpu(ray_cluster: object, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each trial fits through a 1-worker Train V2 trainer. Two good configurations run first;
    the third cannot split at all (downsampled to ~200 rows, 299 rows per leaf), so ASHA stops
    it at the first rung. Tune ends stopped trials before their Train runs shut down; the
    sweep must free their placement groups, or the next trial's worker group never starts."""
    import ray

    table = _table(tmp_path)
    good = {"kind": "lightgbm", "imbalance": "weight", "learning_rate": 0.3, "num_leaves": 15, "max_depth": 4,
            "min_child_samples": 10}
    points = [good, {**good, "kind": "xgboost", "imbalance": "focal"},
              {"kind": "lightgbm", "imbalance": "downsample", "keep_rate": 0.05, "min_child_samples": 299}]
    (tmp_path / "warm.json").write_text(json.dumps(points))
    free_before = ray.available_resources().get("CPU", 0.0)
    rc = tune_propensity.main(["--features", str(table), "--label", "purchased", "--time-column", "cutoff_time",
                               "--trials", "4", "--rounds", "20", "--report-every", "5", "--grace-rounds", "5",
                               "--trainer", "ray-train", "--warm-start", str(tmp_path / "warm.json"),
                               "--calibration-folds", "2", "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["trainer"] == "ray-train" and result["trials"] == 4
    trials = pd.read_csv(result["trials_csv"])
    # every trial finished with metrics, none errored
    assert "error" not in trials.columns or trials["error"].isna().all()
    assert trials["val_pr_auc"].notna().all() and (trials["rounds_run"] >= 5).all()
    bad = trials[trials["min_child_samples"] == 299].iloc[0]
    assert bool(bad["stopped_early"]) and bad["rounds_run"] == 5 and bad["val_pr_auc"] < 0.5
    assert trials["val_pr_auc"].max() > 0.5
    # the stopped trials' Train placement groups are gone: the CPUs are free again
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) < free_before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0.0) >= free_before
    assert 0 < result["test"]["pr_auc"] <= 1
