"""The slow tick's holdout: sessions neither the candidate nor the champions trained on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.retrain import champions_seen_until, snapshot
from store.registry import Registry

pytestmark = pytest.mark.unit


def _features(root: Path, n: int = 100) -> Path:
    times = pd.date_range("2026-11-01", periods=n, freq="h", tz="UTC")
    (root / "sessions").mkdir(parents=True)
    (root / "sequences").mkdir(parents=True)
    pd.DataFrame({"session_id": [f"s{i}" for i in range(n)], "cutoff_time": times,
                  "purchased": [i % 3 == 0 for i in range(n)]}).to_parquet(root / "sessions" / "part-0.parquet")
    pd.DataFrame({"session_id": [f"s{i}" for i in range(n)], "last_time": times,
                  "items": [["i1", f"i{i % 7}"] for i in range(n)]}).to_parquet(root / "sequences" / "part-0.parquet")
    return root


def _champion(reg: Registry, tmp: Path, name: str, window: dict[str, object]) -> None:
    art = tmp / f"art-{name}"
    art.mkdir()
    (art / "model.bin").write_bytes(b"x")
    reg.set_champion(name, reg.register(name, art, {"data_window": window}).version, "test")


def test_the_holdout_starts_after_what_the_champions_trained_on(tmp_path: Path) -> None:
    features = _features(tmp_path / "features")
    reg = Registry(str(tmp_path / "registry"))
    assert champions_seen_until(reg, ["propensity", "recommender"]) is None
    plain = snapshot(features, tmp_path / "a", "cutoff_time", 0.1)
    assert plain["holdout_sessions"] == 10 and not plain["cut_after_champions"]
    _champion(reg, tmp_path, "propensity", {"validation_max": "2026-11-04T18:00:00+00:00"})  # session 90
    _champion(reg, tmp_path, "recommender", {"time_cut": pd.Timestamp("2026-11-04T21:00:00Z").timestamp()})
    seen = champions_seen_until(reg, ["propensity", "recommender"])
    assert seen == pd.Timestamp("2026-11-04T21:00:00Z")  # the later of the two (session 93)
    moved = snapshot(features, tmp_path / "b", "cutoff_time", 0.1, not_before=seen)
    assert moved["cut_after_champions"] and moved["holdout_sessions"] == 7
    assert all(len(p) >= 1 for p in moved["pairs"][0]) and len(moved["pairs"][1]) == 7
    too_late = snapshot(features, tmp_path / "c", "cutoff_time", 0.1, not_before=pd.Timestamp("2026-11-05T03:00Z"))
    assert not too_late["cut_after_champions"] and too_late["holdout_sessions"] == 10  # 1 % left: not enough


def test_a_recommenders_time_cut_is_unix_seconds_whatever_the_parquet_unit(tmp_path: Path) -> None:
    from models.session_rec.data import read_sequences_parquet

    times = pd.Series(pd.date_range("2026-11-01", periods=3, freq="h", tz="UTC")).astype("datetime64[us, UTC]")
    pd.DataFrame({"session_id": ["a", "b", "c"], "last_time": times,
                  "items": [["i1"], ["i2"], ["i3"]]}).to_parquet(tmp_path / "seq.parquet")
    _, last = read_sequences_parquet(tmp_path / "seq.parquet")
    assert list(last) == [t.timestamp() for t in times]
