"""The guardrail on the LIVE app (run by ``python -m bench.experiments``, or alone): a harmful variant rolled back by the refresh loop's check, ticks
after its harm became detectable, and the 5xx seen while the replicas switch.

``python -m bench.experiments_live [--runs 3] [--tick 3] [--rps 40] [--harm -0.6] [--conversion 0.3]``

Starts its own Ray (2 CPUs, private temp dir), Serve on a free port and a private redis-server;
registers a popularity recommender and deploys the app through the config path (as ``serve
deploy``). Each run stores a fresh experiment (control ``popular`` vs a variant whose visitors
convert ``harm`` less: ``pipelines.simulate`` knows the truth), drives it at ``rps`` new sessions
a second, and calls the refresh loop's per-tick check (``pipelines.experiment_checks``: drain,
report, guardrails, rollback through the store) every ``tick`` seconds, as the loop would every
5 minutes. Per run: the tick of the rollback, the tick at which the guardrail's own always-valid
interval reached 80 % power on the harm (``guardrails.detectable_units`` at the control
conversion the visitors had), the seconds until every replica served the rollback
(``/v1/health``), the 5xx answered during the switch (from one tick before the rollback to
``after_s`` after every replica served it) and every HTTP status of the run (a ``/v1/events``
503 is the app's retryable "not stored now", retried by the visitors: counted, not lost).

Peer, on the same settings: the same experiment simulated offline (``simulate_experiment``,
``compare_history``, ``breach_ticks``: bench.experiments' method) with the same units per tick;
the ratio is the live on-time rate over the offline one. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.experiments.config import ExperimentConfig
from models.experiments.guardrails import breach_ticks, detectable_units
from models.experiments.report import compare_history
from models.experiments.simulator import Arm, VisitorModel, simulate_experiment
from models.experiments.stats import Moments
from pipelines import experiments
from pipelines.experiment_checks import ExperimentCheck
from pipelines.simulate import SimulateConfig, Simulator
from store.experiments import ExperimentStore

GUARD = {"metric": "conversion", "max_relative_drop": 0.02, "confidence": 0.95}


def harm_config(tenant: str, experiment: str, tau: float = 0.5, min_units: int = 100) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "tenant": tenant, "experiment_id": experiment, "salt": experiment, "guardrails": [GUARD],
        "sequential": {"tau": tau, "min_units": min_units},
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "bad", "policy": "model", "share": 0.5}]})


def health(url: str, api_key: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{url}/v1/health", headers={"X-API-Key": api_key}, timeout=10).json()  # type: ignore[no-any-return]


def wait_state(url: str, api_key: str, experiment: str, state: str, timeout_s: float = 30.0,
               in_a_row: int = 10) -> dict[str, Any]:
    """Until ``in_a_row`` consecutive ``/v1/health`` answers name the experiment in ``state`` (each
    replica polls the store on its own; with 2 replicas behind the proxy, 10 answers in a row miss
    one with probability 2**-9)."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        h = health(url, api_key)
        exp = h.get("experiment") or {}
        seen = seen + 1 if exp.get("experiment") == experiment and exp.get("state") == state else 0
        if seen >= in_a_row:
            return h
        if time.monotonic() > deadline:
            raise TimeoutError(f"experiment {experiment} not {state} after {timeout_s:.0f} s: {h}")
        if not seen:
            time.sleep(0.1)


