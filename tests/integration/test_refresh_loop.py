"""The refresh loop under faults, on the shared Ray cluster and a real redis-server: two loops at once,
a flushed Redis, a killed tick, a future-dated event, a bad tenant, a worse candidate model."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from models.schema import conform
from models.session_rec.artifact import pop_artifact
from pipelines.refresh import RefreshConfig, RefreshLoop, last_slot
from pipelines.synthetic import GeneratorConfig, generate, write_partitioned
from pipelines.ticks import missing_pointers, published_pairs
from store import keys
from store.lease import lease_key
from store.registry import Registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOW = pd.Timestamp("2026-11-03T12:07:00Z")  # the simulated clock: slot 12:00-12:05 has ended


def _events(n: int, seed: int, start: str = "2026-11-01", days: int = 2) -> pa.Table:
    return generate(GeneratorConfig(events=n, seed=seed, days=days, items=300, start=start, tenants=2))


def _rows(times: list[str], tenant: str | None = "t0", session: str = "odd") -> pa.Table:
    n = len(times)
    return conform(pa.table({
        "event_time": pa.array(pd.to_datetime(times, utc=True, format="mixed")),
        "session_id": [f"{session}{i}" for i in range(n)], "item_id": ["i1"] * n, "event_type": ["view"] * n,
        "tenant": pa.array([tenant] * n, pa.string())}), "test")


@pytest.fixture()
def env(tmp_path: Path, redis_client: Any, redis_server: str) -> dict[str, Any]:
    events = tmp_path / "events"
    write_partitioned(_events(4000, 1), events)
    registry = str(tmp_path / "registry")
    reg = Registry(registry)
    art = pop_artifact(tmp_path / "pop", [["i1", "i2"], ["i2", "i3"]])
    reg.set_champion("recommender", reg.register("recommender", art, {"model_type": "pop"}).version, "test")
    clock = tmp_path / "clock"
    clock.write_text(NOW.isoformat())
    cfg = RefreshConfig(events=str(events), features=str(tmp_path / "features"), registry=registry,
                        redis=redis_server, tables=["recs", "popular"], slow_every_s=0, active_window_s=2 * 86400,
                        lease_ttl_s=3, retry_s=0.5, gc_grace_s=0, clock_file=str(clock), serve_app=None,
                        model_cache_dir=str(tmp_path / "cache"), work_dir=str(tmp_path / "work"), buckets=2)
    (tmp_path / "work").mkdir()
    return {"cfg": cfg, "events": events, "clock": clock, "tmp": tmp_path, "client": redis_client}


def _loop(cfg: RefreshConfig, **kw: Any) -> tuple[RefreshLoop, io.StringIO]:
    out = io.StringIO()
    return RefreshLoop(cfg, out=out, **kw), out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_tick_publishes_and_a_retried_tick_is_a_noop(ray_cluster: object, env: dict[str, Any]) -> None:
    loop, out = _loop(env["cfg"])
    slot = last_slot(NOW, 300)
    first = loop.tick("fast", slot)
    assert first["outcome"] == "ok", first
    assert first["tick"] == "fast-20261103T120000" and first["precompute"]["recs"]["rows"]
    again = loop.tick("fast", slot)
    assert again["outcome"] == "noop" and again["attempt"] == 2
    assert not list((env["tmp"] / "work").iterdir())  # tick dirs removed
    assert [ln["outcome"] for ln in _lines(out)] == ["ok", "noop"]


def test_two_loops_at_once_never_publish_over_each_other(ray_cluster: object, env: dict[str, Any]) -> None:
    a, _ = _loop(env["cfg"])
    b, _ = _loop(env["cfg"])
    slot = last_slot(NOW, 300)
    results: dict[str, dict[str, Any]] = {}
    threads = [threading.Thread(target=lambda n=n, lp=lp: results.__setitem__(n, lp.tick("fast", slot)))
               for n, lp in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(r["outcome"] for r in results.values())
    assert outcomes in (["locked", "ok"], ["noop", "ok"]), results
    loser = next(n for n, r in results.items() if r["outcome"] != "ok")
    assert (a if loser == "a" else b).tick("fast", slot)["outcome"] == "noop"  # its retry finds the work done
    client = env["client"]
    for tenant in ("t0", "t1"):  # one publication per pointer: fenced by the single winner's token
        assert client.zcard(keys.index_key("recs", tenant)) == 1


def test_a_flushed_redis_is_republished_by_the_next_tick(ray_cluster: object, env: dict[str, Any]) -> None:
    loop, _ = _loop(env["cfg"])
    slot = last_slot(NOW, 300)
    assert loop.tick("fast", slot)["outcome"] == "ok"
    client = env["client"]
    live = published_pairs(client, ["recs", "popular"])
    assert live == {("popular", "default"), ("recs", "t0"), ("recs", "t1")}
    client.flushall()
    assert missing_pointers(client, live) == ["popular/default", "recs/t0", "recs/t1"]
    healed = loop.tick("fast", slot)  # the same slot retried: its marker is gone with the flush
    assert healed["outcome"] == "ok" and healed["attempt"] == 1
    assert healed["republished"] == ["popular/default", "recs/t0", "recs/t1"] and healed["still_missing"] == []
    assert missing_pointers(client, live) == []


def test_a_killed_tick_is_followed_by_a_successful_one(ray_cluster: Any, env: dict[str, Any]) -> None:
    cfg = env["cfg"]
    config = env["tmp"] / "refresh.json"
    config.write_text(cfg.model_dump_json())
    run_env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["address"], "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.refresh", "--config", str(config), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=run_env, cwd=ROOT)
    client = env["client"]
    deadline = time.time() + 120
    while client.get(lease_key()) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the tick finished before it could be killed"
    time.sleep(0.5)  # in the middle of its features step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert client.get(lease_key()) is not None  # a killed run cannot release its lease
    loop, out = _loop(cfg)
    loop.run(once=True)  # locked: the dead run's lease has not expired yet
    time.sleep(cfg.lease_ttl_s)
    assert loop.run(once=True) == 0
    lines = _lines(out)
    assert [ln["outcome"] for ln in lines] == ["locked", "ok"] and lines[-1]["attempt"] == 2  # the retry
    assert missing_pointers(client, published_pairs(client, ["recs", "popular"])) == []
    assert Path(cfg.features).is_symlink() and (Path(cfg.features) / "_manifest.json").exists()
    assert not list((env["tmp"] / "work").iterdir())


def test_a_future_event_never_freezes_the_watermark(ray_cluster: object, env: dict[str, Any]) -> None:
    write_partitioned(pa.concat_tables([_rows(["2099-06-01T00:00:00"], session="fut"),
                                        _rows(["1970-01-01T00:00:01"], session="old"),
                                        _rows(["2026-11-03T12:30:00"], session="soon")]), env["events"],
                      basename="odd")
    loop, _ = _loop(env["cfg"])
    first = loop.tick("fast", last_slot(NOW, 300))
    assert first["outcome"] == "ok"
    assert first["features"]["quarantined_new"] == {"future_time": 2, "time_out_of_range": 1}
    assert pd.Timestamp(first["features"]["watermark"]) <= NOW + pd.Timedelta(minutes=10)
    # the next slot's events are read: the watermark follows the data, not the bad row
    later = NOW + pd.Timedelta(minutes=30)
    env["clock"].write_text(later.isoformat())
    write_partitioned(_rows(["2026-11-03T12:34:00"], session="next"), env["events"], basename="next")
    second = loop.tick("fast", last_slot(later, 300))
    assert second["outcome"] == "ok" and second["features"]["quarantined_new"] == {}  # counted once
    assert pd.Timestamp(second["features"]["watermark"]) == pd.Timestamp("2026-11-03T12:34:00Z")
    assert "next0" in set(pd.read_parquet(Path(env["cfg"].features) / "sequences")["session_id"])


def test_a_bad_tenant_is_quarantined_and_never_blocks_the_others(ray_cluster: object, env: dict[str, Any]) -> None:
    write_partitioned(pa.concat_tables([_rows(["2026-11-03T11:00:00"] * 3, tenant="bad tenant:*", session="b"),
                                        _rows(["2026-11-03T11:00:00"], tenant="t1", session="good")]),
                      env["events"], basename="bad")
    bad_dir = env["events"] / "date=2026-13-45"  # and a malformed partition
    bad_dir.mkdir()
    (env["events"] / "date=2026-11-03" / "bad-00000.parquet").rename(bad_dir / "x.parquet")
    write_partitioned(pa.concat_tables([_rows(["2026-11-03T11:00:00"] * 3, tenant="bad tenant:*", session="b"),
                                        _rows(["2026-11-03T11:00:00"], tenant="t1", session="good")]),
                      env["events"], basename="bad")
    loop, _ = _loop(env["cfg"])
    report = loop.tick("fast", last_slot(NOW, 300))
    assert report["outcome"] == "ok", report
    assert report["features"]["quarantined_new"] == {"invalid_tenant": 3, "malformed_partition": 4}
    assert set(report["precompute"]["recs"]["rows"]) == {"t0", "t1"}
    assert not list(env["client"].scan_iter(match="tandem:bad*"))


def test_a_worse_candidate_is_refused_and_the_champion_stays(ray_cluster: object, env: dict[str, Any]) -> None:
    cfg = env["cfg"].model_copy(update={"slow_every_s": 86400, "models": ["recommender"]})
    loop, _ = _loop(cfg)
    assert loop.tick("fast", last_slot(NOW, 300))["outcome"] == "ok"
    reg = Registry(cfg.registry)
    # a real champion first: V-SKNN through the slow tick (pop -> vsknn passes the gates)
    better = RefreshLoop(cfg.model_copy(update={"recommender_model": "vsknn"}), out=io.StringIO())
    slot = last_slot(NOW, 86400)
    up = better.tick("slow", slot)
    assert up["outcome"] == "ok" and up["gates"]["recommender"]["promoted"], up
    champion = reg.champion("recommender")
    assert up["precompute"]["recs"]["model_version"] == champion  # the candidate's tables, live
    env["client"].delete(f"tandem:refresh:tick:slow-{slot:%Y%m%dT%H%M%S}")
    worse = RefreshLoop(cfg.model_copy(update={"recommender_model": "pop"}), out=io.StringIO())
    down = worse.tick("slow", slot)
    gates = down["gates"]["recommender"]
    assert down["outcome"] == "ok" and gates["promoted"] is False and "recall_at_k" in gates["reason"]
    assert reg.champion("recommender") == champion and "precompute" not in down


def test_per_tick_checks_run_after_the_publication_and_never_undo_it(ray_cluster: object,
                                                                      env: dict[str, Any]) -> None:
    seen: list[str] = []

    def guardrail(ctx: Any) -> dict[str, Any]:
        seen.append(ctx.tick_id)
        assert ctx.client.get(keys.pointer_key("recs", "t0")) is not None  # the tables are live already
        return {"name": "guardrail", "ok": True}

    def broken(ctx: Any) -> dict[str, Any]:
        raise RuntimeError("guardrail store unreachable")

    broken.__name__ = "broken"
    loop, _ = _loop(env["cfg"], checks=[guardrail, broken])
    report = loop.tick("fast", last_slot(NOW, 300))
    assert report["outcome"] == "ok" and seen == [report["tick"]]
    assert report["checks"] == [{"name": "guardrail", "ok": True},
                                {"name": "broken", "ok": False, "error": "RuntimeError: guardrail store unreachable"}]
    with_experiments = RefreshLoop(env["cfg"].model_copy(update={"experiment_logs": str(env["tmp"] / "explogs")}),
                                   out=io.StringIO())
    assert [getattr(c, "__name__", "") for c in with_experiments.checks] == ["experiments"]
