"""The Serve app on the shared cluster with a real Redis: endpoints, fallbacks, tenants, hot swap.

Apps are deployed through the config path (``deploy_apps`` with an application
schema, as ``serve deploy`` does), so a ``user_config`` change reconfigures the
running replicas instead of restarting them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.session_rec.artifact import pop_artifact
from store import keys, publish
from store.registry import Registry

pytestmark = pytest.mark.integration

KEYS = {"key-acme-1": "acme", "key-bolt-1": "bolt", "key-default": "default"}


def register_pop(registry_uri: str, sessions: list[list[str]], tmp: Path, promote: bool = True) -> str:
    art = pop_artifact(tmp / f"pop-{len(list(tmp.iterdir()))}", sessions)
    reg = Registry(registry_uri)
    mv = reg.register("recommender", art, {"model_type": "pop"})
    if promote:
        reg.set_champion("recommender", mv.version, "test")
    return mv.version


_APPS: dict[str, dict[str, Any]] = {}


def deploy(name: str, prefix: str, args: dict[str, Any], user_config: dict[str, Any] | None = None,
           **options: Any) -> None:
    """Apply a declarative config holding every app this module deployed (like ``serve deploy``).

    ``options`` override the Tandem deployment's settings (e.g. ``max_queued_requests``)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _APPS[name] = {"name": name, "route_prefix": prefix, "import_path": "serve.app:build_app", "args": args,
                   "deployments": [{"name": "Tandem", "user_config": user_config or {"generation": 0},
                                    "max_ongoing_requests": 64, "health_check_period_s": 2,
                                    "graceful_shutdown_wait_loop_s": 0.5, "graceful_shutdown_timeout_s": 2,
                                    "ray_actor_options": {"num_cpus": 0}, **options}]}
    config = ServeDeploySchema.model_validate({"applications": list(_APPS.values())})
    _get_global_client().deploy_apps(config, _blocking=True)


def undeploy(name: str) -> None:
    from ray import serve

    _APPS.pop(name, None)
    serve.delete(name)


def publish_table(url: str, table: str, tenant: str, rows: dict[str, str], model_version: str = "vtest-1") -> str:
    import redis

    client = redis.Redis.from_url(url)
    version = keys.run_version(model_version, publish_run())
    publish.write_rows(client, table, version, [(tenant, e, v) for e, v in rows.items()], ttl_s=600)
    publish.commit(client, table, version, tenant, {"rows": len(rows)}, ttl_s=600)
    client.close()
    return version


_RUN = [0]


def publish_run() -> str:
    _RUN[0] += 1
    return f"t{_RUN[0]:05d}"


