"""Ingested real data is valid input for the feature job on the shared Ray cluster."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from pipelines import features
from pipelines.ingest import run


@pytest.mark.shared_data
def test_diginetica_ingest_feeds_the_feature_job(ray_cluster: object, shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "diginetica"
    inputs = [str(d / n) for n in ("train-item-views-sample.csv", "train-purchases.csv", "product-categories.csv")]
    summary = run("diginetica", inputs, tmp_path / "events")
    manifest = features.run(str(tmp_path / "events"), tmp_path / "features", buckets=2)
    assert manifest["rows_in"] == summary["rows_out"] == 30_416
    assert not manifest["quarantine_reasons"]
    sess = ds.dataset(tmp_path / "features" / "sessions", partitioning="hive").to_table(
        columns=["session_id", "purchased"]).to_pandas()
    views = set(pd.read_csv(d / "train-item-views-sample.csv", sep=";", dtype=str)["session_id"])
    viewed = sess[sess["session_id"].isin(views)]
    assert viewed["session_id"].nunique() == 2_986
    # Diginetica sessions can carry more than one user id (NA then a login, or views and
    # purchases under different ids). The job buckets events by session, so each session
    # appears once, with all its events, and sees its purchase whatever id made it.
    assert viewed["session_id"].is_unique
    assert int(viewed["purchased"].sum()) == 138
