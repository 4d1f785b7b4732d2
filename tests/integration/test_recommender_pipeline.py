"""Recommender end to end on real YOOCHOOSE data: TorchTrainer run, registry, Ray Data parity."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import train_recommender
from models.session_rec.predictor import REGISTRY_NAME, SessionRecPredictor
from pipelines import entrypoint
from store.registry import Registry, load_predictor

pytestmark = pytest.mark.shared_data


def _yoochoose(shared_data: Path) -> tuple[str, str]:
    d = shared_data / "yoochoose_rsc15_100k"
    return str(d / "yoochoose-clicks-100k_train_full.txt"), str(d / "yoochoose-clicks-100k_test.txt")


def test_vsknn_cli_json_line_beats_popularity(shared_data: Path, tmp_path: Path) -> None:
    train, test = _yoochoose(shared_data)
    lines = {}
    for model in ("pop", "vsknn"):
        buf = io.StringIO()
        with redirect_stdout(buf):
            train_recommender.main(["--train", train, "--test", test, "--format", "session-tsv",
                                    "--model", model, "--smoke-test", "--json",
                                    "--artifact-dir", str(tmp_path / model)])
        last = buf.getvalue().strip().splitlines()[-1]
        lines[model] = json.loads(last)
    for model, res in lines.items():
        assert res["model"] == model and res["n"] == 200
        assert {f"recall@{k}" for k in (1, 5, 10, 20)} <= set(res)
        assert 0 <= res["mrr@20"] <= res["recall@20"] <= 1
    assert lines["vsknn"]["recall@20"] > lines["pop"]["recall@20"]


def test_gru4rec_torchtrainer_registry_and_ray_data_parity(ray_cluster: object, shared_data: Path,
                                                           tmp_path: Path) -> None:
    import ray

    train, test = _yoochoose(shared_data)
    registry = tmp_path / "registry"
    cfg = entrypoint.parse_config(train_recommender.JOB, ["--train", train, "--test", test, "--format", "session-tsv",
                                         "--model", "gru4rec", "--smoke-test", "--workers", "2",
                                         "--registry", str(registry), "--storage", str(tmp_path / "ray"),
                                         "--artifact-dir", str(tmp_path / "art")])
    report = train_recommender.run(cfg)
    assert report["model"] == "gru4rec" and report["workers"] == 2
    assert report["train_events_per_s"] > 0 and report.get("promoted") is True
    assert Registry(str(registry)).champion(REGISTRY_NAME) == report["version"]

    pred = load_predictor(SessionRecPredictor, str(registry), cache_dir=str(tmp_path / "cache"))
    assert pred.model_type == "gru4rec" and pred.version == report["version"]
    known = pred.items.ids[:6]
    sessions = [known[:2], [known[3]], [], ["not-an-item"], known[2:6]]
    df = pd.DataFrame({"session_id": [f"s{i}" for i in range(len(sessions))], "items": sessions})
    out = (ray.data.from_pandas(df)
           .map_batches(SessionRecPredictor, fn_constructor_kwargs={"artifact_dir": str(tmp_path / "art")},
                        batch_format="pandas", batch_size=2, concurrency=1)
           .to_pandas().sort_values("session_id").reset_index(drop=True))
    assert list(out["session_id"]) == list(df["session_id"])
    for row, items in enumerate(sessions):
        online = pred.recommend(items, k=20)
        assert list(out["recs"].iloc[row]) == [i for i, _ in online]
        assert np.allclose(out["rec_scores"].iloc[row], [s for _, s in online], atol=1e-5)
        assert not set(items) & set(out["recs"].iloc[row])


def test_auto_is_the_default_and_reports_its_choice_and_cold_start_slices(ray_cluster: object, shared_data: Path,
                                                                          tmp_path: Path) -> None:
    """Only the data flags: auto carves validation from train, trains the networks through a TorchTrainer on
    the shared cluster, blends, refits and reports the slices; the artifact serves like any other."""
    train, test = _yoochoose(shared_data)
    cfg = entrypoint.parse_config(train_recommender.JOB, ["--train", train, "--test", test, "--format", "session-tsv",
                                                          "--smoke-test", "--storage", str(tmp_path / "ray"),
                                                          "--artifact-dir", str(tmp_path / "art")])
    report = train_recommender.run(cfg)
    auto = report["auto"]
    assert report["model"] == "auto" and report["n"] == 200
    names = {c["name"] for c in auto["chosen"]}
    assert names and np.isclose(sum(c["weight"] for c in auto["chosen"]), 1.0)
    assert names <= {"vsknn", "vstan", "vstan_seq", "gru4rec_xe", "gru4rec_bprmax",
                     "repeat_tau0.5", "repeat_tau1", "repeat_tau2"}
    # both networks were probed in the Ray Train worker; the search record and the CPU budget are reported
    assert set(auto["neural"]["probes"]) == {"gru4rec_xe", "gru4rec_bprmax"}
    assert 0 < auto["cpu_seconds"] and auto["budget_cpu_seconds"] == 90 * 60
    assert auto["valid"]["recall@20"] > 0 and auto["search_path"][0]["step"] == "start"
    # the blend is at least as good as its best single part on validation
    assert auto["search_path"][-1]["value"] >= max(auto["search_path"][0]["singles"].values()) - 1e-9
    slices = report["slices"]
    assert set(slices) == {"prefix_len_1", "target_unseen", "target_in_prefix"}
    one = slices["prefix_len_1"]
    assert one["n"] > 0 and one["model"]["recall@20"] > one["pop"]["recall@20"]
    # the smoke split keeps 400 training sessions: most test items are new to it and were dropped as misses
    assert slices["target_unseen"]["dropped_as_misses"] > 0 and slices["target_unseen"]["model"]["recall@20"] == 0
    pred = SessionRecPredictor(str(tmp_path / "art"))
    assert pred.model_type == ("hybrid" if len(names) > 1 else auto["chosen"][0]["model_type"])
    assert len(pred.recommend(pred.items.ids[:2], k=10)) == 10
