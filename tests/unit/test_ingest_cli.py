"""``python -m jobs.ingest`` end to end: round trip, quarantine files, staged writes, URIs."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import pipelines.ingest as ingest_mod
from jobs.ingest import main
from models.schema import conform, split_valid
from pipelines.ingest import MANIFEST

D = {
    "yoochoose": ["yoochoose_rsc15_100k/raw_clicks_sample.dat"],
    "session-tsv": ["yoochoose_rsc15_100k/yoochoose-clicks-100k_test.txt"],
    "diginetica": ["diginetica/train-item-views-sample.csv", "diginetica/train-purchases.csv",
                   "diginetica/product-categories.csv"],
    "otto": ["otto/sessions_sample.jsonl"],
    "retailrocket": ["schema_samples/retailrocket_events_head.csv"],
    "rees46": ["schema_samples/rees46_events_head.csv"],
}
ROWS_IN = {"yoochoose": 500, "session-tsv": 13_568, "diginetica": 30_416, "otto": 862, "retailrocket": 8,
           "rees46": 22}


def _run(capsys: pytest.CaptureFixture[str], fmt: str, inputs: list[str], out: Path, *extra: str) -> dict:
    args = ["--format", fmt, "--out", str(out), "--json", *extra]
    for i in inputs:
        args += ["--input", i]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _read(out: Path):  # noqa: ANN202 - pyarrow Table
    return ds.dataset(out, format="parquet", partitioning="hive", exclude_invalid_files=True).to_table()


@pytest.mark.shared_data
@pytest.mark.parametrize("fmt", sorted(D))
def test_round_trip_every_format(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 fmt: str) -> None:
    out = tmp_path / "events"
    summary = _run(capsys, fmt, [str(shared_data / p) for p in D[fmt]], out)
    assert summary["rows_in"] == ROWS_IN[fmt]
    assert summary["rows_in"] == summary["rows_out"] + summary["quarantined_total"]
    assert sum(summary["quarantined"].values()) == summary["quarantined_total"]
    assert summary["seconds"] >= 0
    quarantine = pq.read_table(tmp_path / "events_quarantine" / "quarantine.parquet")
    assert quarantine.num_rows == summary["quarantined_total"]
    if summary["rows_out"]:
        table = _read(out)
        assert table.num_rows == summary["rows_out"]
        events = conform(table, str(out))
        assert split_valid(events).quarantined.num_rows == 0
        dates = pc.strftime(events["event_time"], format="%Y-%m-%d")
        assert pc.all(pc.equal(dates, table["date"].cast(dates.type))).as_py()  # partition = event date
        # a canonical re-ingest of the output keeps every row
        again = _run(capsys, "canonical", [str(out)], tmp_path / "again")
        assert (again["rows_out"], again["quarantined_total"]) == (summary["rows_out"], 0)


@pytest.mark.shared_data
def test_rees46_quarantine_file_and_counts(shared_data: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    qdir = tmp_path / "q"
    summary = _run(capsys, "rees46", [str(shared_data / D["rees46"][0])], tmp_path / "events",
                   "--quarantine", str(qdir))
    assert summary["quarantined"] == {"mangled_category_id": 22} and summary["rows_out"] == 0
    q = pq.read_table(qdir / "quarantine.parquet")
    assert set(q.column_names) >= {"reason", "source_file", "source_line", "raw", "event_time", "item_id"}
    assert q["source_file"][0].as_py().endswith("rees46_events_head.csv")
    assert sorted(q["source_line"].to_pylist()) == list(range(2, 24))


@pytest.mark.shared_data
def test_tenant_gzip_and_file_uri(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_data / D["otto"][0]
    gz = tmp_path / "otto.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    summary = _run(capsys, "otto", [f"file://{gz}"], tmp_path / "events", "--tenant", "shop1")
    assert summary["rows_out"] == 862
    assert set(_read(tmp_path / "events")["tenant"].to_pylist()) == {"shop1"}


def test_failed_write_leaves_previous_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "s.tsv"
    src.write_text("SessionId\tItemId\tTime\n1\t10\t1396437466\n1\t11\t1396437470\n")
    out = tmp_path / "events"
    _run(capsys, "session-tsv", [str(src)], out)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    src.write_text("SessionId\tItemId\tTime\n2\t12\t1500000000\n")

    def _boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ingest_mod.pq, "write_table", _boom)  # every Parquet write inside the staging fails
    assert main(["--format", "session-tsv", "--input", str(src), "--out", str(out)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no staging left behind
    assert _read(out)["session_id"].to_pylist() == ["1", "1"]


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "s.tsv"
    src.write_text("SessionId\tItemId\tTime\n1\t10\t1396437466\n")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["--format", "session-tsv", "--input", str(src), "--out", str(out)]) == 2
    assert MANIFEST in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_wrong_schema_fails_naming_file_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "clicks.tsv"
    src.write_text("SessionId\tTime\n1\t1396437466\n")
    assert main(["--format", "session-tsv", "--input", str(src), "--out", str(tmp_path / "o")]) == 2
    assert re.search(r"error: .*clicks\.tsv.*ItemId", capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_missing_input_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "otto", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
