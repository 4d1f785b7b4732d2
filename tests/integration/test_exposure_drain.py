"""The experiment-log drain against a real redis-server: Redis Streams -> Parquet, at least once,
acked only after the file is written, duplicates dropped on read, lost records counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from pipelines import exposures
from store import explog, keys

pytestmark = pytest.mark.integration

T0 = 1_796_000_000_000  # 2026-11-30 in epoch ms


def _add(client: Any, tenant: str, n: int, writer: str = "w1", skip: frozenset[int] = frozenset(),
         start: int = 0) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        if i in skip:
            continue
        pipe.xadd(keys.log_stream("exposures", tenant), {explog.FIELD: explog.encode(explog.exposure(
            tenant, "e1", "control" if i % 2 else "model", f"s{i}", None, [f"i{i}", "i0"], "v1", "model",
            "recommend", T0 + i, writer, i))})
        pipe.xadd(keys.events_stream_key(tenant), explog.event_entry(f"s{i}", "i0", "purchase", T0 + i, 12.5))
    pipe.execute()


def test_drain_writes_parquet_acks_and_empties_the_stream(redis_client: Any, tmp_path: Path) -> None:
    _add(redis_client, "acme", 250)
    redis_client.xadd(keys.events_stream_key("acme"), {"session_id": "s1", "event": "{not json"})
    redis_client.xadd(keys.events_stream_key("acme"), explog.event_entry("s1", "i0", "remove_from_cart", T0))
    redis_client.xadd(keys.events_stream_key("acme"), explog.event_entry("s1", "i7", "view", T0))
    out = exposures.drain(redis_client, str(tmp_path / "logs"), ["acme"], batch=100)
    by_kind = {r.kind: r for r in out}
    assert by_kind["exposures"].read == 250 and by_kind["exposures"].written == 250
    assert len(by_kind["exposures"].files) == 3  # 100 + 100 + 50
    assert by_kind["outcomes"].quarantined == {"unreadable event": 1} and by_kind["outcomes"].written == 251
    assert all(r.backlog == 0 and r.error is None and r.trimmed == 0 for r in out)
    assert redis_client.xlen(keys.log_stream("exposures", "acme")) == 0  # acked entries are deleted
    logs = exposures.read_logs(str(tmp_path / "logs"), "acme")
    assert logs.exposures.num_rows == 250 and logs.outcomes.num_rows == 251  # 250 purchases + 1 view
    assert logs.duplicates == {"exposures": 0, "outcomes": 0} and logs.missing == {"exposures": 0, "outcomes": 0}
    row = logs.exposures.slice(3, 1).to_pylist()[0]
    assert (row["session_id"], row["items"], row["positions"], row["variant"]) == ("s3", ["i3", "i0"], [0, 1],
                                                                                 "control")
    assert logs.outcomes.column("revenue").to_pylist()[0] == 12.5
    assert logs.outcomes.filter(pc.equal(logs.outcomes["event_type"], "click")).column("item_id").to_pylist() == ["i7"]
    # the live-event stream is shared: drained outcome entries are acknowledged, not deleted
    assert redis_client.xlen(keys.events_stream_key("acme")) == 253
    files = list((tmp_path / "logs" / "acme" / "exposures").rglob("*"))
    assert not [f for f in files if ".tmp" in f.name]
    now = datetime.now(UTC)  # partitioned by the day of the entries' server time (just now)
    days = {f"date={d:%Y-%m-%d}" for d in (now, now - timedelta(minutes=1))}
    assert {f.parent.name for f in files if f.is_file()} <= days
    # a second drain finds nothing new and writes nothing
    again = exposures.drain(redis_client, str(tmp_path / "logs"), ["acme"], batch=100)
    assert sum(r.read for r in again) == 0


class _AckFails:
    """A client whose first ack pipeline raises: the drain died after writing, before acking."""

    def __init__(self, client: Any):
        self._c = client
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self._c.pipeline(transaction=transaction)
        if not self.failed:
            self.failed = True

            def boom() -> None:
                raise ConnectionError("killed before the ack")
            pipe.execute = boom
        return pipe


def test_a_drain_killed_before_its_ack_is_redrained_once(redis_client: Any, tmp_path: Path) -> None:
    _add(redis_client, "bolt", 120)
    logs_uri = str(tmp_path / "logs")
    first = exposures.drain(_AckFails(redis_client), logs_uri, ["bolt"], batch=50)
    assert first[0].error is not None and "killed before the ack" in first[0].error
    # the first 50 exposures were written but not acked: they are pending in the group
    pending = redis_client.xpending(keys.log_stream("exposures", "bolt"), exposures.GROUP)
    assert pending["pending"] == 50
    # the next drain re-reads them first, in batches of another size (other file names)
    second = exposures.drain(redis_client, logs_uri, ["bolt"], batch=30)
    exp = next(r for r in second if r.kind == "exposures")
    assert exp.redelivered == 50 and exp.read == 120
    logs = exposures.read_logs(logs_uri, "bolt")
    assert logs.exposures.num_rows == 120  # each entry once
    assert logs.duplicates["exposures"] == 50  # written twice, dropped once on read
    assert sorted(logs.exposures.column("seq").to_pylist()) == list(range(120))


def test_lost_records_are_counted_and_one_bad_tenant_does_not_stop_the_others(redis_client: Any,
                                                                             tmp_path: Path) -> None:
    _add(redis_client, "gappy", 40, skip=frozenset({7, 8, 20}))
    _add(redis_client, "gappy", 10, writer="w2")
    out = exposures.drain(redis_client, str(tmp_path / "logs"), ["bad:tenant", "gappy"])
    errors = [r for r in out if r.error]
    assert [r.tenant for r in errors] == ["bad:tenant", "bad:tenant"]
    logs = exposures.read_logs(str(tmp_path / "logs"), "gappy")
    assert logs.exposures.num_rows == 47
    assert logs.missing["exposures"] == 3  # gaps in the writers' seq


def test_entries_trimmed_before_the_drain_are_counted(redis_client: Any, tmp_path: Path) -> None:
    key = keys.events_stream_key("trim")
    for i in range(50):  # older than the experiment: not counted when the group is made
        redis_client.xadd(key, explog.event_entry(f"old{i}", "i1", "view", T0), maxlen=20, approximate=False)
    first = exposures.drain_stream(redis_client, str(tmp_path / "logs"), "trim", "outcomes")
    assert (first.read, first.trimmed) == (20, 0)
    for i in range(100):  # the app's MAXLEN trims 70 of these before the next drain
        redis_client.xadd(key, explog.event_entry(f"s{i}", "i1", "purchase", T0 + i, 5.0), maxlen=30, approximate=False)
    second = exposures.drain_stream(redis_client, str(tmp_path / "logs"), "trim", "outcomes")
    assert (second.read, second.trimmed, second.backlog) == (30, 70, 0)
