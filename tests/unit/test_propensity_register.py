"""jobs.register: validates the artifact before writing; the first model becomes champion (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import register
from models.propensity.artifact import META_FILE, save
from models.propensity.finalize import fit_local
from models.propensity.model import PropensityConfig
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from store.registry import Registry, load_predictor

pytestmark = pytest.mark.unit


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * x0 - 2.0)))).astype(int)
    return pd.DataFrame({"x0": x0, "x1": rng.normal(size=n), "y": y})


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = PropensityConfig(num_threads=1, num_boost_round=10, early_stopping_rounds=0)
    booster, art = fit_local(_frame(600, 1), _frame(300, 2), ["x0", "x1"], "y", cfg)
    return save(tmp_path_factory.mktemp("art"), booster, art)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    rc = register.main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_first_registered_is_champion_later_ones_are_candidates(tmp_path: Path, artifact: Path, capsys) -> None:
    reg_uri = str(tmp_path / "reg")
    rc, first = _run(capsys, "--registry", reg_uri, "--artifact", str(artifact))
    assert rc == 0 and first["champion"] is True
    rc, second = _run(capsys, "--registry", reg_uri, "--artifact", str(artifact))
    assert rc == 0 and second["champion"] is False and second["current_champion"] == first["version"]
    reg = Registry(reg_uri)
    assert reg.versions(REGISTRY_NAME) == sorted([first["version"], second["version"]])
    assert reg.get(REGISTRY_NAME).meta["kind"] == "lightgbm"
    pred = load_predictor(PropensityPredictor, reg_uri, cache_dir=str(tmp_path / "cache"))
    assert pred.version == first["version"]
    scores = pred.predict_proba(pd.DataFrame({"x0": [-2.0, 2.0], "x1": [0.0, 0.0]}))
    assert scores[1] > scores[0]


def test_refuses_non_artifact_and_leaves_registry_empty(tmp_path: Path, capsys) -> None:
    (tmp_path / "junk").mkdir()
    rc, out = _run(capsys, "--registry", str(tmp_path / "reg"), "--artifact", str(tmp_path / "junk"))
    assert rc == 2 and META_FILE in out["error"] and "junk" in out["error"]
    assert Registry(str(tmp_path / "reg")).versions(REGISTRY_NAME) == []


def test_refuses_corrupt_model_file(tmp_path: Path, artifact: Path, capsys) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / META_FILE).write_text((artifact / META_FILE).read_text())
    (bad / "model.txt").write_text("not a booster\n")
    rc, out = _run(capsys, "--registry", str(tmp_path / "reg"), "--artifact", str(bad))
    assert rc == 2 and "does not load" in out["error"]
    assert Registry(str(tmp_path / "reg")).versions(REGISTRY_NAME) == []
