"""The synthetic multi-field CTR table: shape, missing values, and that its truth is the truth."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.bidding.synthetic_ctr import FieldSpec, SyntheticCtrConfig, make_ctr_table
from models.evaluation.calibration import calibration_report

CFG = SyntheticCtrConfig(rows=60_000, seed=3, base_ctr=0.02)


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return make_ctr_table(CFG)


def test_columns_missing_rates_and_cardinality(table) -> None:  # type: ignore[no-untyped-def]
    f = table.frame
    assert len(f) == CFG.rows
    assert {"click", "market_price", "true_ctr", "floor_price", "domain", "usertag"} <= set(f.columns)
    for spec in CFG.fields:
        missing = f[spec.name].isna().mean()
        assert missing == pytest.approx(spec.missing_rate, abs=0.01), spec.name
    assert f["domain"].nunique() > 3_000  # high-cardinality ids with a long tail
    assert f["adexchange"].nunique() == 4
    assert f["floor_price"].isna().mean() == pytest.approx(CFG.floor_price_missing_rate, abs=0.01)
    assert f["market_price"].between(0, CFG.max_price).all()


def test_mean_ctr_and_labels_follow_the_true_function(table) -> None:  # type: ignore[no-untyped-def]
    f = table.frame
    assert f["true_ctr"].mean() == pytest.approx(CFG.base_ctr, rel=1e-3)
    np.testing.assert_allclose(table.true_ctr(f), f["true_ctr"].to_numpy(), rtol=1e-9)
    report = calibration_report(f["click"].to_numpy(), f["true_ctr"].to_numpy())
    assert report.ece < 0.003  # the truth is calibrated
    assert report.normalized_entropy < 0.97  # and informative
    assert report.bins[-1].observed > 3 * report.bins[0].observed


def test_better_impressions_cost_more(table) -> None:  # type: ignore[no-untyped-def]
    f = table.frame
    corr = np.corrcoef(np.log(f["true_ctr"]), np.log1p(f["market_price"]))[0, 1]
    assert corr > 0.1


def test_deterministic_per_seed() -> None:
    a = make_ctr_table(SyntheticCtrConfig(rows=500, seed=1)).frame
    b = make_ctr_table(SyntheticCtrConfig(rows=500, seed=1)).frame
    c = make_ctr_table(SyntheticCtrConfig(rows=500, seed=2)).frame
    assert a.equals(b) and not a.equals(c)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="missing_rate"):
        FieldSpec(name="x", cardinality=3, missing_rate=1.5)
    with pytest.raises(ValueError, match="interaction field 'nope'"):
        make_ctr_table(SyntheticCtrConfig(rows=10, interaction=("hour", "nope")))
