"""pipelines.train_propensity.train_distributed on the shared cluster: object refs and Ray Data give the
workers the same rows and a usable booster (the path jobs.train_propensity and bench.train take)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluation.classification import pr_auc
from models.propensity.model import PropensityConfig, raw_predict, to_matrix
from pipelines.train_propensity import train_distributed

FEATURES = [f"f{i}" for i in range(4)]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * df["f0"] - 1.5)))).astype(int)
    return df


@pytest.mark.slow
@pytest.mark.parametrize(("ingest", "workers"), [("auto", 1), ("object_ref", 2), ("ray_data", 1)])
def test_train_distributed_fits_by_each_ingest(ray_cluster: object, tmp_path: Path, ingest: str,
                                               workers: int) -> None:
    train, val = _frame(3000, 0), _frame(600, 1)
    cfg = PropensityConfig(num_boost_round=30, early_stopping_rounds=5, num_threads=1)
    fitted = train_distributed(cfg, train, val, FEATURES, workers, str(tmp_path / "storage"),
                               ingest=ingest, cpus_per_worker=0.5, label="y")  # type: ignore[arg-type]
    assert fitted.ingest == ("object_ref" if ingest == "auto" else ingest)  # a small frame: by object ref
    assert fitted.metrics["rows"] == 3000 // workers  # rank 0's block (or shard) of train
    scores = raw_predict(fitted.booster, "lightgbm", to_matrix(val, FEATURES))
    assert scores.shape == (600,) and pr_auc(val["y"].to_numpy(), scores) > 0.5
