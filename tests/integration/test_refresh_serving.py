"""The refresh loop with a running Serve app: a slow tick promotes, publishes the candidate's tables
first, hot-swaps every replica and verifies it; /v1/health reports a missing pointer; every metric
of the Grafana dashboard is exported by the live Prometheus endpoint."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from models.session_rec.artifact import pop_artifact
from pipelines import hotswap
from pipelines.refresh import RefreshConfig, RefreshLoop, last_slot
from pipelines.synthetic import GeneratorConfig, generate, write_partitioned
from store import keys
from store.registry import Registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana" / "tandem.json"
NOW = pd.Timestamp("2026-11-03T00:07:00Z")
APP = "tandem-ops"


def _deploy(args: dict[str, Any]) -> None:
    """Deploy APP beside whatever apps the shared Serve runs (declaratively, as ``serve deploy``)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    info = hotswap.details()
    apps = [a["deployed_app_config"] for n, a in (info.get("applications") or {}).items()
            if n != APP and a.get("deployed_app_config")]
    apps.append({"name": APP, "route_prefix": "/ops", "import_path": "serve.app:build_app", "args": args,
                 "deployments": [{"name": "Tandem", "num_replicas": 2, "user_config": {"generation": 0},
                                  "health_check_period_s": 1, "graceful_shutdown_wait_loop_s": 0.5,
                                  "graceful_shutdown_timeout_s": 2, "ray_actor_options": {"num_cpus": 0}}]})
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate({"applications": apps}), _blocking=True)


@pytest.fixture(scope="module")
def stack(ray_cluster: Any, serve_http: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import redis
    from ray import serve

    tmp = tmp_path_factory.mktemp("ops")
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    events = generate(GeneratorConfig(events=4000, seed=3, days=2, items=200, start="2026-11-01", tenants=1))
    write_partitioned(events, tmp / "events")
    t_field = events.schema.field("event_time")
    future = events.slice(0, 1).set_column(0, t_field, pa.array([pd.Timestamp("2030-01-01T00:00:00Z")]).cast(t_field.type))
    write_partitioned(future, tmp / "events", basename="future")  # quarantined as future_time
    reg = Registry(str(tmp / "registry"))
    art = pop_artifact(tmp / "pop", [["i1", "i2"], ["i2", "i3"]])
    reg.set_champion("recommender", reg.register("recommender", art, {"model_type": "pop"}).version, "test")
    (tmp / "clock").write_text(NOW.isoformat())
    cfg = RefreshConfig(events=str(tmp / "events"), features=str(tmp / "features"), registry=str(reg.uri),
                        redis=redis_server, tables=["recs", "popular"], models=["recommender"],
                        recommender_model="vsknn", slow_every_s=86400, active_window_s=3 * 86400, lease_ttl_s=5,
                        gc_grace_s=0, clock_file=str(tmp / "clock"), serve_app=APP, verify_timeout_s=60,
                        model_cache_dir=str(tmp / "cache"), buckets=2)
    _deploy({"registry_uri": str(reg.uri), "redis_url": redis_server, "api_keys": {"key-ops": "default"},
             "model_cache_dir": str(tmp / "cache"),
             # generous budgets: this test is about the swap, not a loaded CI box's Redis latency
             "deadline_ms": 2000, "cache": {"call_timeout_s": 1.0, "pool_timeout_s": 1.0}})
    yield {"cfg": cfg, "client": client, "url": f"{serve_http}/ops", "reg": reg}
    serve.delete(APP)
    client.close()


def _recommend(c: httpx.Client, url: str, sid: str) -> httpx.Response:
    return c.post(f"{url}/v1/recommend", json={"session_id": sid, "k": 5}, headers={"X-API-Key": "key-ops"})


def test_slow_tick_swaps_every_replica_with_no_fallback(stack: dict[str, Any]) -> None:
    cfg, client, url = stack["cfg"], stack["client"], stack["url"]
    loop = RefreshLoop(cfg, out=io.StringIO())
    assert loop.tick("fast", last_slot(NOW, 300))["outcome"] == "ok"
    ns = client.get(keys.pointer_key("recs", "default")).decode()
    known = [k.decode().rsplit(":", 1)[1] for k in client.scan_iter(match=keys.namespace("recs", ns, "default") + ":*")
             if not k.endswith(b"__meta__")][:20]
    stop, sources, codes = threading.Event(), Counter(), Counter()

    def hammer() -> None:
        with httpx.Client(timeout=5) as c:
            i = 0
            while not stop.is_set():
                r = _recommend(c, url, known[i % len(known)])
                codes[r.status_code] += 1
                if r.status_code == 200:
                    body = r.json()
                    sources[(body["source"], body["fallback_reason"])] += 1
                i += 1

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        time.sleep(1)
        report = loop.tick("slow", last_slot(NOW, 86400))
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert report["outcome"] == "ok", report
    new = stack["reg"].champion("recommender")
    assert report["gates"]["recommender"]["promoted"] and report["gates"]["recommender"]["candidate"] == new
    assert report["precompute"]["recs"]["model_version"] == new  # the candidate's tables, before the swap
    swap = report["swap"]
    assert swap["ok"] and swap["replicas"] == 2 and swap["versions"]["recommender"] == new
    assert swap["promote_to_served_s"] < 60
    assert set(codes) == {200}, codes
    assert set(sources) == {("precomputed", None)}, sources  # no request fell back because of the swap
    reports = hotswap.reports(client, APP, hotswap.running_replicas(hotswap.details(), APP))
    assert {r["versions"]["recommender"] for r in reports.values()} == {new}


def test_health_reports_a_missing_pointer_until_the_next_tick(stack: dict[str, Any]) -> None:
    cfg, client, url = stack["cfg"], stack["client"], stack["url"]
    with httpx.Client(timeout=5, headers={"X-API-Key": "key-ops"}) as c:
        ok = c.get(f"{url}/v1/health").json()
        assert ok["pointers"]["recs"] == "ok" and ok["replica"], ok
        client.delete(keys.pointer_key("recs", "default"))
        missing = c.get(f"{url}/v1/health").json()
        assert missing["status"] == "degraded" and missing["pointers"]["recs"] == "missing"
        later = NOW + pd.Timedelta(minutes=5)
        Path(cfg.clock_file).write_text(later.isoformat())
        report = RefreshLoop(cfg, out=io.StringIO()).tick("fast", last_slot(later, 300))
        assert report["outcome"] == "ok" and "recs/default" in report["republished"], report
        assert c.get(f"{url}/v1/health").json()["pointers"]["recs"] == "ok"


def test_every_dashboard_metric_is_exported(stack: dict[str, Any], ray_cluster: Any) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"ray_tandem_\w+", t["expr"])}
    assert len(dashboard["panels"]) >= 10 and len(wanted) >= 12
    port = ray_cluster.address_info["metrics_export_port"]
    client = stack["client"]
    # events that only some ticks produce: a quarantined row and a fallback
    with httpx.Client(timeout=5) as c:
        _recommend(c, stack["url"], "never-seen-session")
    found: set[str] = set()
    deadline = time.time() + 120
    while time.time() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line.startswith("ray_tandem_")}
        if wanted <= found:
            break
        time.sleep(3)
    assert wanted <= found, f"not exported: {sorted(wanted - found)}"
    assert client.ping()
