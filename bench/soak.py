"""Compressed-time soak of the unattended loop: one simulated day of 5-minute ticks and 4 retrains.

    python -m bench.soak [--fast-ticks 288] [--slow-every-ticks 72] [--events-per-tick 200] [--seed 7]

It starts its own stack on private ports and a private run dir (``cluster.local``: a Ray head,
a redis-server with AOF and maxmemory; the Serve app deployed by ``jobs.deploy`` with two
replicas), bootstraps champions from two days of history (``jobs.features``,
``jobs.train_propensity``, ``jobs.train_recommender``), then runs ``python -m jobs.refresh`` as a
Ray driver on a simulated clock (``clock_file``): for each 5-minute slot it writes the slot's
fresh events (plus late, duplicate, future-dated and bad-tenant rows), moves the clock past the
slot end and waits for the tick's JSON line. wrk offers a constant load to /v1/score and
/v1/recommend the whole time (``bench.soak_load``). At seeded random ticks: ``kill -9`` of the
loop during a running tick (it is restarted, as a supervisor would), a Redis restart, a replica
``kill -9``, and once a malformed ``date=`` partition.

It prints the figures and ends with one JSON line: Redis used_memory over ticks, temp-dir and
cache-dir bytes, 5xx and non-2xx, p99 during publish vs between, ticks completed/failed/retried,
publish-to-endpoint seconds, quarantined events by reason, and the done-when checks.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from bench.soak_load import Load, p99_split
from cluster.local import LocalConfig, down, free_port, start_redis, stop_group, up
from pipelines.synthetic import GeneratorConfig, generate, write_partitioned
from store.lease import lease_key

ROOT = Path(__file__).resolve().parent.parent
KEY = "soak-key-1"
T0 = pd.Timestamp("2026-11-10T00:00:00Z")
SLOT = 300


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*") if path.exists() else []:
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def set_clock(path: Path, when: pd.Timestamp) -> None:
    """Move the simulated clock in one rename, so the loop never reads a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(when.isoformat())
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Stack:
    """The soak's own cluster, Redis, Serve app and loop process; stopped by pid, never by name."""

    def __init__(self, run: Path, args: argparse.Namespace):
        self.run, self.args = run, args
        self.tmp = run / "tmp"
        self.tmp.mkdir(parents=True)
        self.cfg = LocalConfig(run_dir=run / "cluster", ray_port=free_port(), dashboard_port=free_port(),
                               redis_port=free_port(), serve_port=free_port(), metrics_port=free_port(),
                               agent_port=free_port(), client_port=free_port(), num_cpus=4,
                               haproxy_stats_port=free_port(), haproxy_metrics_port=free_port())
        self.env = {**os.environ, "TMPDIR": str(self.tmp), "TANDEM_MODEL_CACHE_DIR": str(run / "model-cache"),
                    "TANDEM_REDIS_MAXMEMORY": args.redis_maxmemory, "PYTHONPATH": str(ROOT),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.cfg.token_path),
                    "RAY_ADDRESS": f"127.0.0.1:{self.cfg.ray_port}", "PYTHONUNBUFFERED": "1",
                    "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        self.loop: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def up(self) -> None:
        saved = dict(os.environ)
        os.environ.update({k: self.env[k] for k in ("TMPDIR", "TANDEM_MODEL_CACHE_DIR", "TANDEM_REDIS_MAXMEMORY")})
        try:
            up(self.cfg)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def job(self, *argv: str, timeout: float = 1800) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", *argv], env=self.env, cwd=ROOT, capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {out.stderr[-3000:]}")
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def start_loop(self, config: Path) -> None:
        err = open(self.run / "loop.log", "ab")  # noqa: SIM115 - the loop process owns it
        self.loop = subprocess.Popen([sys.executable, "-m", "jobs.refresh", "--config", str(config)], env=self.env,
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        proc = self.loop

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                try:
                    self.lines.put(json.loads(raw))
                except ValueError:
                    pass

        threading.Thread(target=read, daemon=True).start()

    def kill_loop(self) -> None:
        if self.loop and self.loop.poll() is None:
            os.killpg(self.loop.pid, signal.SIGKILL)
            self.loop.wait()

    def restart_redis(self) -> float:
        t0 = time.time()
        stop_group(self.cfg.run_dir / "redis.pid", "soak redis-server")
        env = dict(os.environ)
        os.environ["TANDEM_REDIS_MAXMEMORY"] = self.args.redis_maxmemory
        try:
            start_redis(self.cfg.redis_port, self.cfg.run_dir / "redis", self.cfg.run_dir / "redis.pid")
        finally:
            os.environ.clear()
            os.environ.update(env)
        return time.time() - t0

    def serve_details(self) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.cfg.dashboard_url}/api/serve/applications/",
                                     headers={"Authorization": f"Bearer {self.cfg.token_path.read_text().strip()}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def replicas(self) -> list[dict[str, Any]]:
        dep = self.serve_details()["applications"]["tandem"]["deployments"]["Tandem"]
        return [r for r in dep["replicas"] if str(r["state"]).endswith("RUNNING")]

    def down(self) -> None:
        self.kill_loop()
        down(self.cfg)


class Events:
    """A day of synthetic events after two days of history, cut into 5-minute slots, plus bad rows."""

    def __init__(self, args: argparse.Namespace):
        days = args.history_days + int(args.fast_ticks * SLOT / 86400) + 1
        per_day = args.events_per_tick * 86400 // SLOT
        table = generate(GeneratorConfig(events=per_day * days, seed=args.seed, days=days, items=args.items,
                                         start=str((T0 - pd.Timedelta(days=args.history_days)).date()), tenants=2))
        t = table["event_time"]
        self.history = table.filter(pc.less(t, pa.scalar(T0.to_pydatetime(), t.type)))
        self.future = table.filter(pc.greater_equal(t, pa.scalar(T0.to_pydatetime(), t.type)))
        secs = (pc.cast(pc.cast(self.future["event_time"], pa.int64()), pa.float64()).to_numpy() / 1e6)
        self.slot = ((secs - T0.timestamp()) // SLOT).astype(int)
        self.rng = random.Random(args.seed)
        self.late: dict[int, pa.Table] = {}

    def slot_rows(self, k: int) -> tuple[pa.Table, dict[str, int]]:
        import numpy as np

        rows = self.future.filter(pa.array(self.slot == k))
        n = rows.num_rows
        late_mask = np.array([self.rng.random() < 0.03 for _ in range(n)], dtype=bool)
        held = rows.filter(pa.array(late_mask))
        rows = rows.filter(pa.array(~late_mask))
        self.late[k + 3] = held  # arrives three slots (15 min) late
        parts = [rows, self.late.pop(k, rows.slice(0, 0))]
        dup = rows.slice(0, max(1, rows.num_rows // 50)) if rows.num_rows else rows
        parts.append(dup)  # exact duplicates (at-least-once ingestion)
        extra = {"late": parts[1].num_rows, "duplicate": dup.num_rows, "future": 0, "bad_tenant": 0}
        if rows.num_rows:
            t_type = rows.schema.field("event_time").type
            slot_end = T0 + pd.Timedelta(seconds=(k + 1) * SLOT)
            fut = rows.slice(0, 2).set_column(0, rows.schema.field("event_time"), pa.array(
                [(slot_end + pd.Timedelta(days=1)).to_pydatetime(), pd.Timestamp("2150-01-01", tz="UTC")],
                t_type))
            bad = rows.slice(0, 3).set_column(rows.schema.get_field_index("tenant"), rows.schema.field("tenant"),
                                              pa.array(["bad tenant!"] * min(3, rows.num_rows), pa.string()))
            parts += [fut, bad]
            extra.update(future=fut.num_rows, bad_tenant=bad.num_rows)
        return pa.concat_tables(parts), extra

    def active_ids(self, k: int, tenant: str = "t0", window_slots: int = 12) -> list[str]:
        lo = max(0, k - window_slots + 1)
        mask = (self.slot >= lo) & (self.slot <= k)
        rows = self.future.filter(pa.array(mask))
        rows = rows.filter(pc.equal(rows["tenant"], tenant))
        return sorted(set(rows["session_id"].to_pylist()))[:500]


def bootstrap(stack: Stack, ev: Events, args: argparse.Namespace) -> tuple[Path, Path]:
    events, features, registry = stack.run / "events", stack.run / "features", stack.run / "registry"
    write_partitioned(ev.history, events, basename="history")
    log(f"history: {ev.history.num_rows} events; pool: {ev.future.num_rows} events over {args.fast_ticks} slots")
    stack.job("jobs.features", "--events", str(events), "--out", str(features), "--now", T0.isoformat(),
              "--buckets", "2")
    stack.job("jobs.train_propensity", "--features", str(features / "sessions"), "--label", "purchased",
              "--time-column", "cutoff_time", "--registry", str(registry), "--rounds", str(args.rounds))
    stack.job("jobs.train_recommender", "--train", str(features / "sequences"), "--format", "parquet", "--model",
              "vsknn", "--test-fraction", "0.05", "--registry", str(registry),
              "--artifact-dir", str(stack.tmp / "rec0"))
    shutil.rmtree(stack.tmp / "rec0", ignore_errors=True)
    serve_cfg = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    dep = serve_cfg["applications"][0]["deployments"][0]
    dep["num_replicas"] = 2  # two replicas: one may be killed
    (stack.run / "serve.yaml").write_text(yaml.safe_dump(serve_cfg))
    subprocess.run([sys.executable, "-m", "jobs.deploy", "--config", str(stack.run / "serve.yaml"), "--registry",
                    str(registry), "--redis", stack.cfg.redis_url, "--api-key", f"{KEY}=t0",
                    "--address", stack.cfg.dashboard_url, "--http-port", str(stack.cfg.serve_port), "--wait",
                    "--out", str(stack.run / "serve.resolved.yaml")], env=stack.env, cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    loop_cfg = {"events": str(events), "features": str(features), "registry": str(registry),
                "redis": stack.cfg.redis_url, "fast_every_s": SLOT, "slow_every_s": SLOT * args.slow_every_ticks,
                "clock_file": str(stack.run / "clock"), "lease_ttl_s": 10, "retry_s": 2, "gc_grace_s": 30,
                "buckets": 2, "recommender_model": "vsknn"}
    loop_cfg["propensity_args"] = ["--rounds", str(args.rounds)]
    loop_cfg["recommender_args"] = ["--test-fraction", "0.05"]
    (stack.run / "loop.yaml").write_text(yaml.safe_dump(loop_cfg))
    return events, stack.run / "loop.yaml"


class Soak:
    """Drives the slots, the faults and the sampling; ``result`` is the JSON line."""

    def __init__(self, stack: Stack, ev: Events, events_dir: Path, loop_yaml: Path, args: argparse.Namespace):
        import redis

        self.stack, self.ev, self.events_dir, self.loop_yaml, self.args = stack, ev, events_dir, loop_yaml, args
        self.redis = redis.Redis.from_url(stack.cfg.redis_url, socket_timeout=5)
        self.lines: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.killed: list[str] = []
        self.faults: list[dict[str, Any]] = []
        self.endpoint_s: list[float] = []
        rng = random.Random(args.seed + 1)
        n = args.fast_ticks
        span = list(range(min(20, n - 1), max(min(20, n - 1) + 1, n - 10)))
        self.kill_at = set(rng.sample(span, min(args.kills, len(span))))
        self.redis_at = {rng.choice(span)} if args.redis_restarts else set()
        self.replica_at = {rng.choice(span)} if args.replica_kills else set()
        self.malformed_at = min(50, n - 1)

    def wait(self, tid: str, timeout: float = 900) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.stack.lines.get(timeout=1.0)
            except queue.Empty:
                if self.stack.loop is not None and self.stack.loop.poll() is not None:
                    log(f"the loop exited ({self.stack.loop.returncode}); restarting it")
                    self.faults.append({"kind": "loop_exit", "tick": tid, "rc": self.stack.loop.returncode})
                    self.stack.start_loop(self.loop_yaml)
                continue
            line["_received"] = time.time()
            self.lines.append(line)
            if line.get("outcome") in ("failed", "locked"):
                log(f"{line['tick']}: {line['outcome']} {str(line.get('error', ''))[:160]}")
            if line.get("tick") == tid and line.get("outcome") in ("ok", "noop", "partial"):
                return line
        raise RuntimeError(f"no successful {tid} within {timeout:.0f}s: the loop stalled")

    def kill_during_tick(self, tid: str) -> None:
        deadline = time.time() + 60
        while time.time() < deadline and self.redis.get(lease_key()) is None:
            time.sleep(0.02)
        time.sleep(random.Random(len(self.killed)).uniform(0.2, 1.5))
        self.stack.kill_loop()
        self.killed.append(tid)
        log(f"kill -9 of the loop during {tid}; restarting it")
        self.stack.start_loop(self.loop_yaml)

    def kill_replica(self) -> None:
        reps = self.stack.replicas()
        victim = random.Random(7).choice(reps)
        os.kill(int(victim["pid"]), signal.SIGKILL)
        self.faults.append({"kind": "replica_kill", "replica": victim["replica_id"], "at": time.time()})
        log(f"kill -9 of replica {victim['replica_id']} (pid {victim['pid']})")

    def served_everywhere(self, version: str, since: float, timeout: float = 120) -> float | None:
        """Seconds from the promotion until /v1/health of every running replica reports ``version``."""
        want = {r["replica_id"] for r in self.stack.replicas()}
        seen: set[str] = set()
        url = f"http://127.0.0.1:{self.stack.cfg.serve_port}/v1/health"
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers={"X-API-Key": KEY}),
                                            timeout=5) as resp:
                    h = json.loads(resp.read())
                if h.get("models", {}).get("recommender") == version and h.get("replica"):
                    seen.add(h["replica"])
            except OSError:
                pass
            if want and want <= seen:
                return time.time() - since
            time.sleep(0.05)
        return None

    def sample(self, k: int) -> None:
        s = self.stack
        try:
            used = int(self.redis.info("memory")["used_memory"])
        except Exception:  # noqa: BLE001 - a restart in progress
            used = -1
        rss = 0
        if s.loop and s.loop.poll() is None:
            try:
                status = Path(f"/proc/{s.loop.pid}/status").read_text()
                rss = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))) * 1024
            except (OSError, StopIteration):
                pass
        self.samples.append({"tick": k + 1, "used_memory": used, "tmp_bytes": dir_bytes(s.tmp),
                             "cache_bytes": dir_bytes(s.run / "model-cache"),
                             "features_bytes": dir_bytes(s.run / "features") + dir_bytes(s.run / ".features.versions"),
                             "aof_bytes": dir_bytes(s.cfg.run_dir / "redis"), "loop_rss": rss,
                             "ray_session_bytes": dir_bytes(Path(s.cfg.ray_temp_dir))})

    def run(self) -> None:
        args, ev = self.args, self.ev
        clock = self.stack.run / "clock"
        set_clock(clock, T0)
        first_slow = T0 - pd.Timedelta(seconds=SLOT * args.slow_every_ticks)
        self.redis.set(f"tandem:refresh:tick:slow-{first_slow:%Y%m%dT%H%M%S}",
                       json.dumps({"outcome": "ok", "published": {}, "note": "bootstrap trained on this slot"}))
        ids = self.stack.run / "ids.txt"
        ids.write_text("\n".join(ev.active_ids(0)) + "\n")
        self.stack.start_loop(self.loop_yaml)
        self.wait(f"fast-{T0 - pd.Timedelta(seconds=SLOT):%Y%m%dT%H%M%S}")
        load = Load(f"http://127.0.0.1:{self.stack.cfg.serve_port}", KEY, ids, self.stack.run,
                    connections=args.connections, delay_ms=args.delay_ms)
        load.start()
        self.load = load
        extras: dict[str, int] = {}
        try:
            for k in range(args.fast_ticks):
                start = T0 + pd.Timedelta(seconds=k * SLOT)
                end = start + pd.Timedelta(seconds=SLOT)
                rows, extra = ev.slot_rows(k)
                for key, v in extra.items():
                    extras[key] = extras.get(key, 0) + v
                write_partitioned(rows, self.events_dir, basename=f"s{k:04d}")
                if k == self.malformed_at:
                    bad = self.events_dir / "date=2026-13-45"
                    bad.mkdir(exist_ok=True)
                    pq.write_table(rows.slice(0, 5), bad / "part-00000.parquet")
                ids.write_text("\n".join(ev.active_ids(k)) + "\n")
                if k in self.redis_at:
                    secs = self.stack.restart_redis()
                    self.faults.append({"kind": "redis_restart", "tick": k + 1, "seconds": round(secs, 2)})
                    log(f"redis restarted (AOF reload) in {secs:.1f}s")
                set_clock(clock, end + pd.Timedelta(seconds=1))
                tid = f"fast-{start:%Y%m%dT%H%M%S}"
                if k in self.replica_at:
                    self.kill_replica()
                if k in self.kill_at:
                    self.kill_during_tick(tid)
                line = self.wait(tid)
                if (k + 1) % args.slow_every_ticks == 0:
                    slow_slot = end - pd.Timedelta(seconds=SLOT * args.slow_every_ticks)
                    slow = self.wait(f"slow-{slow_slot:%Y%m%dT%H%M%S}", timeout=1800)
                    promoted = (slow.get("swap") or {}).get("versions", {}).get("recommender")
                    if promoted:
                        took = self.served_everywhere(promoted, slow["promoted_at"])
                        self.endpoint_s.append(round(took, 2) if took is not None else -1.0)
                    log(f"{slow['tick']}: {slow['outcome']} gates "
                        f"{ {n: g.get('promoted') for n, g in (slow.get('gates') or {}).items()} } "
                        f"swap {(slow.get('swap') or {}).get('promote_to_served_s')}s")
                self.sample(k)
                if (k + 1) % 24 == 0 or k < 3:
                    last = self.samples[-1]
                    log(f"tick {k + 1}/{args.fast_ticks} {line['outcome']} {line.get('seconds')}s "
                        f"redis {last['used_memory'] / 1e6:.1f} MB tmp {last['tmp_bytes'] / 1e6:.1f} MB "
                        f"cache {last['cache_bytes'] / 1e6:.1f} MB loop rss {last['loop_rss'] / 1e6:.0f} MB")
        finally:
            load.stop()
        self.extras = extras

    def report(self) -> dict[str, Any]:
        args, lines, samples = self.args, self.lines, self.samples
        segs = self.load.segments
        windows = [tuple(w) for ln in lines for name, w in (ln.get("phases") or {}).items()
                   if name in ("publish", "swap")]
        by_tick: dict[str, list[str]] = {}
        for ln in lines:
            by_tick.setdefault(ln["tick"], []).append(ln["outcome"])
        ok = {"ok", "noop", "partial"}
        fast = {t: o for t, o in by_tick.items() if t.startswith("fast-")}
        slow = {t: o for t, o in by_tick.items() if t.startswith("slow-")}
        quarantined: dict[str, int] = {}
        for ln in lines:
            for reason, n in ((ln.get("features") or {}).get("quarantined_new") or {}).items():
                quarantined[reason] = quarantined.get(reason, 0) + n
        mem = [sm["used_memory"] for sm in samples]
        i10 = min(9, len(mem) - 1)
        first_slow = args.slow_every_ticks - 1
        after = samples[first_slow:] if len(samples) > first_slow else samples[-1:]
        def growth(key: str) -> dict[str, Any]:
            base = after[0][key]
            return {"at_first_slow_tick": base, "max_after": max(x[key] for x in after), "end": samples[-1][key],
                    "growing": samples[-1][key] > base * 1.10 + 1_000_000}
        five = sum(sg.get("5xx", 0) for sg in segs)
        non2xx = sum(sg.get("non2xx", 0) or 0 for sg in segs)
        requests = sum(sg.get("requests", 0) for sg in segs)
        fallbacks: dict[str, int] = {}
        for sg in segs:
            for r, n in (sg.get("fallbacks") or {}).items():
                fallbacks[r] = fallbacks.get(r, 0) + n
        swaps = [(ln.get("swap") or {}) for ln in lines if ln.get("cadence") == "slow" and ln.get("swap")]
        killed_ok = all(any(o in ok for o in by_tick.get(t, [])) for t in self.killed)
        served = [x for x in self.endpoint_s]
        checks = {
            "used_memory_ratio_288_vs_10": round(mem[-1] / mem[i10], 3) if mem[i10] > 0 else None,
            "memory_within_2_5x": bool(mem[i10] > 0 and mem[-1] <= 2.5 * mem[i10]),
            "tmp_not_growing": not growth("tmp_bytes")["growing"],
            "cache_not_growing": not growth("cache_bytes")["growing"],
            "zero_5xx": five == 0,
            "every_killed_tick_then_success": killed_ok and bool(self.killed),
            "every_slow_tick_served_within_60s": bool(served) and all(0 <= x <= 60 for x in served)
            and len(served) == len(swaps),
            "future_and_bad_tenant_quarantined": quarantined.get("future_time", 0) > 0
            and quarantined.get("invalid_tenant", 0) > 0,
            "every_slot_ticked": len(fast) >= args.fast_ticks and all(any(o in ok for o in v) for v in fast.values()),
        }
        return {
            "bench": "soak", "fast_ticks": args.fast_ticks, "slow_ticks": len(slow),
            "events_per_tick": args.events_per_tick, "seconds": round(time.time() - self.t0, 1),
            "ratio": checks["used_memory_ratio_288_vs_10"],
            "redis_used_memory": {"after_tick_10": mem[i10], "after_last_tick": mem[-1], "max": max(mem),
                                  "every_24_ticks": mem[::24] + [mem[-1]]},
            "tmp_bytes": growth("tmp_bytes"), "cache_bytes": growth("cache_bytes"),
            "features_bytes": growth("features_bytes"), "aof_bytes": growth("aof_bytes"),
            "loop_rss": growth("loop_rss"), "ray_session_bytes": growth("ray_session_bytes"),
            "requests": requests, "5xx": five, "non_2xx": non2xx,
            "socket_errors": sum(int(sg.get("socket_errors") or 0) for sg in segs),
            "fallbacks": fallbacks, "p99": p99_split(segs, windows),  # type: ignore[arg-type]
            "ticks": {"completed": sum(any(o in ok for o in v) for v in by_tick.values()),
                      "failed": sum(o.count("failed") for o in by_tick.values()),
                      "locked": sum(o.count("locked") for o in by_tick.values()),
                      "retried": sum(1 for ln in lines if int(ln.get("attempt") or 1) > 1),
                      "noop": sum(o.count("noop") for o in by_tick.values()),
                      "fast_tick_s_p50": _pct([ln.get("seconds", 0) for ln in lines if ln.get("cadence") == "fast"
                                               and ln["outcome"] == "ok"], 50),
                      "slow_tick_s": [ln.get("seconds") for ln in lines if ln.get("cadence") == "slow"
                                      and ln["outcome"] == "ok"]},
            "killed_ticks": self.killed, "faults": self.faults,
            "publish_to_endpoint_s": served,
            "loop_swap_verified_s": [sw.get("promote_to_served_s") for sw in swaps],
            "gates": [{n: g.get("promoted") for n, g in (ln.get("gates") or {}).items()} for ln in lines
                      if ln.get("cadence") == "slow" and ln["outcome"] == "ok"],
            "quarantined": quarantined, "injected": self.extras, "checks": checks,
            "passed": all(v for k, v in checks.items() if isinstance(v, bool)),
        }


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    return round(values[min(len(values) - 1, int(len(values) * q / 100))], 2) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--fast-ticks", type=int, default=288, help="5-minute slots (288 = one simulated day)")
    parser.add_argument("--slow-every-ticks", type=int, default=72, help="a retrain every this many slots (72 = 6 h)")
    parser.add_argument("--events-per-tick", type=int, default=200)
    parser.add_argument("--history-days", type=int, default=2)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds of the propensity retrains")
    parser.add_argument("--kills", type=int, default=2, help="kill -9 of the loop during a running tick")
    parser.add_argument("--redis-restarts", type=int, default=1)
    parser.add_argument("--replica-kills", type=int, default=1)
    parser.add_argument("--connections", type=int, default=2, help="wrk connections")
    parser.add_argument("--delay-ms", type=int, default=20, help="pause per connection between requests")
    parser.add_argument("--redis-maxmemory", default="256mb")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the run dir (logs, data)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    run = Path(tempfile.mkdtemp(prefix="tdm-soak-", dir="/tmp"))
    log(f"run dir {run}; load average {os.getloadavg()}")
    stack = Stack(run, args)
    t0 = time.time()
    try:
        stack.up()
        ev = Events(args)
        events_dir, loop_yaml = bootstrap(stack, ev, args)
        log(f"stack up and champions trained in {time.time() - t0:.0f}s; serve on :{stack.cfg.serve_port}")
        soak = Soak(stack, ev, events_dir, loop_yaml, args)
        soak.t0 = t0
        soak.run()
        result = soak.report()
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    for key in ("redis_used_memory", "tmp_bytes", "cache_bytes", "requests", "5xx", "non_2xx", "p99", "ticks",
                "publish_to_endpoint_s", "quarantined", "checks"):
        print(f"{key}: {json.dumps(result[key])}")
    print(f"ratio (Redis used_memory after the last tick / after tick 10): {result['ratio']}")
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
