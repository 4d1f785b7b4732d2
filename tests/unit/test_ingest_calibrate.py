"""``jobs.calibrate``: statistics on hand-computed toy input, and the CLI on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.calibrate import main
from pipelines.synthetic_stats import session_stats, zipf_exponent


def test_zipf_exponent_recovers_a_power_law() -> None:
    counts = np.round(1e6 * np.arange(1, 301, dtype=float) ** -1.2)
    assert zipf_exponent(counts[::-1], head=200) == pytest.approx(1.2, abs=0.01)
    assert np.isnan(zipf_exponent(np.array([5, 0, 0])))


def test_session_stats_by_hand() -> None:
    t = pa.table({
        "event_time": pa.array([0, 10, 40, 0, 100, 200], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        "session_id": ["a", "a", "a", "b", "b", "b"],
        "user_id": [None, None, None, "u", "u", "u"],
        "item_id": ["x", "x", "y", "y", "z", "z"],
        "event_type": ["view", "cart", "view", "view", "view", "purchase"],
    })
    s = session_stats(t)
    assert (s["sessions"], s["events"], s["len_mean"], s["len_median"]) == (2, 5, 2.5, 2.5)
    assert s["distinct_items_mean"] == 2.0
    assert s["purchase_rate"] == 0.5 and s["anonymous_share"] == 0.5
    assert s["dwell_median_s"] == 30.0  # gaps 10, 30 (a) and 100 (b)


@pytest.mark.shared_data
def test_cli_prints_table_and_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "5000", "--data", str(shared_data)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| statistic | synthetic | yoochoose_rsc15_100k | diginetica_sample |")
    stats = json.loads(lines[-1])["stats"]
    assert stats["yoochoose_rsc15_100k"]["sessions"] == 17_794
    assert stats["yoochoose_rsc15_100k"]["purchase_rate"] is None  # train_full has no buys
    assert stats["diginetica_sample"]["purchase_rate"] == pytest.approx(138 / 2986, abs=1e-4)
    assert stats["synthetic"]["events"] == 5000
