from __future__ import annotations

import pyarrow as pa
import pytest

from models.schema import EVENT_SCHEMA, SchemaError, conform, split_valid


def _raw(**cols: list) -> pa.Table:
    base = {
        "event_time": [1_700_000_000, 1_700_000_060.5, 1_700_000_120],
        "session_id": ["a", "a", "b"],
        "item_id": [1, 2, 3],
        "event_type": ["view", "cart", "purchase"],
    }
    base.update(cols)
    return pa.table(base)


def test_conform_casts_types_and_adds_optional_columns() -> None:
    table = conform(_raw(), "events.csv")
    assert table.schema.equals(EVENT_SCHEMA, check_metadata=False)
    assert table["item_id"].to_pylist() == ["1", "2", "3"]
    assert table["user_id"].null_count == 3
    # fractional unix seconds keep microseconds
    assert table["event_time"][1].value == 1_700_000_060_500_000


def test_conform_names_source_and_missing_column() -> None:
    with pytest.raises(SchemaError, match=r"events\.csv: missing required column\(s\) \['item_id'\]"):
        conform(_raw().drop_columns(["item_id"]), "events.csv")


def test_conform_names_column_that_cannot_be_cast() -> None:
    with pytest.raises(SchemaError, match=r"part-1\.parquet: column 'price'"):
        conform(_raw(price=["cheap", "1.0", "2.0"]), "part-1.parquet")


def test_split_valid_quarantines_each_bad_row_once_with_reason() -> None:
    table = conform(
        _raw(
            session_id=["a", "", None],
            event_type=["view", "teleport", "view"],
            price=[-1.0, 2.0, 3.0],
        ),
        "x",
    )
    split = split_valid(table)
    assert split.valid.num_rows == 0
    assert split.reason_counts() == {"negative_price": 1, "null_session_id": 2}
    assert split.quarantined.column_names[-1] == "reason"


def test_split_valid_keeps_good_rows() -> None:
    split = split_valid(conform(_raw(price=[1.0, None, 3.0]), "x"))
    assert split.valid.num_rows == 3
    assert split.reason_counts() == {}
