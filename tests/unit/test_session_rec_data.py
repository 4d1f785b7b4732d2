"""Readers and configs reject bad input naming file, row and field; protocols encode correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.session_rec.config import load_config
from models.session_rec.data import DataError, load_dataset, read_prefix_target, read_session_tsv


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_session_tsv_orders_sessions_by_start_and_events_by_time(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.tsv", "SessionId\tItemId\tTime\n2\tb\t5\n1\tx\t9\n2\ta\t1\n1\ty\t3\n")
    assert read_session_tsv(f) == [["a", "b"], ["y", "x"]]


def test_session_tsv_errors_name_row_and_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.tsv", "SessionId\tItemId\tTime\n1\ta\t1\n1\tb\tsoon\n")
    with pytest.raises(DataError, match=r"t.tsv: row 3: field 'Time'"):
        read_session_tsv(f)
    g = _write(tmp_path / "g.tsv", "SessionId\tItem\tTime\n1\ta\t1\n")
    with pytest.raises(DataError, match="lacks field.*ItemId"):
        read_session_tsv(g)


def test_prefix_target_errors(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.tsv", "prefix\ttarget\n1 2\t3\n\t4\n")
    with pytest.raises(DataError, match="row 3: field 'prefix' is empty"):
        read_prefix_target(f)
    g = _write(tmp_path / "q.tsv", "prefix\ttarget\n1 2\t3 4\n")
    with pytest.raises(DataError, match="row 2: field 'target'"):
        read_prefix_target(g)


def test_protocol_a_drops_unknown_test_items(tmp_path: Path) -> None:
    tr = _write(tmp_path / "tr.tsv", "SessionId\tItemId\tTime\n1\ta\t1\n1\tb\t2\n2\tc\t3\n2\ta\t4\n")
    te = _write(tmp_path / "te.tsv", "SessionId\tItemId\tTime\n9\ta\t1\n9\tzz\t2\n9\tc\t3\n8\tzz\t9\n8\tb\t10\n")
    data = load_dataset(tr, te, "session-tsv")
    assert data.items.ids == ["a", "b", "c"]  # type: ignore[attr-defined]
    # session 9 -> [a, c] (zz dropped) gives one pair; session 8 -> [b] gives none
    assert [p.tolist() for p in data.test_prefixes] == [[0]]
    assert data.test_targets.tolist() == [2]


def test_protocol_b_unknown_target_is_minus_one(tmp_path: Path) -> None:
    tr = _write(tmp_path / "tr.txt", "1 2\n2 3\n")
    te = _write(tmp_path / "te.tsv", "prefix\ttarget\n1 9\t2\n3\t77\n")
    data = load_dataset(tr, te, "prefix-target")
    assert [p.tolist() for p in data.test_prefixes] == [[0], [2]]
    assert data.test_targets.tolist() == [1, -1]


def test_parquet_time_split(tmp_path: Path) -> None:
    table = pa.table({"session_id": ["s1", "s2", "s3", "s4"], "tenant": ["t"] * 4,
                      "items": [["a", "b"], ["b", "c"], ["a", "c"], ["c", "a", "b"]],
                      "last_time": [1.0, 2.0, 3.0, 4.0]})
    pq.write_table(table, tmp_path / "seq.parquet")
    data = load_dataset(tmp_path / "seq.parquet", None, "parquet", test_fraction=0.25)
    assert data.window["train_sessions"] == 3 and data.window["time_cut"] == pytest.approx(3.25)
    assert len(data.test_prefixes) == 2 and np.all(data.test_targets >= 0)
    bad = table.set_column(2, "items", pa.array([["a"], [], ["b"], ["c"]], pa.list_(pa.string())))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="row 1 \\(session_id='s2'\\): field 'items' is empty"):
        load_dataset(tmp_path / "bad.parquet", None, "parquet")


def test_config_rejects_unknown_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "c.yaml", "model: gru4rec\ngru4rec:\n  layerz: [10]\n")
    with pytest.raises(ValueError, match=r"c.yaml.*gru4rec.layerz"):
        load_config(f)
    cfg = load_config(_write(tmp_path / "ok.yaml", "gru4rec:\n  n_epochs: 3\n"), model="gru4rec")
    assert cfg.model_params()["n_epochs"] == 3 and cfg.model_params()["learning_rate"] == 0.2


def test_diginetica_views_by_hand(tmp_path: Path) -> None:
    from models.session_rec.data import read_diginetica_views

    path = tmp_path / "views.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                    "2;NA;b;500;2016-01-02\n2;NA;a;100;2016-01-02\n1;7;c;0;2016-01-03\n3;NA;d;9;2016-01-01\n",
                    encoding="utf-8")
    sessions, day = read_diginetica_views(path)
    assert sessions == [["d"], ["a", "b"], ["c"]]  # by day, clicks by timeframe
    assert np.diff(day).tolist() == [86400.0, 86400.0]
    data = load_dataset(path, None, "diginetica-views", test_fraction=0.34)
    assert data.window["train_sessions"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;a;x;2016-01-01\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2: field 'timeframe' is not a number"):
        read_diginetica_views(bad)
