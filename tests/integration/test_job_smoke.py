"""The jobs that need Ray run their own ``--smoke-test`` in process on the shared cluster (the
shell joins the running Ray instead of starting one): tiny inputs they make themselves, their
normal code path, one final JSON line with the job's keys, exit code 0.

Where another test already runs a job's expensive default path at small scale, the smoke run
here takes the cheaper option and says so (tune_propensity's Train-per-trial trainer is
covered by test_tune_propensity.py). ``refresh`` runs one fast tick in process."""

from __future__ import annotations

import json

import pytest

from jobs import (
    features,
    precompute,
    refresh,
    train_propensity,
    train_recommender,
    tune_propensity,
    tune_recommender,
)


def _smoke(capsys: pytest.CaptureFixture[str], main: object, *argv: str) -> dict:
    rc = main([*argv, "--smoke-test", "--json"])  # type: ignore[operator]
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    return json.loads(out.out.strip().splitlines()[-1])


def test_features(ray_cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, features.main)
    assert out["rows_in"] > 4_000 and out["sessions"] > 0 and out["items"] > 0 and out["quarantined"] == 0


def test_train_propensity(ray_cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, train_propensity.main)
    assert out["model"] == "lightgbm" and out["split"] == "time" and 0 < out["test"]["pr_auc"] <= 1
    assert {"logreg_balanced", "lightgbm_default"} <= set(out["baselines"])
    _model_report(out, ["pr_curve", "calibration"])


def test_tune_propensity(ray_cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, tune_propensity.main, "--trainer", "booster")
    assert out["trials"] == 2 and out["trainer"] == "booster" and 0 < out["test"]["pr_auc"] <= 1


def test_train_recommender(ray_cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, train_recommender.main)  # the default: --model auto picks a blend on validation
    assert out["model"] == "auto" and 0 <= out["recall@20"] <= 1
    chosen = out["auto"]["chosen"]
    assert chosen and all(c["weight"] > 0 for c in chosen)
    assert {"prefix_len_1", "target_unseen"} <= set(out["slices"])
    _model_report(out, ["recall_at_k"])


def _model_report(out: dict, plots: list[str]) -> None:
    """The job wrote its model report next to the artifact, with its plots, and said where."""
    import re
    from pathlib import Path

    page = Path(out["report"])
    assert page.name == "report.html" and page.parent == Path(out.get("artifact") or out["artifact_dir"])
    assert re.findall(r'data-plot="([a-z_]+)"', page.read_text()) == plots


def test_tune_recommender(ray_cluster: object, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, tune_recommender.main)  # GRU4Rec through Tune (Optuna + ASHA), 2 trials of 1 epoch
    assert out["model"] == "gru4rec" and out["trials"] == 2 and 0 <= out["best_valid"]["recall@20"] <= 1


@pytest.mark.slow
def test_precompute(ray_cluster: object, redis_server: str, redis_client: object,
                    capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, precompute.main, "--redis", redis_server)
    assert out["score"]["rows"]["default"] > 0 and out["recs"]["rows"]["default"] > 0
    assert out["popular"]["rows"] == {"default": 1}


@pytest.mark.slow
def test_refresh(ray_cluster: object, redis_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _smoke(capsys, refresh.main, "--redis", redis_server)
    assert out["ticks"] == 1 and out["ok"] is True and out["cadences"] == ["fast"], out
    assert out["last"]["outcome"] == "ok" and out["last"]["features"]["rows_in"] > 0, out["last"]
    checks = {c["name"]: c for c in out["last"]["checks"]}  # the per-tick checks ran after the steps
    assert checks["experiments"] == {**checks["experiments"], "ok": True, "experiments": []}
    assert checks["drift"]["ok"] and checks["drift"]["version"] and "alert" in checks["drift"], checks["drift"]