def guardrail_run(url: str, api_key: str, tenant: str, registry: str, logs: str, redis_url: str, *,
                  experiment: str = "harm", harm: float = -0.6, conversion: float = 0.3, rps: float = 40.0,
                  tick_s: float = 3.0, max_ticks: int = 40, after_s: float = 3.0, seed: int = 2) -> dict[str, Any]:
    """One live run: store the experiment, drive it, check every tick until the rollback (see the module)."""
    import redis

    store = ExperimentStore(registry)
    cfg = harm_config(tenant, experiment)
    store.put(cfg, reason="bench", by="bench")
    wait_state(url, api_key, experiment, "running")
    sim = Simulator(SimulateConfig(url=url, api_key=api_key, sessions=1_000_000, concurrency=12, rps=rps,
                                   conversion=conversion, true_lift={"bad": harm}, seed=seed,
                                   session_prefix=experiment))
    box: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: box.update(result=asyncio.run(sim.run())), daemon=True)
    runner.start()
    client = redis.Redis.from_url(redis_url)
    check = ExperimentCheck(registry, logs, client=client)
    ticks: list[dict[str, Any]] = []
    rolled_at: int | None = None
    switch_s = None
    window_start = window_end = 0.0
    try:
        for tick in range(max_ticks):
            time.sleep(tick_s)
            out = check()
            row = next((r for r in out["experiments"] if r["experiment"] == experiment), None)
            ticks.append({"tick": tick, "n_units": (row or {}).get("n_units", {}), "action": (row or {}).get("action")})
            if row is not None and row.get("rolled_back"):
                rolled_at = tick
                t0, window_start = time.monotonic(), time.time() - tick_s
                final = wait_state(url, api_key, experiment, "rolled_back")
                switch_s = time.monotonic() - t0
                window_end = time.time() + after_s
                break
        time.sleep(after_s)  # traffic keeps flowing through and after the switch
    finally:
        sim.stop()
        runner.join(timeout=120)
        check()  # drain what came after the last tick (the report below reads it)
        client.close()
    result = box["result"]
    in_switch = [e for e in result.timeline if rolled_at is not None and window_start <= e[0] <= window_end]
    reads_5xx = [e for e in in_switch if e[1] != "events"]  # score/recommend: what the switch could break
    analysis = experiments.analyse(logs, cfg)
    p = analysis.report.values["conversion"]["control"][0] if analysis.report is not None else conversion
    need = detectable_units(p, harm, cfg.guardrails[0], cfg.sequential.tau)
    detect = next((t["tick"] for t in ticks if sum(t["n_units"].values()) >= need), None)
    last = ticks[-1] if ticks else {"tick": 0, "n_units": {}}
    return {"experiment": experiment, "rolled_back_tick": rolled_at, "detectable_tick": detect,
            "detectable_units": round(need), "p_control": round(p, 4), "switch_s": switch_s,
            "units_per_tick": round(sum(last["n_units"].values()) / (last["tick"] + 1), 1),
            "statuses": result.statuses, "server_errors_5xx": result.server_errors,
            "switch_5xx": len(reads_5xx), "switch_events_503": len(in_switch) - len(reads_5xx),
            "transport_errors": result.transport_errors, "reason": (final if rolled_at is not None else {})
            .get("experiment", {}).get("reason"), "ticks": ticks}


def visitors_converting(p: float) -> VisitorModel:
    """A visitor model whose sessions convert at ``p`` on average (the affinity cap depends on the rate)."""
    a = np.random.default_rng(0).gamma(0.5, 2.0, 200_000)
    lo, hi = p, min(0.49, 4 * p)
    for _ in range(40):
        c = (lo + hi) / 2
        m = VisitorModel(conversion=c)
        if c * float(np.minimum(a, m.max_affinity).mean()) < p:
            lo = c
        else:
            hi = c
    return VisitorModel(conversion=(lo + hi) / 2)


def offline_peer(p: float, harm: float, units_per_tick: float, n_ticks: int, runs: int,
                 rng: np.random.Generator) -> dict[str, float]:
    """The same experiment simulated offline at the same units per tick: rollback tick vs detectable tick."""
    cfg = harm_config("t", "peer")
    g = cfg.guardrails[0]
    need = detectable_units(p, harm, g, cfg.sequential.tau)
    detect = int(np.ceil(need / units_per_tick)) - 1
    model = visitors_converting(p)
    lags = []
    for _ in range(runs):
        sim = simulate_experiment(model, (Arm("control", 0.5), Arm("bad", 0.5, 1 + harm)),
                                  int(units_per_tick * n_ticks), n_ticks, rng, conversion_only=True)
        m = [Moments.cumulative(sim.columns["converted"][sim.arm == a], None, None, sim.tick[sim.arm == a], n_ticks)
             for a in (0, 1)]
        s = compare_history(m[0], m[1], alpha=cfg.alpha, tau=cfg.sequential.tau, min_units=cfg.sequential.min_units)
        breached, _ = breach_ticks(s.lift.log_lift, s.lift.log_var, s.valid, g, cfg.sequential.tau)
        lags.append(int(np.argmax(breached)) - detect if breached.any() else n_ticks)
    lag = np.array(lags)
    return {"detectable_tick": detect, "on_time_rate": float(np.mean(lag <= 3)), "median_lag": float(np.median(lag))}


