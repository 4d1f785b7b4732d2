"""The feature job on the shared Ray cluster: outputs, idempotency, crash safety, incremental runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from models.features.session import SESSION_FEATURES, session_features
from models.features.user import USER_FEATURES
from pipelines import features
from pipelines.synthetic import GeneratorConfig, generate, write_partitioned


def _sessions(out: Path) -> pd.DataFrame:
    return ds.dataset(out / "sessions", partitioning="hive").to_table().to_pandas().sort_values("session_id")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("events")
    table = generate(GeneratorConfig(events=12_000, seed=5, days=4, items=800, start="2026-11-01"))
    # two malformed rows: a blank session id and an unknown event type
    bad = table.slice(0, 2).to_pydict()
    bad["session_id"] = ["", "s-bad"]
    bad["event_type"] = ["view", "teleport"]
    write_partitioned(pa.concat_tables([table, pa.table(bad, schema=table.schema)]), root)
    return root


@pytest.fixture(scope="module")
def first_run(ray_cluster: object, events: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("feat") / "features"
    manifest = features.run(str(events), out, buckets=4)
    return out, manifest


def test_outputs_quarantine_and_manifest(first_run: tuple[Path, dict], events: Path) -> None:
    out, manifest = first_run
    assert out.is_symlink()
    assert manifest["quarantine_reasons"] == {"null_session_id": 1, "unknown_event_type": 1}
    q = ds.dataset(out / "quarantine").to_table()
    assert sorted(q["reason"].to_pylist()) == ["null_session_id", "unknown_event_type"]
    assert json.loads((out / features.MANIFEST).read_text())["rows_in"] == manifest["rows_in"]
    sess = _sessions(out)
    assert set(SESSION_FEATURES) <= set(sess.columns) and {"purchased", "purchase_within_7d"} <= set(sess.columns)
    assert sess["session_id"].is_unique and len(sess) == manifest["sessions"]
    items = pq.read_table(out / "items").to_pandas()
    assert items["popularity_rank"].min() == 1 and len(items) == manifest["items"]
    seq = ds.dataset(out / "sequences", partitioning="hive").to_table().to_pandas()
    assert seq["items"].map(len).min() >= 1


def test_batch_features_equal_the_online_function(first_run: tuple[Path, dict], events: Path) -> None:
    out, _ = first_run
    raw = ds.dataset(events, partitioning="hive").to_table().to_pandas().drop(columns=["date"])
    raw = raw[raw["session_id"].str.startswith("s") & raw["event_type"].isin(["view", "cart", "remove_from_cart",
                                                                              "purchase"])]
    online = session_features(raw).set_index("session_id")[list(SESSION_FEATURES)].sort_index()
    batch = _sessions(out).set_index("session_id")[list(SESSION_FEATURES)].sort_index()
    pd.testing.assert_frame_equal(batch.loc[online.index], online, check_dtype=False)


def test_same_window_twice_gives_same_rows(first_run: tuple[Path, dict], events: Path, tmp_path: Path) -> None:
    out, _ = first_run
    again = tmp_path / "again"
    features.run(str(events), again, buckets=4)
    a = _sessions(out).reset_index(drop=True)
    b = _sessions(again).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_crash_before_commit_leaves_previous_output(first_run: tuple[Path, dict], events: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out, manifest = first_run
    before = os.readlink(out)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(features, "_finish", boom)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        features.run(str(events), out, buckets=4)
    assert os.readlink(out) == before
    assert json.loads((out / features.MANIFEST).read_text())["run_id"] == manifest["run_id"]
    versions = out.parent / f".{out.name}.versions"
    assert sorted(p.name for p in versions.iterdir() if p.name != "_CURRENT") == [Path(before).name]  # staged version removed


def test_incremental_run_reprocesses_only_recent_partitions(ray_cluster: object, tmp_path: Path) -> None:
    table = generate(GeneratorConfig(events=8_000, seed=9, days=4, items=500, start="2026-11-01"))
    days = pd.to_datetime(table["event_time"].to_pandas(), utc=True).dt.strftime("%Y-%m-%d")
    early = table.filter(pa.array((days < "2026-11-04").to_numpy()))
    events, out = tmp_path / "events", tmp_path / "features"
    write_partitioned(early, events)
    features.run(str(events), out, buckets=4)
    first = _sessions(out)
    write_partitioned(table, events)  # the day-4 partition arrives (and day 3 is rewritten)
    manifest = features.run(str(events), out, incremental=True, lateness_hours=24, buckets=4)
    assert manifest["since"] is not None
    second = _sessions(out)
    old = first[first["date"] < "2026-11-02"].set_index("session_id")
    kept = second.set_index("session_id").loc[old.index]
    pd.testing.assert_frame_equal(kept[list(SESSION_FEATURES)], old[list(SESSION_FEATURES)])
    full = tmp_path / "full"
    features.run(str(events), full, buckets=4)
    assert set(_sessions(full)["session_id"]) == set(second["session_id"])


def _login_events() -> pa.Table:
    """Per i: a history session of user v{i} (day 1, one purchase) and a session m{i} (day 3) whose
    first events are anonymous (even i) or under another id w{i} (odd i) before a login as v{i};
    user v0 also has a session p0 that logs in only at its purchase, and a later session l0 (day 5)."""
    rows = []  # (time, session, user, item, type, price)
    for i in range(8):
        rows += [(f"2026-11-01 10:0{i}", f"h{i}", f"v{i}", "i1", "view", 10.0),
                 (f"2026-11-01 10:1{i}", f"h{i}", f"v{i}", "i1", "purchase", 10.0)]
        early = None if i % 2 == 0 else f"w{i}"
        rows += [(f"2026-11-03 12:0{i}", f"m{i}", early, "i2", "view", 5.0),
                 (f"2026-11-03 12:1{i}", f"m{i}", early, "i3", "view", 6.0),
                 (f"2026-11-03 12:2{i}", f"m{i}", f"v{i}", "i4", "view", 7.0),
                 (f"2026-11-03 12:3{i}", f"m{i}", f"v{i}", "i4", "cart", 7.0)]
    rows += [("2026-11-03 18:00", "p0", None, "i5", "view", 3.0), ("2026-11-03 18:05", "p0", None, "i5", "cart", 3.0),
             ("2026-11-03 18:10", "p0", "v0", "i5", "purchase", 3.0), ("2026-11-05 09:00", "l0", "v0", "i6", "view", 1.0)]
    t, s, u, it, ty, pr = zip(*rows, strict=True)
    return pa.table({"event_time": pa.array(pd.to_datetime(list(t), utc=True)), "session_id": list(s),
                     "user_id": pa.array(list(u), pa.string()), "item_id": list(it), "event_type": list(ty),
                     "price": list(pr)})


def test_session_with_two_user_ids_appears_once_with_its_users_history(ray_cluster: object, tmp_path: Path) -> None:
    from models.schema import conform

    write_partitioned(conform(_login_events()), tmp_path / "events")
    manifest = features.run(str(tmp_path / "events"), tmp_path / "features", buckets=4)
    sess = _sessions(tmp_path / "features")
    assert sess["session_id"].is_unique and len(sess) == manifest["sessions"] == 8 + 8 + 2
    s = sess.set_index("session_id")
    for i in range(8):
        m = s.loc[f"m{i}"]
        assert m["n_events"] == 4 and m["n_items"] == 3 and m["user_id"] == f"v{i}"  # the whole session, its last user
        assert m["u_sessions_7d"] == 1 and m["u_purchases_7d"] == 1 and m["u_spend_7d"] == 10.0  # v{i}'s history
    assert s.loc["m1", "date"] == "2026-11-03"
    # p0 knew no user before its purchase: no user features (point in time) ...
    assert pd.isna(s.loc["p0", "user_id"]) and s.loc["p0", list(USER_FEATURES)].isna().all()
    assert s.loc["p0", "purchased"] == 1
    # ... but it belongs to v0's history afterwards: l0 sees h0, m0 and p0, two of them purchases.
    assert s.loc["l0", "u_sessions_7d"] == 3 and s.loc["l0", "u_purchases_7d"] == 2
    summaries = ds.dataset(tmp_path / "features" / "summaries", partitioning="hive").to_table().to_pandas()
    assert summaries["session_id"].is_unique
    assert summaries.set_index("session_id").loc["p0", "user_id"] == "v0"
