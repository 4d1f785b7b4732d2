"""Load benchmark: tandem on Ray Serve vs the bare uvicorn app doing the same work, with wrk.

    python -m bench.serve [--duration 20] [--connections 2,4,8] [--ingress haproxy|python]
    python -m bench.serve --target live [--url URL] [--api-key KEY] [--sessions-from DIR]

``--target live`` drives the app already running (what ``make demo`` leaves: URL and key from
``.run/env`` / ``TANDEM_SERVE_URL`` and ``TANDEM_DEMO_API_KEY``), with a wrk Lua body over up to
50,000 distinct session ids read from the demo's session features, and checks the bid goals:
``/v1/score`` p99 <= 10 ms at >= 1,000 rps and ``/v1/recommend`` (k = 20) p99 <= 10 ms at
>= 500 rps, with zero errors, at some load point (60 s a point by default).

The default target, ``compare``, runs the default deployment (HAProxy ingress, one replica per
core: ``serve.sizing``) against a bare uvicorn app with as many workers.

Both apps serve the same published score/recs tables from the same redis-server
and the same recommender. Cached ``/v1/score`` (random published sessions) and
``/v1/recommend`` are driven on loopback for ``--duration`` seconds per point.
The last line is one JSON object; ``ratio`` = tandem rps / bare rps for cached
``/v1/score`` at the largest connection count; ``ratio_at_equal_p99`` divides each
tandem point by the bare app's best throughput at a p99 no higher than tandem's there;
``ratio_within_10ms_p99`` compares each app's best throughput with p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-1"

LUA = """
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
request = function()
  local sid = "s" .. math.random(0, %(n)d - 1)
  return wrk.format(nil, "%(path)s", nil, '{"session_id":"' .. sid .. '"%(extra)s}')