def run_live(runs: int = 2, tick_s: float = 3.0, rps: float = 40.0, harm: float = -0.6, conversion: float = 0.3,
             peer_runs: int = 200, replicas: int = 2) -> dict[str, Any]:
    """``runs`` live guardrail runs on a private stack (Ray, Serve, redis-server), and the offline peer."""
    t_start, load0 = time.time(), os.getloadavg()[0]
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from cluster.local import free_port, start_redis, stop_group
    from models.session_rec.artifact import pop_artifact
    from store.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="tdm-bench-exp-"))
    redis_port = free_port()
    start_redis(redis_port, tmp, tmp / "redis.pid")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    done: list[dict[str, Any]] = []
    try:
        reg = Registry(str(tmp / "reg"))
        mv = reg.register("recommender", pop_artifact(tmp / "pop", [["a1", "a2"], ["a1", "a3"], ["a2"]]), {})
        reg.set_champion("recommender", mv.version, "bench")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path.cwd()), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"), log_to_driver=False,
                 configure_logging=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args_app = {"registry_uri": reg.uri, "redis_url": redis_url, "api_keys": {"bench-key": "shop"},
                    "model_cache_dir": str(tmp / "cache"), "deadline_ms": 2000}
        config = ServeDeploySchema.model_validate({"applications": [{
            "name": "tandem", "route_prefix": "/", "import_path": "serve.app:build_app", "args": args_app,
            "deployments": [{"name": "Tandem", "user_config": {"generation": 0}, "num_replicas": replicas,
                             "ray_actor_options": {"num_cpus": 0}}]}]})
        _get_global_client().deploy_apps(config, _blocking=True)
        url = f"http://127.0.0.1:{port}"
        for i in range(runs):
            run = guardrail_run(url, "bench-key", "shop", reg.uri, str(tmp / "logs"), redis_url,
                                experiment=f"harm-{i}", harm=harm, conversion=conversion, rps=rps,
                                tick_s=tick_s, seed=100 + i)
            done.append(run)
            switch = f"{run['switch_s']:.2f} s" if run["switch_s"] is not None else "-"
            print(f"live run {i}: rolled back at tick {run['rolled_back_tick']}, detectable at tick "
                  f"{run['detectable_tick']} ({run['detectable_units']} units at conversion {run['p_control']}); "
                  f"every replica switched in {switch}; /v1/recommend 5xx in the switch {run['switch_5xx']} "
                  f"(/v1/events 503 in the switch {run['switch_events_503']}, in the run {run['server_errors_5xx']}: "
                  f"retryable, retried); transport errors {run['transport_errors']}; statuses {run['statuses']}")
    finally:
        try:
            serve.shutdown()
        except Exception:  # noqa: BLE001 - best effort
            pass
        ray.shutdown()
        stop_group(tmp / "redis.pid", "bench redis-server")
        if any(r["statuses"].get(k, 0) for r in done for k in r["statuses"] if not k.startswith("events")
               and not k.endswith((" 200", " 429"))):
            print(f"a /v1/recommend answer was neither 200 nor 429: replica logs kept in {tmp}/ray")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    # lag in ticks after the detectable tick; None: rolled back before the run reached the detectable size
    lags = [r["rolled_back_tick"] - r["detectable_tick"] if r["detectable_tick"] is not None else None
            for r in done if r["rolled_back_tick"] is not None]
    rolled = len(lags)
    on_time = float(np.mean([lag is None or lag <= 3 for lag in lags] + [False] * (len(done) - rolled))) if done else 0.0
    per_tick = float(np.median([r["units_per_tick"] for r in done])) if done else 1.0
    peer = offline_peer(float(np.mean([r["p_control"] for r in done])), harm, max(per_tick, 1.0),
                        40, peer_runs, np.random.default_rng(7))
    ratio = on_time / peer["on_time_rate"] if peer["on_time_rate"] else float("nan")
    errors = sum(r["switch_5xx"] for r in done)
    print(f"live guardrail ({replicas} replicas, {rps:.0f} new sessions/s, true {harm:+.0%} conversion, check every "
          f"{tick_s:.0f} s): {rolled}/{len(done)} rolled back; ticks after the detectable tick {lags} (None: before "
          f"it); on time "
          f"(<= 3) {on_time:.0%}; /v1/recommend 5xx during the switches: {errors}; /v1/events 503 (retryable, "
          f"retried) during them {sum(r['switch_events_503'] for r in done)}")
    print(f"  peer (offline, same units per tick, {peer_runs} runs): on time {peer['on_time_rate']:.1%}, median "
          f"lag {peer['median_lag']:.0f} ticks; live / offline on-time ratio {ratio:.2f}")
    load1 = os.getloadavg()[0]
    return {"live_runs": len(done), "live_rolled_back": rolled, "live_lags_ticks": lags,
            "live_on_time_rate": on_time, "live_switch_5xx": errors,
            "live_switch_events_503": sum(r["switch_events_503"] for r in done),
            "live_server_errors_5xx": sum(r["server_errors_5xx"] for r in done),
            "live_events_503": sum(r["statuses"].get("events 503", 0) for r in done),
            "live_transport_errors": sum(r["transport_errors"] for r in done),
            "live_switch_s": [round(r["switch_s"], 2) for r in done if r["switch_s"] is not None],
            "live_peer_on_time_rate": round(peer["on_time_rate"], 4), "live_ratio_over_peer": round(ratio, 3),
            "live_runtime_s": round(time.time() - t_start, 1), "live_load_avg": [round(load0, 1), round(load1, 1)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tick", type=float, default=3.0, help="seconds between checks (the loop's 5 minutes)")
    ap.add_argument("--rps", type=float, default=40.0, help="new sessions per second")
    ap.add_argument("--harm", type=float, default=-0.6)
    ap.add_argument("--conversion", type=float, default=0.3)
    ap.add_argument("--peer-runs", type=int, default=500)
    args = ap.parse_args()
    out = run_live(args.runs, args.tick, args.rps, args.harm, args.conversion, args.peer_runs)
    print(f"runtime {out['live_runtime_s']:.0f} s, load average {out['live_load_avg'][0]} -> {out['live_load_avg'][1]}")
    print(json.dumps({"bench": "experiments_live", **out}))


if __name__ == "__main__":
    main()
