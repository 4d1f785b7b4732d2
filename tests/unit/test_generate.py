from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from jobs.generate import main
from models.schema import EVENT_SCHEMA, split_valid
from pipelines.synthetic import GeneratorConfig, generate


def test_generator_is_deterministic_and_canonical() -> None:
    cfg = GeneratorConfig(events=20_000, seed=3, days=3, items=2_000)
    a, b = generate(cfg), generate(cfg)
    assert a.equals(b)
    assert a.schema.equals(EVENT_SCHEMA, check_metadata=False)
    assert split_valid(a).quarantined.num_rows == 0
    n_views = a.filter(pc.not_equal(a["event_type"], "purchase")).num_rows
    assert n_views == 20_000


def test_generator_statistics_are_calibrated() -> None:
    t = generate(GeneratorConfig(events=100_000, seed=1)).to_pandas()
    views = t[t.event_type != "purchase"]
    lengths = views.groupby("session_id").size()
    assert 3.3 < lengths.mean() < 4.7 and lengths.median() == 3
    buyers = t.loc[t.event_type == "purchase", "session_id"].nunique()
    assert 0.03 < buyers / t.session_id.nunique() < 0.06
    anon = t.groupby("session_id").user_id.first().isna().mean()
    assert 0.6 < anon < 0.8
    top = views.item_id.value_counts()
    assert top.iloc[0] > 20 * top.median()  # heavy-headed popularity


def test_cli_writes_date_partitions(tmp_path: Path) -> None:
    out = tmp_path / "events"
    assert main(["--events", "5000", "--out", str(out), "--days", "2", "--seed", "1"]) == 0
    parts = sorted(p.name for p in out.iterdir())
    assert parts[0].startswith("date=2026-11-01")
    table = ds.dataset(out, partitioning="hive").to_table()
    assert table.num_rows >= 5000
