"""iPinYou log adapters: good rows parse, bad rows are named and quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bidding.ipinyou import (
    BID_COLUMNS,
    IMP_COLUMNS,
    IpinyouFormatError,
    load_info,
    read_raw_log,
    read_theta,
    read_yzx,
)


def test_theta_reads_rows_and_quarantines_bad_ones(tmp_path: Path) -> None:
    f = tmp_path / "test.theta.txt"
    f.write_text("0 70 0.0021\n1 6 0.0033\n2 5 0.1\n0 x 0.1\n0 5 1.5\n0 5\n\n0 300 0\n")
    log, q = read_theta(f)
    np.testing.assert_array_equal(log.click, [0, 1, 0])
    np.testing.assert_array_equal(log.price, [70, 6, 300])
    np.testing.assert_allclose(log.pctr, [0.0021, 0.0033, 0.0])
    assert q.total == 4
    assert q.counts == {"click": 1, "market_price": 1, "pCTR": 1, "fields": 1}
    assert q.examples[0] == f"{f}:3: click: expected 0 or 1, got '2'"


def test_theta_strict_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("0 70 0.002\n0 -3 0.002\n")
    with pytest.raises(IpinyouFormatError, match=r"t\.txt:2: market_price: must be >= 0"):
        read_theta(f, strict=True)


def test_yzx_reads_sparse_features(tmp_path: Path) -> None:
    f = tmp_path / "train.yzx.txt"
    f.write_text("0 52 0:1 5:1 17:1\n1 300 0:1 9:1\n0 12 0:1 bad\n0 8\n")
    log, q = read_yzx(f)
    assert len(log) == 3
    np.testing.assert_array_equal(log.click, [0, 1, 0])
    np.testing.assert_array_equal(log.price, [52, 300, 8])
    np.testing.assert_array_equal(log.features(0), [0, 5, 17])
    np.testing.assert_array_equal(log.features(1), [0, 9])
    assert log.features(2).size == 0
    assert q.counts == {"feature": 1}
    assert "train.yzx.txt:3: feature: field 4 must be index:value, got 'bad'" in q.examples[0]


def _imp_row(**over: str) -> str:
    vals = {c: "x" for c in IMP_COLUMNS}
    vals.update(bidid="b1", timestamp="20130606000104828", logtype="1", region="1", city="2",
                slotwidth="300", slotheight="250", slotprice="0", bidprice="300", payprice="52",
                usertag="10006,13866", domain="", keypage="null")
    vals.update(over)
    return "\t".join(vals[c] for c in IMP_COLUMNS)


def test_raw_impression_log_types_missing_values_and_tags(tmp_path: Path) -> None:
    f = tmp_path / "imp.20130606.txt"
    f.write_text("\n".join([
        _imp_row(),
        _imp_row(bidid="b2", payprice="abc"),
        _imp_row(bidid="b3", timestamp="2013"),
        _imp_row(bidid="b4", usertag=""),
        "only\tthree\tfields",
    ]) + "\n")
    cols, q = read_raw_log(f, "imp")
    assert cols["bidid"] == ["b1", "b4"]
    assert cols["payprice"] == [52, 52] and cols["region"] == [1, 1]
    assert cols["domain"] == [None, None] and cols["keypage"] == [None, None]
    assert cols["usertag"] == [["10006", "13866"], []]
    assert q.counts == {"payprice": 1, "timestamp": 1, "fields": 1}
    assert any("imp.20130606.txt:2: payprice: expected a whole number, got 'abc'" in e for e in q.examples)
    with pytest.raises(IpinyouFormatError, match=r":2: payprice"):
        read_raw_log(f, "imp", strict=True)


def test_raw_bid_log_and_season_one_without_tags(tmp_path: Path) -> None:
    vals = {c: "7" for c in BID_COLUMNS}
    vals.update(bidid="b1", timestamp="20130311000104828", useragent="Mozilla", usertag="1,2")
    full = "\t".join(vals[c] for c in BID_COLUMNS)
    f = tmp_path / "bid.txt"
    f.write_text(full + "\n" + "\t".join(vals[c] for c in BID_COLUMNS[:-1]) + "\n")
    cols, q = read_raw_log(f, "bid")
    assert q.total == 0
    assert cols["usertag"] == [["1", "2"], []]
    assert cols["bidprice"] == [7, 7] and cols["useragent"] == ["Mozilla", "Mozilla"]
    with pytest.raises(ValueError, match="kind"):
        read_raw_log(f, "win")


def test_info_json_and_its_errors(tmp_path: Path) -> None:
    f = tmp_path / "info.json"
    f.write_text(json.dumps({"clk_train": 2, "imp_train": 4, "cost_train": 10,
                             "price_counter_train": [0, 2, 2], "field": 60}))
    info = load_info(f)
    assert info.cpm_train == 2.5 and info.ctr_train == 0.5
    np.testing.assert_allclose(info.market().pdf, [1 / 7, 3 / 7, 3 / 7])  # Laplace +1
    f.write_text(json.dumps({"clk_train": 2, "imp_train": 0, "cost_train": 10, "price_counter_train": [1, 2]}))
    with pytest.raises(IpinyouFormatError, match=r"info\.json: imp_train: Input should be greater than 0"):
        load_info(f)
    f.write_text("{not json")
    with pytest.raises(IpinyouFormatError, match="not a readable JSON"):
        load_info(f)


@pytest.mark.shared_data
def test_real_2997_log_parses_cleanly(shared_data: Path) -> None:
    log, q = read_theta(shared_data / "ipinyou_2997" / "test.theta.txt")
    info = load_info(shared_data / "ipinyou_2997" / "info.json")
    assert q.total == 0
    assert len(log) == info.imp_test == 156063
    assert int(log.click.sum()) == info.clk_test == 530
    assert int(log.price.sum()) == info.cost_test
