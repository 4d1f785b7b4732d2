"""Bad data is quarantined with a reason, never fatal: future times, bad tenants, bad partitions, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.schema import conform, split_valid
from pipelines.feature_tasks import drop_duplicate_events, pack_reads, plan_reads, scan_event_files

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _events(times: list[str], tenants: list[str | None] | None = None) -> pa.Table:
    n = len(times)
    return conform(pa.table({
        "event_time": pa.array(pd.to_datetime(times, utc=True, format="mixed")), "session_id": [f"s{i}" for i in range(n)],
        "item_id": ["i1"] * n, "event_type": ["view"] * n,
        "tenant": pa.array(tenants if tenants is not None else [None] * n, pa.string())}), "t")


def test_future_and_out_of_range_times_are_quarantined() -> None:
    table = _events(["2026-11-03 12:05", "2026-11-03 12:11", "2099-01-01", "1970-01-01", "2026-11-01",
                     "2150-06-01"])
    split = split_valid(table, NOW, max_future_s=600)
    assert split.reason_counts() == {"future_time": 2, "time_out_of_range": 2}
    assert split.valid["session_id"].to_pylist() == ["s0", "s4"]
    # without a clock only the year range applies
    assert split_valid(table).reason_counts() == {"time_out_of_range": 2}


def test_tenants_that_cannot_be_key_parts_are_quarantined() -> None:
    tenants = ["acme", None, "", "a:b", "x" * 65, "bad tenant", "ok-1.2_3"]
    split = split_valid(_events(["2026-11-01"] * len(tenants), tenants), NOW)
    assert split.reason_counts() == {"invalid_tenant": 3}
    assert split.valid["tenant"].to_pylist() == ["acme", None, "", "ok-1.2_3"]


def test_malformed_date_partitions_are_listed_apart(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2, 3]})
    for part in ("date=2026-11-01", "date=2026-11-02", "date=2026-13-45", "date=garbage", "date=2026-1-1"):
        (tmp_path / part).mkdir()
        pq.write_table(table, tmp_path / part / "part-0.parquet")
    files, bad = scan_event_files(str(tmp_path), pd.Timestamp("2026-11-02", tz="UTC"))
    assert [Path(f).parent.name for f in files] == ["date=2026-11-02"]
    assert sorted(Path(f).parent.name for f in bad) == ["date=2026-1-1", "date=2026-13-45", "date=garbage"]


def test_small_files_are_packed_into_few_stage1_tasks(tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        paths.append(str(tmp_path / f"part-{i}.parquet"))
        pq.write_table(pa.table({"x": list(range(30))}), paths[-1])
    tasks = pack_reads(plan_reads(paths, rows_per_task=100), rows_per_task=100)
    assert [len(t["pieces"]) for t in tasks] == [3, 3, 3, 1]
    assert [p["path"] for t in tasks for p in t["pieces"]] == paths and [t["task"] for t in tasks] == [0, 1, 2, 3]


def test_exact_duplicates_are_dropped_once() -> None:
    base = _events(["2026-11-01 10:00", "2026-11-01 10:01", "2026-11-01 10:02"])
    same_time_other_item = base.slice(0, 1).set_column(3, base.schema.field("item_id"), pa.array(["i9"]))
    ev = pa.concat_tables([base, base.slice(1, 2), same_time_other_item, base.slice(2, 1)])
    out, dropped = drop_duplicate_events(ev)
    assert dropped == 3 and out.num_rows == 4
    assert sorted(zip(out["session_id"].to_pylist(), out["item_id"].to_pylist(), strict=True)) == \
        [("s0", "i1"), ("s0", "i9"), ("s1", "i1"), ("s2", "i1")]
    assert drop_duplicate_events(base) == (base, 0)
