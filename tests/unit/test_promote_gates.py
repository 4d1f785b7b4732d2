"""jobs.promote: gates on tiny real LightGBM artifacts in a local registry (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import promote
from models.evaluation.classification import evaluate
from models.propensity.artifact import save
from models.propensity.calibration import Calibrator
from models.propensity.finalize import fit_local
from models.propensity.model import PropensityConfig, raw_predict, to_matrix
from models.propensity.predictor import REGISTRY_NAME
from pipelines.promotion import psi_quantiles
from store.registry import Registry

LABEL = "y"


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x0, x1 = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * x0 - 2.5)))).astype(int)
    return pd.DataFrame({"x0": x0, "x1": x1, LABEL: y})


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return {"train": _frame(2000, 1), "val": _frame(800, 2), "test": _frame(800, 3), "holdout": _frame(1500, 4)}


def _register(reg: Registry, tmp: Path, data: dict[str, pd.DataFrame], name: str, features: list[str],
              window: str = "w1", **cfg: object) -> str:
    config = PropensityConfig(num_threads=1, num_boost_round=20, early_stopping_rounds=0, **cfg)  # type: ignore[arg-type]
    booster, art = fit_local(data["train"], data["val"], features, LABEL, config)
    cal = Calibrator.from_dict(art.calibration)
    val_scores = cal(raw_predict(booster, "lightgbm", to_matrix(data["val"], features)))
    test_scores = cal(raw_predict(booster, "lightgbm", to_matrix(data["test"], features)))
    art.metrics["test"] = evaluate(data["test"][LABEL].to_numpy(), test_scores).as_dict()
    art.metrics["validation_scores"] = np.quantile(val_scores, np.linspace(0, 1, 21)).tolist()
    art.data_window = {"split": "stratified", "source": window, "label": LABEL}
    out = save(tmp / name, booster, art)
    return reg.register(REGISTRY_NAME, out, {"metrics": art.metrics, "data_window": art.data_window}).version


def _holdout(tmp: Path, data: dict[str, pd.DataFrame]) -> str:
    path = tmp / "holdout.csv"
    data["holdout"].to_csv(path, index=False)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    rc = promote.main([*argv, "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out.strip().splitlines()[-1])


def test_first_candidate_becomes_champion(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    v = _register(reg, tmp_path, data, "a", ["x0", "x1"])
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", "latest")
    assert rc == 0 and res["promoted"] and reg.champion(REGISTRY_NAME) == v


def test_refuses_worse_candidate_on_holdout_and_leaves_registry(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    good = _register(reg, tmp_path, data, "good", ["x0", "x1"])
    reg.set_champion(REGISTRY_NAME, good, "test")
    before = reg.state(REGISTRY_NAME)
    worse = _register(reg, tmp_path, data, "worse", ["x1"])  # noise feature only
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", worse, "--holdout", _holdout(tmp_path, data),
                   "--label", LABEL)
    assert rc == 1 and not res["promoted"]
    gate = {g["name"]: g for g in res["gates"]}["pr_auc"]
    assert not gate["passed"]
    assert gate["numbers"]["candidate"] < gate["numbers"]["champion"] - 0.01
    assert "pr_auc" in res["reason"]
    assert reg.champion(REGISTRY_NAME) == good and reg.state(REGISTRY_NAME) == before


def test_refuses_collapsed_candidate(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    good = _register(reg, tmp_path, data, "good", ["x0", "x1"])
    reg.set_champion(REGISTRY_NAME, good, "test")
    # min_child_samples larger than the data: no split, every score equal
    flat = _register(reg, tmp_path, data, "flat", ["x0", "x1"], min_child_samples=100_000)
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", flat, "--holdout", _holdout(tmp_path, data),
                   "--label", LABEL, "--tolerance", "1.0")  # only the distribution gates can refuse it
    gates = {g["name"]: g for g in res["gates"]}
    assert rc == 1 and not gates["not_collapsed"]["passed"]
    assert gates["not_collapsed"]["numbers"]["distinct"] == 1
    assert "all scores equal" in res["reason"]
    assert reg.champion(REGISTRY_NAME) == good


def test_collapsed_first_candidate_is_not_made_champion(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    _register(reg, tmp_path, data, "flat", ["x0", "x1"], min_child_samples=100_000)
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", "latest")
    assert rc == 1 and reg.champion(REGISTRY_NAME) is None


def test_accepts_equal_and_better_candidates(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    holdout = _holdout(tmp_path, data)
    weak = _register(reg, tmp_path, data, "weak", ["x0", "x1"], num_leaves=2, max_depth=1, learning_rate=0.02)
    reg.set_champion(REGISTRY_NAME, weak, "test")
    better = _register(reg, tmp_path, data, "better", ["x0", "x1"])
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", better, "--holdout", holdout, "--label", LABEL,
                   "--psi-max", "10")
    assert rc == 0 and res["promoted"], res
    assert reg.champion(REGISTRY_NAME) == better
    equal = _register(reg, tmp_path, data, "equal", ["x0", "x1"])  # same config and data as `better`
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", equal, "--holdout", holdout, "--label", LABEL)
    gate = {g["name"]: g for g in res["gates"]}["pr_auc"]
    assert rc == 0 and gate["numbers"]["candidate"] == pytest.approx(gate["numbers"]["champion"])
    assert {g["name"]: g for g in res["gates"]}["psi"]["numbers"]["vs_champion_validation"] == pytest.approx(0.0)
    assert reg.champion(REGISTRY_NAME) == equal


def test_without_holdout_needs_same_data_window(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    champ = _register(reg, tmp_path, data, "a", ["x0", "x1"], window="w1")
    reg.set_champion(REGISTRY_NAME, champ, "test")
    other = _register(reg, tmp_path, data, "b", ["x0", "x1"], window="w2")
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", other)
    assert rc == 1 and "--holdout" in res["reason"] and reg.champion(REGISTRY_NAME) == champ
    same = _register(reg, tmp_path, data, "c", ["x0", "x1"], window="w1")
    rc, res = _run(capsys, "--registry", reg.uri, "--candidate", same)
    assert rc == 0 and "stored test metrics" in res["gates"][0]["detail"]


def test_rollback_restores_previous_champion(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    v1 = _register(reg, tmp_path, data, "a", ["x0", "x1"])
    assert _run(capsys, "--registry", reg.uri, "--candidate", v1)[0] == 0
    v2 = _register(reg, tmp_path, data, "b", ["x0", "x1"])
    assert _run(capsys, "--registry", reg.uri, "--candidate", v2)[0] == 0
    assert reg.champion(REGISTRY_NAME) == v2
    rc, res = _run(capsys, "--registry", reg.uri, "--rollback")
    assert rc == 0 and res["champion"] == v1 and reg.champion(REGISTRY_NAME) == v1


def test_rollback_without_history_fails_clearly(tmp_path: Path, data, capsys) -> None:
    reg = Registry(str(tmp_path / "reg"))
    rc, res = _run(capsys, "--registry", reg.uri, "--rollback")
    assert rc == 2 and "no previous champion" in res["error"]
    v1 = _register(reg, tmp_path, data, "a", ["x0", "x1"])
    reg.set_champion(REGISTRY_NAME, v1, "test")
    rc, res = _run(capsys, "--registry", reg.uri, "--rollback")
    assert rc == 2 and "no previous champion" in res["error"] and reg.champion(REGISTRY_NAME) == v1


def test_psi_from_stored_quantiles_separates_same_from_shifted() -> None:
    rng = np.random.default_rng(0)
    a, b, c = rng.beta(1, 5, 5000), rng.beta(1, 5, 5000), rng.beta(2, 2, 5000)

    def q(v: np.ndarray) -> np.ndarray:
        return np.quantile(v, np.linspace(0, 1, 21))

    assert psi_quantiles(q(a), q(a), False) == pytest.approx(0.0)
    assert psi_quantiles(q(a), q(b), False) < 0.05 and psi_quantiles(q(a), b, True) < 0.05
    assert psi_quantiles(q(a), q(c), False) > 1.0 and psi_quantiles(q(a), c, True) > 1.0
    # atoms (isotonic calibration ties) do not blow up the PSI of a distribution against itself
    tied = np.round(a, 1)
    assert psi_quantiles(q(tied), tied, True) < 0.05
