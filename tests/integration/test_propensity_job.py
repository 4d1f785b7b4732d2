"""jobs.train_propensity with its defaults on real schema samples (Criteo, Avazu, REES46) and on a
generated multi-field CTR table with missing values: it runs, reports its selection, never keeps
a model below default LightGBM on validation, names unusable columns, and serves what it trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.propensity.synthetic_ctr import generate_ctr


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | None, str]:
    from jobs import train_propensity

    rc = train_propensity.main([*args, "--json"])
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("{")]
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), out.err


def _check_report(result: dict[str, Any]) -> None:
    sel = result["selection"]
    assert "lightgbm_default" in sel["candidates"] and sel["rule"] and sel["reason"]
    val = sel["validation"].get("pr_auc", {})
    if val and result["selected"] != "lightgbm_default":
        assert val[result["selected"]] >= val["lightgbm_default"]  # never below the reference on validation
    t = result["test"]
    assert t["pr_auc_ci"][0] <= t["pr_auc"] <= t["pr_auc_ci"][1]
    assert {"threshold", "recall", "precision", "recall_ci", "precision_ci"} <= set(t["operating_point"])
    assert sum(d["rows"] for d in t["deciles"]) == t["rows"]
    assert result["baselines"]["lightgbm_default"]["pr_auc_ci"] and "pr_auc_diff_ci" in result["vs_lightgbm_default"]


@pytest.mark.shared_data
def test_criteo_sample(ray_cluster: object, shared_data: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    rc, result, err = _run(capsys, "--features", str(shared_data / "schema_samples" / "criteo_sample.csv"),
                           "--label", "label", "--out", str(tmp_path / "m"))
    assert rc == 0, err
    assert result is not None
    cols = result["columns"]
    assert {"C1", "C26"} <= set(cols["categorical"]) and "I1" not in cols["categorical"]
    assert "id-like" in cols["dropped"]["C7"]  # 183 distinct hashes in 200 rows
    _check_report(result)


@pytest.mark.shared_data
def test_avazu_sample(ray_cluster: object, shared_data: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    rc, result, err = _run(capsys, "--features", str(shared_data / "schema_samples" / "avazu_sample.csv"),
                           "--label", "click", "--out", str(tmp_path / "m"))
    assert rc == 0, err
    assert result is not None
    assert {"id", "device_ip"} <= set(result["columns"]["dropped"])
    assert "site_id" in result["columns"]["categorical"]
    _check_report(result)


@pytest.mark.shared_data
def test_rees46_sample_is_rejected_with_the_column_named(ray_cluster: object, shared_data: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data / "schema_samples" / "rees46_events_head.csv"
    rc, _, err = _run(capsys, "--features", str(path), "--label", "event_type")
    assert rc == 2 and "label 'event_type'" in err and "'view'" in err


def test_generated_ctr_table_with_missing_values(ray_cluster: object, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    table = generate_ctr(20_000, seed=5)
    path = tmp_path / "ctr.csv"
    table.to_csv(path, index=False)
    assert table["C1"].eq("").mean() > 0.1 and table["I1"].isna().mean() > 0.1
    rc, result, err = _run(capsys, "--features", str(path), "--label", "click", "--time-column", "hour",
                           "--out", str(tmp_path / "m"), "--name", "pctr", "--registry", str(tmp_path / "reg"))
    assert rc == 0, err
    assert result is not None
    assert result["split"] == "time" and result["selection"]["folds"] == "time"
    # registered as the bidder's pctr model, with its calibration on the test split reported
    rel = result["reliability"]
    assert rel["rows"] == sum(b["count"] for b in rel["bins"]) > 0 and 0 <= rel["ece"] <= rel["max_ce"] <= 1
    assert abs(rel["mean_pred"] - rel["observed_ctr"]) < 0.05  # calibrated on validation: levels, not just order
    from models.bidding.pctr import PctrPredictor
    from store.registry import Registry, load_predictor

    reg = Registry(str(tmp_path / "reg"))
    assert reg.champion("pctr") == result["version"] and reg.champion("propensity") is None
    served = load_predictor(PctrPredictor, reg.uri, None, str(tmp_path / "cache"))
    assert 0 < served.predict_one({"C1": None, "site_category": "never-seen"}) < 1  # what /v1/bid calls
    assert "device_ip" in result["columns"]["dropped"] and "_p_true" not in json.dumps(result["columns"])
    assert {"C1", "site_category"} <= set(result["columns"]["categorical"])
    _check_report(result)
    # the served model scores raw rows, unseen values included, as it did in the job
    from models.propensity.predictor import PropensityPredictor

    pred = PropensityPredictor(str(tmp_path / "m"))
    rows = table.tail(50).drop(columns=["click", "_p_true"])
    odd = rows.assign(C1="never-seen", site_category="words", I2=None)
    assert np.isfinite(pred.predict_proba(odd)).all()
    scores = pred.predict_proba(rows)
    assert scores.min() >= 0 and scores.max() <= 1 and np.unique(scores).size > 5
