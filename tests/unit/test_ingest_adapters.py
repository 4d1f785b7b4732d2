"""Every ingest adapter on its real sample in ../shared/data, plus hand-made bad input."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from models.features.sessionize import sessionize_gap
from models.schema import SchemaError
from pipelines.adapters import RAW_SCHEMA, join_categories, parse_file


def _parse(fmt: str, path: Path, **kw: float) -> pa.Table:
    parsed = parse_file(fmt, path.read_bytes(), str(path), **kw)
    assert parsed.events is not None
    assert parsed.events.schema.equals(RAW_SCHEMA)
    return parsed.events


def _reasons(t: pa.Table) -> dict[str, int]:
    bad = t.filter(pc.is_valid(t["reason"]))
    return {r["values"]: r["counts"] for r in pc.value_counts(bad["reason"]).to_pylist()} if bad.num_rows else {}


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.shared_data
def test_yoochoose_raw_clicks_sample(shared_data: Path) -> None:
    t = _parse("yoochoose", shared_data / "yoochoose_rsc15_100k" / "raw_clicks_sample.dat")
    assert t.num_rows == 500 and _reasons(t) == {}
    assert set(t["event_type"].to_pylist()) == {"view"}
    assert t["user_id"].null_count == 500  # YOOCHOOSE is anonymous
    assert t["category"].null_count == 500  # category 0 = unknown
    first = t.slice(0, 1).to_pylist()[0]
    assert first["session_id"] == "1" and first["item_id"] == "214536502" and first["source_line"] == 1
    assert first["event_time"] == _utc(2014, 4, 7, 10, 51, 9, 277000)


def test_yoochoose_buys_and_bad_rows(tmp_path: Path) -> None:
    buys = tmp_path / "buys.dat"
    buys.write_text("420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n"
                    "420374,2014-04-06T18:44:58.325Z,214537850,0,0\n"
                    "11,2014-13-06T18:44:58Z,214,10,1\n"
                    "12,2014-04-06T18:44:58Z,215,ten,1\n"
                    "13,2014-04-06T18:44:58Z,216\n"
                    ",2014-04-06T18:44:58Z,217,1,1\n")
    t = _parse("yoochoose", buys)
    assert _reasons(t) == {"bad_time": 1, "bad_price": 1, "malformed_row": 1, "missing_session_id": 1}
    good = t.filter(pc.is_null(t["reason"]))
    assert good["event_type"].to_pylist() == ["purchase", "purchase"]
    assert good["price"].to_pylist() == [12462.0, None]  # 0 = unknown price
    bad = {r["source_line"]: r for r in t.filter(pc.is_valid(t["reason"])).to_pylist()}
    assert bad[3]["reason"] == "bad_time" and bad[3]["raw"].startswith("11,2014-13-06")
    assert bad[5]["reason"] == "malformed_row" and bad[5]["raw"] == "13,2014-04-06T18:44:58Z,216"
    assert bad[6]["reason"] == "missing_session_id"


def test_yoochoose_wrong_field_count_names_file(tmp_path: Path) -> None:
    path = tmp_path / "clicks.dat"
    path.write_text("1,2014-04-07T10:51:09.277Z,214536502\n")
    with pytest.raises(SchemaError, match="clicks.dat.*4 fields"):
        _parse("yoochoose", path)


@pytest.mark.shared_data
def test_session_tsv_train_full(shared_data: Path) -> None:
    t = _parse("session-tsv", shared_data / "yoochoose_rsc15_100k" / "yoochoose-clicks-100k_train_full.txt")
    assert t.num_rows == 70_278 and _reasons(t) == {}
    assert pc.count_distinct(t["session_id"]).as_py() == 17_794
    assert pc.count_distinct(t["item_id"]).as_py() == 2_933
    first = t.slice(0, 1).to_pylist()[0]
    assert (first["session_id"], first["item_id"], first["source_line"]) == ("3", "214716935", 2)
    assert first["event_time"] == _utc(2014, 4, 2, 11, 17, 46, 940000)  # 1396437466.94 s


@pytest.mark.shared_data
def test_diginetica_views_purchases_categories(shared_data: Path) -> None:
    d = shared_data / "diginetica"
    views = _parse("diginetica", d / "train-item-views-sample.csv")
    buys = _parse("diginetica", d / "train-purchases.csv")
    cats = parse_file("diginetica", (d / "product-categories.csv").read_bytes(), "cats").categories
    assert cats is not None and cats.num_rows == 184_047
    # the sample has 12,391 data rows (no trailing newline; the README says 12,390)
    assert views.num_rows == 12_391 and buys.num_rows == 18_025
    assert _reasons(views) == {} and _reasons(buys) == {}
    assert set(views["event_type"].to_pylist()) == {"view"} and set(buys["event_type"].to_pylist()) == {"purchase"}
    sessions = set(views["session_id"].to_pylist())
    assert len(sessions) == 2_986
    assert len(sessions & set(buys["session_id"].to_pylist())) == 138  # 4.6 % bought
    first = views.slice(0, 1).to_pylist()[0]  # 1;NA;81766;526309;2016-05-09
    assert first["user_id"] is None and first["item_id"] == "81766"
    assert first["event_time"] == _utc(2016, 5, 9, 0, 8, 46, 309000)
    anon = views.group_by("session_id").aggregate([("user_id", "count")])
    assert 0.5 < pc.mean(pc.equal(anon["user_id_count"], 0)).as_py() < 0.65
    joined = join_categories(views, cats)
    assert joined["category"].null_count == 0 and joined.num_rows == views.num_rows
    assert joined.slice(0, 1)["category"][0].as_py() is not None


@pytest.mark.shared_data
def test_diginetica_times_stay_on_their_dates(shared_data: Path) -> None:
    for name in ("train-item-views-sample.csv", "train-purchases.csv"):
        path = shared_data / "diginetica" / name
        t = _parse("diginetica", path)
        dates = [line.split(";")[-1 if "views" in name else 3] for line in path.read_text().splitlines()[1:]]
        assert pc.strftime(t["event_time"], format="%Y-%m-%d").to_pylist() == dates
    # view session 629 crosses midnight: one start for the session, gaps = timeframe differences
    views = _parse("diginetica", shared_data / "diginetica" / "train-item-views-sample.csv")
    s629 = sorted(r["event_time"] for r in views.filter(pc.equal(views["session_id"], "629")).to_pylist())
    assert s629[0] == _utc(2016, 3, 20, 23, 48, 4, 918000)  # 2016-03-21 - 728,961 ms + 13,879 ms
    assert (s629[-1] - s629[0]).total_seconds() == (1_184_885 - 13_879) / 1000


def test_diginetica_anchor_long_and_midnight_sessions(tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text("sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
                    "1;NA;1000;2016-05-06;1;10\n1;NA;3000;2016-05-06;1;11\n"  # one day: eventdate + timeframe
                    "2;NA;172800000;2016-05-08;2;12\n"  # timeframe of 2 days: stays on its date
                    "3;9;86300000;2016-05-06;3;13\n3;9;86500000;2016-05-07;3;14\n")  # crosses midnight
    t = {r["item_id"]: r["event_time"] for r in _parse("diginetica", path).to_pylist()}
    assert t["10"] == _utc(2016, 5, 6, 0, 0, 1) and t["11"] == _utc(2016, 5, 6, 0, 0, 3)
    assert t["12"] == _utc(2016, 5, 8)
    assert t["13"].date().isoformat() == "2016-05-06" and t["14"].date().isoformat() == "2016-05-07"
    assert (t["14"] - t["13"]).total_seconds() == 200.0


def test_diginetica_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;100;2016-05-09\n"
                    "2;7;6;abc;2016-05-09\n3;NA;;1;2016-05-09\n4;NA;8;1;2016-99-09\n\n5;1;2\n")
    t = _parse("diginetica", path)
    assert _reasons(t) == {"bad_time": 2, "missing_item_id": 1, "blank_line": 1, "malformed_row": 1}
    assert t.filter(pc.equal(t["reason"], "blank_line"))["source_line"].to_pylist() == [6]
    assert t.filter(pc.equal(t["reason"], "malformed_row"))["source_line"].to_pylist() == [7]


@pytest.mark.shared_data
def test_otto_sample(shared_data: Path) -> None:
    t = _parse("otto", shared_data / "otto" / "sessions_sample.jsonl")
    assert t.num_rows == 862 and _reasons(t) == {}
    counts = {c["values"]: c["counts"] for c in pc.value_counts(t["event_type"]).to_pylist()}
    assert counts == {"view": 800, "cart": 52, "purchase": 10}
    assert pc.count_distinct(t["session_id"]).as_py() == 20
    buyers = t.filter(pc.equal(t["event_type"], "purchase"))
    assert pc.count_distinct(buyers["session_id"]).as_py() == 3
    first = t.slice(0, 1).to_pylist()[0]
    assert first["event_time"] == _utc(2022, 7, 31, 22, 0, 0, 25000)  # ts 1659304800025 ms


def test_otto_bad_lines_and_events(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"session":1,"events":[{"aid":5,"ts":1659304800025,"type":"clicks"},'
                    '{"aid":6,"ts":"soon","type":"carts"},{"aid":7,"ts":1659304800025,"type":"likes"},'
                    '{"ts":1659304800025,"type":"orders"}]}\n{not json\n')
    t = _parse("otto", path)
    assert _reasons(t) == {"bad_time": 1, "unknown_event_type": 1, "missing_item_id": 1, "bad_json": 1}
    assert t.filter(pc.equal(t["reason"], "bad_json"))["source_line"].to_pylist() == [2]


@pytest.mark.shared_data
def test_retailrocket_sessions_from_gap(shared_data: Path) -> None:
    path = shared_data / "schema_samples" / "retailrocket_events_head.csv"
    t = _parse("retailrocket", path)
    assert t.num_rows == 8 and _reasons(t) == {}
    assert sorted(t["event_type"].to_pylist()) == ["cart", "cart", "purchase"] + ["view"] * 5
    assert t["user_id"].null_count == 0
    sessions = set(t["session_id"].to_pylist())
    assert len(sessions) == 6  # 257597 and 111016 come back after more than 30 minutes
    assert "257597-1433226166900" in sessions  # addtocart 80 min after the view opens a session
    by_row = {r["source_line"]: r["session_id"] for r in t.to_pylist()}
    assert by_row[6] == by_row[7]  # addtocart then transaction 2 minutes later
    assert len(set(_parse("retailrocket", path, gap_minutes=120.0)["session_id"].to_pylist())) == 5


def test_retailrocket_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,9,\n"
                    "x,1,view,9,\n1433221332117,,view,9,\n1433221332117,2,click,9,\n")
    assert _reasons(_parse("retailrocket", path)) == {"bad_time": 1, "missing_user_id": 1,
                                                      "unknown_event_type": 1}


def test_sessionize_gap_is_order_free() -> None:
    users = pa.array(["a", "b", "a", "a"]).to_numpy(zero_copy_only=False)
    times = pa.array([0, 5, 32 * 60_000_000, 60_000_000], pa.int64()).to_numpy()
    assert list(sessionize_gap(users, times, 30.0)) == ["a-0", "b-0", "a-1920000", "a-0"]


@pytest.mark.shared_data
def test_rees46_mangled_category_ids_are_quarantined(shared_data: Path) -> None:
    t = _parse("rees46", shared_data / "schema_samples" / "rees46_events_head.csv")
    assert t.num_rows == 22
    assert _reasons(t) == {"mangled_category_id": 22}  # every head row: 2.10381E+18 / 2.05301E+18
    assert t["source_line"].to_pylist() == list(range(2, 24))
    assert "2.10381E+18" in t["raw"][0].as_py()
    assert t["event_time"][0].as_py() == _utc(2019, 10, 1)


def test_rees46_good_and_bad_rows(tmp_path: Path) -> None:
    header = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
    path = tmp_path / "rees.csv"
    path.write_text(header + "2019-10-01 00:00:05 UTC,cart,1,2053013555631882655,a.b,x,1.5,7,s1\n"
                    "2019-10-01 00:00:06 UTC,purchase,2,,,,2.5,,s1\n"
                    "yesterday,view,3,2053013555631882655,,,1,7,s2\n"
                    "2019-10-01 00:00:07 UTC,wishlist,3,2053013555631882655,,,1,7,s2\n"
                    "2019-10-01 00:00:07 UTC,view,3,2053013555631882655,,,cheap,7,s2\n"
                    "2019-10-01 00:00:07 UTC,view,3,2053013555631882655,,,1,7,\n")
    t = _parse("rees46", path)
    assert _reasons(t) == {"bad_time": 1, "unknown_event_type": 1, "bad_price": 1, "missing_session_id": 1}
    good = t.filter(pc.is_null(t["reason"])).to_pylist()
    assert [(g["event_type"], g["category"], g["price"], g["user_id"]) for g in good] == [
        ("cart", "2053013555631882655", 1.5, "7"), ("purchase", None, 2.5, None)]


def test_canonical_quarantines_contract_breaks(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"event_time": [1_700_000_000, 1_700_000_001, 1_700_000_002],
                             "session_id": ["s", "s", "s"], "item_id": ["1", "2", "3"],
                             "event_type": ["view", "like", "purchase"], "price": [1.0, 2.0, -3.0]}), path)
    t = _parse("canonical", path)
    assert _reasons(t) == {"unknown_event_type": 1, "negative_price": 1}
    assert dict(zip(t["source_line"].to_pylist(), t["reason"].to_pylist(), strict=True)) == {
        1: None, 2: "unknown_event_type", 3: "negative_price"}


WRONG = {
    "session-tsv": ("s.tsv", "SessionId\tItemId\n1\t2\n", "Time"),
    "diginetica": ("views.csv", "session_id;user_id;item_id;eventdate\n1;NA;2;2016-05-09\n", "timeframe"),
    "retailrocket": ("events.csv", "timestamp,visitorid,event,transactionid\n1,2,view,\n", "itemid"),
    "rees46": ("rees.csv", "event_time,event_type,product_id,category_id,category_code,brand,price,user_id\n",
               "user_session"),
}


@pytest.mark.parametrize("fmt", sorted(WRONG))
def test_wrong_schema_names_file_and_column(tmp_path: Path, fmt: str) -> None:
    name, text, column = WRONG[fmt]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SchemaError, match=rf"{name}.*{column}"):
        _parse(fmt, path)


def test_canonical_wrong_schema_names_file_and_column(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"event_time": [1], "session_id": ["s"], "event_type": ["view"]}), buf)
    with pytest.raises(SchemaError, match=r"part\.parquet.*item_id"):
        parse_file("canonical", buf.getvalue(), "s3://bucket/part.parquet")