end
"""
# the live target: session ids from the data, one Lua string each
LUA_IDS = """
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
local ids = {%(ids)s}
request = function()
  local sid = ids[math.random(1, #ids)]
  return wrk.format(nil, "%(path)s", nil, '{"session_id":"' .. sid .. '"%(extra)s}')
end
"""


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\n\s+50%\s+(\S+)", out)
    p99 = re.search(r"\n\s+99%\s+(\S+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50_ms": _ms(p50.group(1)) if p50 else None,
            "p99_ms": _ms(p99.group(1)) if p99 else None, "requests": int(total.group(1)) if total else 0,
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def run_wrk(base: str, path: str, extra: str, conns: int, duration: int, n: int, tmp: Path,
            ids: list[str] | None = None, key: str = API_KEY) -> dict[str, Any]:
    script = tmp / f"wrk-{path.strip('/').replace('/', '_')}.lua"
    if ids is None:
        script.write_text(LUA % {"seed": 7, "key": key, "n": n, "path": path, "extra": extra})
    else:
        script.write_text(LUA_IDS % {"seed": 7, "key": key, "path": path, "extra": extra,
                                     "ids": ",".join(json.dumps(i) for i in ids)})
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "2s", "-s", str(script), base]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return parse_wrk(out)


def prepare(tmp: Path, redis_url: str, n: int) -> dict[str, Any]:
    """A recommender champion and published score + recs tables for ``n`` sessions."""
    import redis

    from models.session_rec.artifact import pop_artifact
    from store import keys
    from store.registry import Registry

    rng = random.Random(7)
    sessions = [[f"i{rng.randint(0, 999)}" for _ in range(rng.randint(1, 6))] for _ in range(2000)]
    reg_uri = str(tmp / "registry")
    reg = Registry(reg_uri)
    mv = reg.register("recommender", pop_artifact(tmp / "pop", sessions), {"model_type": "pop"})
    reg.set_champion("recommender", mv.version, "bench")
    client = redis.Redis.from_url(redis_url)
    for table, make in (("score", lambda i: repr(rng.random())),
                        ("recs", lambda i: json.dumps([[f"i{j}", 1.0 / (j + 1)] for j in range(10)]))):
        version = keys.run_version("vbench-1", "b00001")
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.set(keys.entity_key(table, version, f"s{i}"), make(i), ex=3600)
        pipe.execute()
        client.set(keys.pointer_key(table), version)
    client.close()
    return {"registry_uri": reg_uri, "redis_url": redis_url, "api_keys": {API_KEY: "default"},
            "model_cache_dir": str(tmp / "cache")}


def wait_http(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = httpx.post(f"{url}/v1/score", json={"session_id": "s1"}, headers={"X-API-Key": API_KEY}, timeout=5)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


ENDPOINTS = {"score": ("/v1/score", ""), "recommend": ("/v1/recommend", ',"k":10')}
LIVE_ENDPOINTS = {"score": ("/v1/score", ""), "recommend": ("/v1/recommend", ',"k":20')}
# the bid goals of the live target: p99 <= 10 ms at >= this many requests/s, zero errors
LIVE_GOAL_RPS = {"score": 1000.0, "recommend": 500.0}
LIVE_GOAL_P99_MS = 10.0


def drive(label: str, base: str, conns: list[int], duration: int, n: int, tmp: Path,
          endpoints: list[str], ids: list[str] | None = None, key: str = API_KEY,
          table: dict[str, tuple[str, str]] = ENDPOINTS, warmup_s: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in endpoints:
        path, extra = table[name]
        if warmup_s:
            run_wrk(base, path, extra, 4, warmup_s, n, tmp, ids, key)
        for c in conns:
            res = run_wrk(base, path, extra, c, duration, n, tmp, ids, key)
            out[f"{name}@{c}"] = res
            p50, p99 = (f"{v:.2f}" if v is not None else "?" for v in (res["p50_ms"], res["p99_ms"]))
            print(f"{label:7s} {name:9s} c={c:<3d} {res['rps']:9.0f} rps  p50 {p50} ms  p99 {p99} ms  "
                  f"errors {res['errors']}", flush=True)
    return out


def session_ids(sessions_dir: Path, n: int, seed: int = 7) -> list[str]:
    """Up to ``n`` distinct session ids from a session-features dataset (a random sample of them)."""
    import pyarrow.dataset as ds

    if not sessions_dir.exists():
        raise SystemExit(f"--sessions-from {sessions_dir}: not found (run `make demo` first, or point it at "
                         "a session-features directory)")
    ids = sorted({str(v) for v in ds.dataset(str(sessions_dir)).to_table(columns=["session_id"])
                  .column("session_id").to_pylist()})
    random.Random(seed).shuffle(ids)
    return [i for i in ids if re.fullmatch(r"[A-Za-z0-9_.\-]+", i)][:n]


def live(ns: argparse.Namespace, conns: list[int], endpoints: list[str]) -> dict[str, Any]:
    """wrk against the app that is already running at ``ns.url``; returns the summary."""
    ids = session_ids(Path(ns.sessions_from), ns.sessions)
    tmp = Path(tempfile.mkdtemp(prefix="tdm-bench-", dir="/tmp"))
    try:
        results = drive("live", ns.url, conns, ns.duration, len(ids), tmp, endpoints, ids=ids, key=ns.api_key,
                        table=LIVE_ENDPOINTS, warmup_s=ns.warmup)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    goals = {}
    for name in endpoints:
        met = [c for c in conns if (r := results[f"{name}@{c}"])["p99_ms"] is not None
               and r["p99_ms"] <= LIVE_GOAL_P99_MS and r["rps"] >= LIVE_GOAL_RPS[name] and r["errors"] == 0]
        goals[name] = {"rps_goal": LIVE_GOAL_RPS[name], "p99_goal_ms": LIVE_GOAL_P99_MS, "met_at_connections": met,
                       "met": bool(met)}
        print(f"goal {name}: p99 <= {LIVE_GOAL_P99_MS:g} ms at >= {LIVE_GOAL_RPS[name]:,.0f} rps, 0 errors: "
              f"{'met at c=' + ','.join(map(str, met)) if met else 'NOT met'}")
    return {"bench": "serve", "target": "live", "url": ns.url, "sessions": len(ids), "duration_s": ns.duration,
            "connections": conns, "results": results, "goals": goals, "loadavg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    from serve.sizing import sizing, usable_cores

    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["compare", "live"], default="compare",
                        help="compare: own Serve app vs the bare app; live: the running app (make demo)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk point (20; live: 60)")
    parser.add_argument("--connections", default="2,4,8")
    parser.add_argument("--sessions", type=int, default=None, help="distinct session ids (10,000; live: 50,000)")
    parser.add_argument("--ingress", choices=["python", "haproxy"], default="haproxy")
    parser.add_argument("--endpoints", default="score,recommend", help="comma list of: score, recommend")
    parser.add_argument("--replicas", type=int, default=sizing(usable_cores()).num_replicas,
                        help="Serve replicas for tandem, and as many uvicorn workers for the bare peer "
                             "(default: one per core, as jobs.deploy sizes the demo)")
    parser.add_argument("--url", default=os.environ.get("TANDEM_SERVE_URL", "http://127.0.0.1:8000"),
                        help="live: the app's base URL (default $TANDEM_SERVE_URL)")
    parser.add_argument("--api-key", default=os.environ.get("TANDEM_DEMO_API_KEY", "demo-key"),
                        help="live: an API key of the app (default $TANDEM_DEMO_API_KEY or demo-key)")
    parser.add_argument("--sessions-from", default=str(ROOT / "data" / "demo" / "features" / "sessions"),
                        help="live: session features to take session ids from")
    parser.add_argument("--warmup", type=int, default=5, help="live: seconds of warm-up per endpoint (0: none)")
    ns = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; `make up` installs it)")
    conns = [int(c) for c in ns.connections.split(",")]
    endpoints = [e for e in ns.endpoints.split(",") if e]
    if set(endpoints) - set(ENDPOINTS) or not endpoints:
        raise SystemExit(f"--endpoints {ns.endpoints!r}: expected a comma list of {sorted(ENDPOINTS)}")
    if ns.target == "live":
        ns.duration = ns.duration or 60
        ns.sessions = ns.sessions or 50_000
        print(json.dumps(live(ns, conns, endpoints)))
        return 0
    if "score" not in endpoints:
        raise SystemExit("--endpoints: the compare target needs score (its ratio is on /v1/score)")
    ns.duration = ns.duration or 20
    ns.sessions = ns.sessions or 10_000
    tmp = Path(tempfile.mkdtemp(prefix="tdm-bench-", dir="/tmp"))
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    # Ray starts workers (the Serve replica) at nice 15 by default; the bare peer runs at the
    # caller's priority, so give the replica the same footing.
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_worker_niceness": "0",
                       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    from cluster.local import free_port, haproxy_env, port_open, start_redis, stop_group, wait_for

    if ns.ingress == "haproxy":
        hp_dir = Path(tempfile.mkdtemp(prefix="thp-", dir="/tmp"))  # short: HAProxy's socket path limit
        os.environ.update(haproxy_env(hp_dir, free_port(), free_port()))

    redis_port = free_port()
    start_redis(redis_port, tmp / "redis", tmp / "redis.pid")
    results: dict[str, Any] = {}
    bare_pid = tmp / "bare.pid"
    try:
        args = prepare(tmp, f"redis://127.0.0.1:{redis_port}/0", ns.sessions)
        (tmp / "args.json").write_text(json.dumps(args))
        # 1) the bare uvicorn peer, alone on the machine
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.serve_bare", "--args-json", str(tmp / "args.json"),
                                 "--port", str(port), "--workers", str(ns.replicas)], cwd=ROOT, start_new_session=True)
        bare_pid.write_text(str(proc.pid))
        wait_for(lambda: port_open(port), "the bare app", 60)
        wait_http(f"http://127.0.0.1:{port}")
        results["bare"] = drive("bare", f"http://127.0.0.1:{port}", conns, ns.duration, ns.sessions, tmp,
                                 endpoints)
        stop_group(bare_pid, "bare app")
        # 2) tandem on Ray Serve
        import ray
        from ray import serve

        from serve.app import build_app
        from serve.deployments import TandemService
        from serve.schemas import AppArgs

        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(tmp),
                 configure_logging=False, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
        app = build_app(args)
        if ns.replicas > 1:
            app = TandemService.options(num_replicas=ns.replicas).bind(  # type: ignore[attr-defined]
                AppArgs.model_validate(args).model_dump(mode="json"))
        # as serve/config.yaml runs it in production: no per-request access log
        serve.run(app, name="tandem", route_prefix="/",
                  logging_config={"enable_access_log": False, "log_level": "WARNING"})
        wait_http(f"http://127.0.0.1:{port}")
        results["tandem"] = drive("tandem", f"http://127.0.0.1:{port}", conns, ns.duration, ns.sessions, tmp,
                                   endpoints)
        serve.shutdown()
        ray.shutdown()
    finally:
        stop_group(bare_pid, "bare app")
        stop_group(tmp / "redis.pid", "bench redis")
        shutil.rmtree(tmp, ignore_errors=True)
        if ns.ingress == "haproxy":
            shutil.rmtree(hp_dir, ignore_errors=True)
    top = f"score@{max(conns)}"
    t, b = results["tandem"][top], results["bare"][top]
    ratio = t["rps"] / b["rps"] if b["rps"] else 0.0
    by_conns = {c: round(results["tandem"][f"score@{c}"]["rps"] / results["bare"][f"score@{c}"]["rps"], 3)
                for c in conns if results["bare"][f"score@{c}"]["rps"]}
    # "at equal p99": each tandem point against the bare app's best throughput at a p99 no higher than
    # tandem's there, and the best of each app within the 10 ms bid budget
    def best_rps(app: str, p99_cap: float) -> float:
        return max((r["rps"] for c in conns if (r := results[app][f"score@{c}"])["p99_ms"] is not None
                    and r["p99_ms"] <= p99_cap and r["errors"] == 0), default=0.0)

    at_equal_p99 = {c: round(t_c["rps"] / b_best, 3) for c in conns
                    if (t_c := results["tandem"][f"score@{c}"])["p99_ms"] is not None
                    and (b_best := best_rps("bare", t_c["p99_ms"]))}
    bare_10 = best_rps("bare", 10.0)
    ratio_10ms = round(best_rps("tandem", 10.0) / bare_10, 3) if bare_10 else 0.0
    # the bid goal: some load point of cached /v1/score with p99 <= 10 ms at >= 1,000 rps and zero errors
    meets = [c for c in conns if (r := results["tandem"][f"score@{c}"])["p99_ms"] is not None
             and r["p99_ms"] <= 10 and r["rps"] >= 1000 and r["errors"] == 0]
    summary = {"bench": "serve", "ingress": ns.ingress, "replicas": ns.replicas, "duration_s": ns.duration,
               "connections": conns,
               "results": results, "ratio": round(ratio, 3), "ratio_by_connections": by_conns,
               "ratio_at_equal_p99": at_equal_p99, "ratio_within_10ms_p99": ratio_10ms,
               "goal_score_p99_10ms_at_1000rps": bool(meets), "goal_met_at_connections": meets,
               "loadavg": os.getloadavg()}
    print(f"ratio tandem/bare (cached /v1/score, c={max(conns)}): {ratio:.3f}; at equal p99 {at_equal_p99}; "
          f"best within a 10 ms p99: {ratio_10ms:.3f}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