@pytest.fixture(scope="module")
def app(serve_http: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serve-app")
    shared, acme, bolt = (str(tmp / d) for d in ("reg", "reg-acme", "reg-bolt"))
    register_pop(shared, [["d1", "d2"], ["d1"]], tmp)
    register_pop(acme, [["a1", "a2", "a3"], ["a1", "a2"], ["a1"]], tmp)
    register_pop(bolt, [["b1", "b2", "b3"], ["b1", "b2"], ["b1"]], tmp)
    args = {"registry_uri": shared, "redis_url": redis_server, "api_keys": {**KEYS, "key-shop": "shop"},
            "tenants": {"acme": {"registry_uri": acme}, "bolt": {"registry_uri": bolt}},
            "model_cache_dir": str(tmp / "cache"), "deadline_ms": 2000,
            # generous Redis timeouts: these tests check behaviour, and CI boxes are loaded
            "cache": {"call_timeout_s": 0.25, "pool_timeout_s": 0.25, "write_timeout_s": 2.0}}
    deploy("tandem-test", "/t", args)
    try:
        yield {"url": f"{serve_http}/t", "args": args, "registry": shared, "tmp": tmp}
    finally:
        undeploy("tandem-test")


def post(client: httpx.Client, url: str, path: str, body: dict[str, Any], key: str | None = "key-default",
         ) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return client.post(f"{url}{path}", json=body, headers=headers, timeout=10)


def test_score_serves_precomputed_then_prior_for_unknown_sessions(app: dict[str, Any], redis_server: str) -> None:
    version = publish_table(redis_server, "score", "default", {"s-known": repr(0.4375)}, "vprop-7")
    with httpx.Client() as c:
        known = post(c, app["url"], "/v1/score", {"session_id": "s-known"})
        cold = post(c, app["url"], "/v1/score", {"session_id": "s-never-seen"})
    assert known.status_code == 200, known.text
    body = known.json()
    assert (body["score"], body["source"], body["model_version"]) == (0.4375, "precomputed", "vprop-7")
    assert keys.model_version_of(version) == "vprop-7"
    assert cold.status_code == 200 and cold.json()["source"] == "popular"
    assert cold.json()["fallback_reason"] == "no_precomputed"


def test_fast_path_answers_exactly_like_fastapi(app: dict[str, Any], redis_server: str) -> None:
    """The fast path (serve/hotpath.py) answers like FastAPI, with or without a charset parameter."""
    publish_table(redis_server, "score", "default", {"s-fast": repr(0.1 + 0.2)}, "vprop-fp")
    publish_table(redis_server, "recs", "default", {"s-fast": json.dumps([["d2", 0.5], ["d9", 0.25]])}, "vrec-fp")
    time.sleep(1.2)  # replicas hold a table's version pointer for up to pointer_ttl_s (1 s)
    with httpx.Client() as c:
        for path, body in (("/v1/score", {"session_id": "s-fast"}),
                           ("/v1/recommend", {"session_id": "s-fast", "k": 2, "exclude_seen": False})):
            answers = [c.post(f"{app['url']}{path}", content=json.dumps(body), timeout=10,
                              headers={"X-API-Key": "key-default", "Content-Type": media})
                       for media in ("application/json", "application/json; charset=utf-8")]
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            assert answers[0].json() == answers[1].json(), path
            assert answers[0].json()["source"] == "precomputed", answers[0].json()
    assert answers[0].json()["items"][0] == {"item_id": "d2", "score": 0.5}


def test_events_reach_the_next_recommendation(app: dict[str, Any]) -> None:
    with httpx.Client() as c:
        before = post(c, app["url"], "/v1/recommend", {"session_id": "live-1", "k": 2}, key="key-acme-1")
        ev = post(c, app["url"], "/v1/events", {"session_id": "live-1", "events": [
            {"item_id": "a1", "event_type": "view"}, {"item_id": "a2", "event_type": "cart", "price": 5}]},
            key="key-acme-1")
        after = post(c, app["url"], "/v1/recommend", {"session_id": "live-1", "k": 2}, key="key-acme-1")
    assert before.json()["source"] == "popular"
    assert [i["item_id"] for i in before.json()["items"]] == ["a1", "a2"]
    assert ev.status_code == 200 and ev.json()["stored"] and ev.json()["session_length"] == 2
    rec = after.json()
    assert rec["source"] == "model" and rec["model_version"], rec
    assert [i["item_id"] for i in rec["items"]] == ["a3"]  # seen items excluded, only a3 left


def test_client_mistakes_get_4xx_naming_the_field(app: dict[str, Any]) -> None:
    with httpx.Client() as c:
        bad_type = post(c, app["url"], "/v1/score", {"session_id": 42})
        bad_deadline = post(c, app["url"], "/v1/score", {"session_id": "s", "deadline_ms": -1})
        bad_event = post(c, app["url"], "/v1/events", {"session_id": "s", "events": [{"item_id": "i",
                                                                                      "event_type": "zap"}]})
        not_json = c.post(f"{app['url']}/v1/score", content=b"{nope", headers={"X-API-Key": "key-default",
                                                                                "Content-Type": "application/json"})
        no_key = post(c, app["url"], "/v1/score", {"session_id": "s"}, key=None)
        wrong_key = post(c, app["url"], "/v1/recommend", {"session_id": "s"}, key="key-nobody")
        docs = c.get(f"{app['url']}/openapi.json")
        health = c.get(f"{app['url']}/v1/health", headers={"X-API-Key": "key-default"})
        public_health = c.get(f"{app['url']}/v1/health")
    assert bad_type.status_code == 422 and bad_type.json()["detail"][0]["loc"][-1] == "session_id"
    assert bad_deadline.status_code == 422 and bad_deadline.json()["detail"][0]["loc"][-1] == "deadline_ms"
    assert bad_event.status_code == 422 and "event_type" in bad_event.json()["detail"][0]["loc"]
    assert not_json.status_code == 400
    assert no_key.status_code == 401 and wrong_key.status_code == 401
    assert "/v1/score" in docs.json()["paths"]
    assert health.status_code == 200 and health.json()["redis"] == "up"
    assert public_health.json() == {"status": "ok"}


def test_tenants_never_see_each_others_data(app: dict[str, Any], redis_server: str) -> None:
    publish_table(redis_server, "score", "acme", {"shared-sid": repr(0.9)}, "vacme-1")
    publish_table(redis_server, "score", "bolt", {"shared-sid": repr(0.1)}, "vbolt-1")
    with httpx.Client() as c:
        a = post(c, app["url"], "/v1/score", {"session_id": "shared-sid"}, key="key-acme-1").json()
        b = post(c, app["url"], "/v1/score", {"session_id": "shared-sid"}, key="key-bolt-1").json()
        d = post(c, app["url"], "/v1/score", {"session_id": "shared-sid"}).json()
        post(c, app["url"], "/v1/events", {"session_id": "iso-1", "events": [{"item_id": "a1"}]}, key="key-acme-1")
        b_rec = post(c, app["url"], "/v1/recommend", {"session_id": "iso-1", "k": 5}, key="key-bolt-1").json()
        a_rec = post(c, app["url"], "/v1/recommend", {"session_id": "iso-1", "k": 5}, key="key-acme-1").json()
        inject = post(c, app["url"], "/v1/score", {"session_id": "x:tandem:acme:score"}, key="key-bolt-1")
    assert (a["score"], a["tenant"], a["model_version"]) == (0.9, "acme", "vacme-1"), a
    assert (b["score"], b["tenant"], b["model_version"]) == (0.1, "bolt", "vbolt-1"), b
    assert d["source"] == "popular" and d["tenant"] == "default"
    assert {i["item_id"] for i in b_rec["items"]} <= {"b1", "b2", "b3"}      # bolt's model, bolt's session
    assert b_rec["source"] == "popular" and len(b_rec["items"]) == 3         # acme's event is invisible to bolt
    assert {i["item_id"] for i in a_rec["items"]} == {"a2", "a3"}           # acme saw its own event
    assert inject.status_code == 422                                         # ids cannot reach other key spaces


def _wait_experiment(c: httpx.Client, url: str, key: str, want: Any, timeout_s: float = 30.0) -> float:
    """Seconds until ``/v1/health`` of ``key``'s tenant shows an experiment for which ``want`` is true."""
    t0 = time.monotonic()
    while True:
        exp = c.get(f"{url}/v1/health", headers={"X-API-Key": key}, timeout=10).json().get("experiment")
        if want(exp or {}):
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout_s, f"the replica did not take the experiment: {exp}"
        time.sleep(0.1)


def test_experiment_assigns_serves_the_variant_logs_exposures_and_obeys_the_kill_switch(
        app: dict[str, Any], redis_server: str, tmp_path: Path) -> None:
    """A/B on a live replica: each response names the experiment and the unit's variant; control is
    popular, ``model`` the champion, ``chal`` a pinned challenger; each shown page is an exposure and
    each ``/v1/events`` purchase an outcome the drain job writes to Parquet; the kill switch sends everyone to control within the poll interval
    (2 s by default) and stops the exposures."""
    from jobs import drain_exposures
    from models.experiments.assignment import Assigner
    from models.experiments.config import ExperimentConfig
    from pipelines import exposures
    from store.experiments import ExperimentStore

    challenger = register_pop(app["registry"], [["c1", "c2"], ["c1"]], app["tmp"], promote=False)
    cfg = ExperimentConfig.model_validate({
        "tenant": "shop", "experiment_id": "e-live", "salt": "s1", "variants": [
            {"name": "control", "policy": "popular", "share": 0.34},
            {"name": "model", "policy": "model", "share": 0.33},
            {"name": "chal", "policy": "version", "model_version": challenger, "share": 0.33}]})
    store = ExperimentStore(app["registry"])
    store.put(cfg, reason="test", by="test")
    assigner = Assigner(cfg)
    unit = {v: next(f"ab-{i}" for i in range(1000) if assigner.assign(f"ab-{i}") == v)
            for v in ("control", "model", "chal")}
    url, key = app["url"], "key-shop"
    try:
        with httpx.Client() as c:
            _wait_experiment(c, url, key, lambda e: e.get("state") == "running")
            champion = c.get(f"{url}/v1/health", headers={"X-API-Key": key}).json()["models"]["recommender"]
            recs = {v: post(c, url, "/v1/recommend", {"session_id": s, "items": ["zz"], "k": 2}, key=key).json()
                    for v, s in unit.items()}
            score = post(c, url, "/v1/score", {"session_id": unit["chal"]}, key=key).json()
            other = post(c, url, "/v1/recommend", {"session_id": unit["chal"], "k": 2}).json()  # tenant default
            bought = post(c, url, "/v1/events", {"session_id": unit["model"], "events": [
                {"item_id": "d1", "event_type": "purchase", "price": 12.5}]}, key=key)
            assert bought.status_code == 200, bought.text
            assert {v: (r["experiment"], r["variant"]) for v, r in recs.items()} == {v: ("e-live", v) for v in unit}
            assert recs["control"]["source"] == "popular"
            assert (recs["model"]["source"], recs["model"]["model_version"]) == ("model", champion)
            assert (recs["chal"]["source"], recs["chal"]["model_version"]) == ("model", challenger)
            assert recs["chal"]["items"][0]["item_id"] == "c1"
            assert (score["experiment"], score["variant"]) == ("e-live", "chal")
            assert (other["experiment"], other["variant"]) == (None, None)  # another tenant: no experiment

            logs = str(tmp_path / "logs")
            argv = ["--redis", redis_server, "--registry", app["registry"], "--logs", logs, "--tenant", "shop"]
            deadline = time.monotonic() + 10  # replicas flush every 50 ms
            while True:
                assert drain_exposures.main(argv) == 0
                shown = exposures.read_logs(logs, "shop").exposures.to_pylist()
                if len(shown) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert sorted((r["variant"], r["session_id"], r["model_version"]) for r in shown) == sorted(
                (v, unit[v], recs[v]["model_version"]) for v in unit)
            assert {r["experiment"] for r in shown} == {"e-live"}
            outcomes = exposures.read_logs(logs, "shop").outcomes.to_pylist()  # from the live-event stream
            assert [(o["session_id"], o["event_type"], o["revenue"]) for o in outcomes] == [
                (unit["model"], "purchase", 12.5)]

            store.kill("shop", "test: kill switch")  # what `python -m jobs.experiment kill` does
            took = _wait_experiment(c, url, key, lambda e: e.get("state") == "rolled_back")
            after = [post(c, url, "/v1/recommend", {"session_id": f"k-{i}", "k": 2}, key=key).json()
                     for i in range(20)]
            assert took < 10.0, f"the kill switch took {took:.1f} s"
            assert {(a["variant"], a["source"]) for a in after} == {("control", "popular")}
            time.sleep(0.3)
            assert drain_exposures.main(argv) == 0
            assert exposures.read_logs(logs, "shop").exposures.num_rows == 3  # none while rolled back
    finally:
        store.end("shop", "test done")


def _hammer(url: str, body: dict[str, Any], stop: threading.Event, codes: Counter, sources: Counter,
            key: str = "key-default", path: str = "/v1/score") -> None:
    with httpx.Client() as c:
        while not stop.is_set():
            try:
                r = post(c, url, path, body, key=key)
                codes[r.status_code] += 1
                if r.status_code == 200:
                    sources[r.json()["source"]] += 1
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1


def test_hot_swap_reaches_replicas_with_zero_errors(app: dict[str, Any]) -> None:
    body = {"session_id": "swap-1", "items": ["zz"], "k": 1}
    with httpx.Client() as c:
        first = post(c, app["url"], "/v1/recommend", body).json()
    assert first["source"] == "model" and first["items"][0]["item_id"] == "d1"
    new_version = register_pop(app["registry"], [["n1"], ["n1", "n2"]], app["tmp"], promote=True)
    stop, codes, sources = threading.Event(), Counter(), Counter()
    workers = [threading.Thread(target=_hammer, args=(app["url"], body, stop, codes, sources, "key-default",
                                                      "/v1/recommend")) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        deploy("tandem-test", "/t", app["args"], {"generation": 1})   # config path: reconfigure in place
        deadline = time.time() + 60
        swapped = None
        with httpx.Client() as c:
            while time.time() < deadline:
                swapped = post(c, app["url"], "/v1/recommend", body).json()
                if swapped["model_version"] == new_version:
                    break
                time.sleep(0.3)
        time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert swapped is not None and swapped["model_version"] == new_version
    assert swapped["items"][0]["item_id"] == "n1"
    assert set(codes) == {200}, codes
    assert codes[200] > 20


def test_a_swap_to_a_version_that_does_not_load_keeps_the_old_models(app: dict[str, Any]) -> None:
    """A reconfigure naming a broken version: the replica keeps serving what it had, health says why."""
    body = {"session_id": "swap-bad", "items": ["zz"], "k": 1}
    key = {"X-API-Key": "key-default"}
    with httpx.Client() as c:
        before = post(c, app["url"], "/v1/recommend", body).json()
        assert before["source"] == "model"
        deploy("tandem-test", "/t", app["args"], {"generation": 7, "recommender_version": "v-no-such-version"})
        deadline, health = time.time() + 60, {}
        while time.time() < deadline:
            health = c.get(f"{app['url']}/v1/health", headers=key).json()
            if health.get("swap_error"):
                break
            time.sleep(0.3)
        after = [post(c, app["url"], "/v1/recommend", body).json() for _ in range(10)]
        assert "v-no-such-version" in health["swap_error"], health
        assert health["models"]["recommender"] == before["model_version"]
        assert {a["model_version"] for a in after} == {before["model_version"]}   # not a cold start
        assert {a["source"] for a in after} == {"model"}
        deploy("tandem-test", "/t", app["args"], {"generation": 8})              # a good config clears it
        deadline = time.time() + 60
        while time.time() < deadline and c.get(f"{app['url']}/v1/health", headers=key).json().get("swap_error"):
            time.sleep(0.3)
        assert "swap_error" not in c.get(f"{app['url']}/v1/health", headers=key).json()


def test_redis_hung_then_killed_under_load_never_5xx(app: dict[str, Any], serve_http: str,
                                                     tmp_path: Path) -> None:
    import os
    import signal

    from cluster.local import free_port, read_pid, start_redis, stop_group

    port, pid_file = free_port(), tmp_path / "redis.pid"
    start_redis(port, tmp_path / "redis", pid_file)
    url = f"redis://127.0.0.1:{port}/0"
    publish_table(url, "score", "default", {"k1": repr(0.25)}, "vkill-1")
    deploy("tandem-kill", "/k", {**app["args"], "redis_url": url})
    stop, codes, sources = threading.Event(), Counter(), Counter()
    slow: list[float] = []

    def timed() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = post(c, f"{serve_http}/k", "/v1/score", {"session_id": "k1"})
                slow.append(time.perf_counter() - t0)
                codes[r.status_code] += 1
                sources[r.json().get("source", "?") if r.status_code == 200 else "error"] += 1

    workers = [threading.Thread(target=timed) for _ in range(2)]
    workers.append(threading.Thread(target=_hammer, args=(f"{serve_http}/k", {"session_id": "k1", "k": 3},
                                                          stop, codes, sources, "key-default", "/v1/recommend")))
    try:
        for w in workers:
            w.start()
        time.sleep(1.0)
        pid = read_pid(pid_file)
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)          # hung: accepts nothing, answers nothing
        time.sleep(2.0)
        os.killpg(pid, signal.SIGCONT)
        stop_group(pid_file, "test redis (kill)")  # dead
        time.sleep(2.0)
        start_redis(port, tmp_path / "redis", pid_file)
        publish_table(url, "score", "default", {"k1": repr(0.75)}, "vkill-2")
        recovered = False
        deadline = time.time() + 20
        with httpx.Client() as c:
            while time.time() < deadline and not recovered:
                body = post(c, f"{serve_http}/k", "/v1/score", {"session_id": "k1"}).json()
                recovered = body["source"] == "precomputed" and body["score"] == 0.75
                time.sleep(0.2)
            health = c.get(f"{serve_http}/k/v1/health", headers={"X-API-Key": "key-default"}).json()
    finally:
        stop.set()
        for w in workers:
            w.join()
        undeploy("tandem-kill")
        stop_group(pid_file, "test redis (kill)")
    assert set(codes) == {200}, codes
    assert sources["precomputed"] > 0 and sources["popular"] > 0, sources
    assert recovered, "endpoints did not recover by themselves after Redis returned"
    assert health["redis"] == "up"
    assert max(slow) < 3.0, f"a request took {max(slow):.2f}s while Redis was down"


def test_overload_gets_429_with_retry_after_never_5xx(app: dict[str, Any], serve_http: str) -> None:
    """Past max_ongoing + max_queued, Serve sheds load with 429 + Retry-After (serve/config.yaml's policy)."""
    import asyncio

    deploy("tandem-busy", "/busy", app["args"], max_ongoing_requests=1, max_queued_requests=1,
           backpressure_config={"status_code": 429, "retry_after_s": 1})

    async def burst(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n)) as c:
            body = {"session_id": "busy-1", "items": ["d1", "d2"], "k": 5}
            return await asyncio.gather(*(c.post(f"{serve_http}/busy/v1/recommend", json=body, timeout=20,
                                                 headers={"X-API-Key": "key-default"}) for _ in range(n)))

    codes: Counter = Counter()
    retry_after: set[str | None] = set()
    try:
        for _ in range(5):                     # a burst of 64 against 1 running + 1 queued sheds load
            for r in asyncio.run(burst(64)):
                codes[r.status_code] += 1
                if r.status_code == 429:
                    retry_after.add(r.headers.get("retry-after"))
            if codes[429]:
                break
    finally:
        undeploy("tandem-busy")
    assert codes[429] > 0, f"no request was shed: {codes}"
    assert codes[200] > 0, codes
    assert set(codes) <= {200, 429}, f"overload must never answer 5xx: {codes}"
    assert retry_after == {"1"}, retry_after


def test_app_logs_land_in_the_replica_json_log(app: dict[str, Any], serve_http: str) -> None:
    """serve.* / models.* records go through Serve's logging_config (JSON, replica log file)."""
    import json

    import ray

    deploy("tandem-logs", "/logs", app["args"], logging_config={"encoding": "JSON", "log_level": "INFO"})
    try:
        with httpx.Client() as c:
            r = post(c, f"{serve_http}/logs", "/v1/recommend", {"session_id": "log-1", "items": ["d1"], "k": 2})
        assert r.status_code == 200
        logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
        deadline, found = time.time() + 15, []
        while time.time() < deadline and not found:
            for f in logs_dir.glob("replica_tandem-logs_Tandem_*.log"):
                for line in f.read_text(errors="replace").splitlines():
                    if "tenant default models" in line:
                        found.append(line)
            time.sleep(0.5)
    finally:
        undeploy("tandem-logs")
    assert found, f"no app log record in {sorted(p.name for p in logs_dir.glob('replica_tandem-logs*'))}"
    record = json.loads(found[0])
    assert record["levelname"] == "INFO" and "tenant default models" in record["message"], record
