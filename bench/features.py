"""Sessionization + session features: tandem's Ray Data job against DuckDB, same data, same run.

``python -m bench.features [--events 5000000,20000000] [--quick]``

For each size it generates canonical events (``pipelines.synthetic``), then runs, each in a fresh
subprocess so peak memory and CPU are measured per engine:

- DuckDB, single process (all cores): the same session features and point-in-time label in SQL;
- tandem on a running cluster (``ratio``): one local Ray head with every core is started
  once, as ``make up`` or ``ray up`` leaves it, and each size's job is a fresh driver process
  on it (``pipelines.features.run(..., sessions_only=True)``), which is how ``jobs.refresh`` and
  ``ray job submit`` run the job. The driver's whole process counts (start, imports, connect,
  job, disconnect); the cluster's processes count in RSS and CPU;
- tandem cold (``ratio_cold_start``): the driver starts and stops a local Ray of its own,
  so Ray's start-up and shut-down (paid once per cluster in production) are charged to the job.

It prints events/s per core for each (wall clock over all cores), peak RSS, CPU seconds,
the ratios tandem / DuckDB of per-core throughput and, as ``cpu_ratio``, of events per CPU
second (which a busy machine does not distort). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

DUCKDB_SQL = """
CREATE TABLE ev AS SELECT * EXCLUDE (date) FROM read_parquet('{events}/*/*.parquet', hive_partitioning = true);
CREATE TABLE firstbuy AS SELECT session_id, min(event_time) AS t FROM ev WHERE event_type = 'purchase' GROUP BY 1;
COPY (
  WITH pre AS (
    SELECT e.*, lead(epoch(e.event_time)) OVER (PARTITION BY e.session_id ORDER BY e.event_time) - epoch(e.event_time) AS dwell
    FROM ev e LEFT JOIN firstbuy f USING (session_id)
    WHERE e.event_type <> 'purchase' AND (f.t IS NULL OR e.event_time < f.t)
  )
  SELECT p.session_id,
         count(*) AS n_events, count(*) FILTER (event_type = 'view') AS n_views,
         count(*) FILTER (event_type = 'cart') AS n_carts, count(*) FILTER (event_type = 'remove_from_cart') AS n_removes,
         count(DISTINCT item_id) AS n_items, count(DISTINCT category) AS n_categories,
         epoch(max(event_time)) - epoch(min(event_time)) AS duration_s,
         avg(dwell) AS mean_dwell_s, max(dwell) AS max_dwell_s,
         1 - count(DISTINCT item_id) / count(*) AS repeat_ratio,
         count(*) FILTER (event_type = 'cart') / count(*) AS cart_ratio,
         avg(price) AS mean_price, max(price) AS max_price,
         sum(price) FILTER (event_type = 'cart') AS cart_value,
         arg_max(event_type = 'cart', event_time)::DOUBLE AS last_event_is_cart,
         hour(max(event_time)) AS hour, isodow(max(event_time)) - 1 AS weekday,
         (max(user_id) IS NOT NULL)::DOUBLE AS is_identified,
         (max(f.t) IS NOT NULL)::INT AS purchased
  FROM pre p LEFT JOIN firstbuy f USING (session_id)
  GROUP BY p.session_id
) TO '{out}/sessions.parquet' (FORMAT parquet);
"""


def _tree_stats(root_pid: int) -> tuple[int, dict[int, float]]:
    """Resident bytes of ``root_pid`` and all its descendants, and each one's CPU seconds so far."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(proc.name))
            rss[int(proc.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
            cpu[int(proc.name)] = (int(stat[11]) + int(stat[12])) / tick  # utime + stime
        except (OSError, ValueError, IndexError):
            continue
    total, stack, tree_cpu = 0, [root_pid], {}
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        tree_cpu[pid] = cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total, tree_cpu


def _measure(cmd: list[str], cluster_pid: int | None = None) -> tuple[float, int, float, str]:
    """Run ``cmd``; return wall seconds, peak RSS, CPU seconds and its stdout.

    RSS and CPU cover the process tree of ``cmd`` and, when ``cluster_pid`` is given, that
    of the running Ray cluster it drives (whose CPU counts from the moment ``cmd`` starts).
    CPU seconds (user + system of every process, sampled every 0.2 s) do not grow when other
    work shares the machine, unlike wall time, so they compare engines on a busy box.
    """
    base = _tree_stats(cluster_pid)[1] if cluster_pid else {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            rss, seen = _tree_stats(proc.pid)
            if cluster_pid:
                more_rss, more = _tree_stats(cluster_pid)
                rss += more_rss
                seen.update({pid: secs - base.get(pid, 0.0) for pid, secs in more.items()})
            peak = max(peak, rss)
            for pid, secs in seen.items():
                cpu[pid] = max(cpu.get(pid, 0.0), secs)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"engine {cmd[4]} failed with exit {proc.returncode}:\n{err[-3000:]}")
    return time.perf_counter() - t0, peak, sum(cpu.values()), out


@contextlib.contextmanager
def _running_cluster(cores: int) -> Iterator[tuple[str, int]]:
    """A Ray head of ``cores`` CPUs on free ports, as ``make up`` starts one; yields (address, pid).

    It stops only what it started (its own process group and temp dir).
    """
    from cluster import local

    run_dir = Path(tempfile.mkdtemp(prefix="tdm-bfc-", dir="/tmp"))
    cfg = local.LocalConfig(run_dir=run_dir, ray_port=local.free_port(), dashboard_port=local.free_port(),
                            metrics_port=local.free_port(), agent_port=local.free_port(),
                            client_port=local.free_port(), num_cpus=cores)
    try:
        pid = local.start_ray(cfg)
        # drivers authenticate with the cluster's token (read by Ray at import)
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(cfg.token_path))
        yield f"127.0.0.1:{cfg.ray_port}", pid
    finally:
        local.stop_group(run_dir / "ray.pid", "bench Ray head")
        shutil.rmtree(cfg.ray_temp_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def _duckdb(events: str, out: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute(DUCKDB_SQL.format(events=events, out=out))
    n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/sessions.parquet')").fetchone()[0]
    sys.stdout.write(json.dumps({"sessions": n}) + "\n")


def _tandem(events: str, out: str, address: str | None) -> None:
    """The job's driver: on the running cluster at ``address`` (as ``jobs.refresh`` runs it each
    tick), or, without one, on a local Ray it starts and stops itself (the cold figure)."""
    import secrets

    tmp = None if address else tempfile.mkdtemp(prefix="tdm-bf-", dir="/tmp")
    if tmp:
        token = Path(tmp) / "token"
        token.write_text(secrets.token_hex(32))
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))  # read by Ray at import
    import ray

    from pipelines import features

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        _start_own_ray(tmp)
    try:
        t0 = time.perf_counter()
        rows = sum(f.stat().st_size for f in Path(events).rglob("*.parquet")) // 14  # ~14 bytes/event on disk
        buckets = max(4 * (os.cpu_count() or 1), rows // 500_000)  # ~500k events per stage-2 task
        manifest = features.run(events, Path(out) / "features", buckets=buckets, sessions_only=True)
        sys.stdout.write(json.dumps({"sessions": manifest["sessions"], "job_s": time.perf_counter() - t0,
                                     "timings": manifest["timings"]}) + "\n")
    finally:
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _start_own_ray(temp_dir: str | None) -> None:
    """A local Ray with every core and a fixed 2 GiB object store (memory stays bounded as input
    grows; Ray spills past it). On a busy machine the raylet can miss Ray's fixed 30 s start-up
    wait, so it tries three times."""
    import ray

    for attempt in range(3):
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=temp_dir,
                     log_to_driver=False, object_store_memory=2 * 1024**3)
            return
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise


def _run_engine(row: dict[str, Any], key: str, engine: str, events: Path, out: Path, n: int, cores: int,
                address: str | None = None, cluster_pid: int | None = None) -> None:
    out.mkdir()
    cmd = [sys.executable, "-m", "bench.features", "--engine", engine, "--input", str(events), "--out", str(out)]
    load_before = os.getloadavg()[0]
    secs, rss, cpu_s, stdout = _measure(cmd + (["--address", address] if address else []), cluster_pid)
    row[f"{key}_load_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]  # before, after
    info = json.loads(stdout.strip().splitlines()[-1])
    row[f"{key}_s"] = round(secs, 2)
    row[f"{key}_events_per_s_per_core"] = round(n / secs / cores)
    row[f"{key}_peak_rss_mb"] = round(rss / 2**20)
    row[f"{key}_cpu_s"] = round(cpu_s, 1)
    row[f"{key}_events_per_cpu_s"] = round(n / cpu_s) if cpu_s else None
    row[f"{key}_sessions"] = info["sessions"]
    if "job_s" in info:
        row[f"{key}_job_s"] = round(info["job_s"], 2)
        row[f"{key}_stages_s"] = info.get("timings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="5000000,20000000", help="comma-separated sizes")
    parser.add_argument("--quick", action="store_true", help="one 1M-event size")
    parser.add_argument("--data", help="keep the generated events under DATA/events-N and reuse them next time")
    parser.add_argument("--engine", choices=["duckdb", "tandem"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine == "duckdb":
        _duckdb(args.input, args.out)
        return 0
    if args.engine == "tandem":
        _tandem(args.input, args.out, args.address)
        return 0
    from pipelines.synthetic import GeneratorConfig, generate, write_partitioned

    sizes = [1_000_000] if args.quick else [int(s) for s in args.events.split(",")]
    cores = os.cpu_count() or 1
    # Ray's workers run at nice 0 like DuckDB (Ray's default renices them to 15, which only
    # matters when something else shares the box, and then only against tandem).
    os.environ.setdefault("RAY_worker_niceness", "0")
    with tempfile.TemporaryDirectory(prefix="tdm-bench-") as tmp:
        data = {}
        for n in sizes:
            events = Path(args.data) / f"events-{n}" if args.data else Path(tmp) / f"events-{n}"
            if not (events / "_done").exists():
                write_partitioned(generate(GeneratorConfig(events=n, seed=1)), events)
                (events / "_done").touch()
            data[n] = events
        rows: dict[int, dict[str, Any]] = {n: {"events": n, "cores": cores} for n in sizes}
        # Per size: DuckDB, then tandem starting and stopping its own Ray ("cold").
        for n in sizes:
            _run_engine(rows[n], "duckdb", "duckdb", data[n], Path(tmp) / f"duckdb-{n}", n, cores)
            _run_engine(rows[n], "tandem_cold", "tandem", data[n], Path(tmp) / f"cold-{n}", n, cores)
        # Then one running cluster, as `make up` or `ray up` leaves it, and each size's job as a
        # fresh driver process on it (how `jobs.refresh` and `ray job submit` run the job).
        with _running_cluster(cores) as (address, pid):
            for n in sizes:
                _run_engine(rows[n], "tandem", "tandem", data[n], Path(tmp) / f"tandem-{n}", n, cores,
                            address=address, cluster_pid=pid)
    runs = []
    for n in sizes:
        row = rows[n]
        row["ratio"] = round(row["tandem_events_per_s_per_core"] / row["duckdb_events_per_s_per_core"], 3)
        row["ratio_cold_start"] = round(row["tandem_cold_events_per_s_per_core"]
                                        / row["duckdb_events_per_s_per_core"], 3)
        for key, suffix in (("tandem", ""), ("tandem_cold", "_cold_start")):
            if row[f"{key}_events_per_cpu_s"] and row["duckdb_events_per_cpu_s"]:
                row[f"cpu_ratio{suffix}"] = round(row[f"{key}_events_per_cpu_s"] / row["duckdb_events_per_cpu_s"], 3)
        if row["tandem_sessions"] != row["duckdb_sessions"] or row["tandem_cold_sessions"] != row["duckdb_sessions"]:
            raise RuntimeError(f"{n} events: session counts differ: {row}")
        print(json.dumps(row))
        runs.append(row)
    summary = {"runs": runs, "ratio": min(r["ratio"] for r in runs),
               "ratio_cold_start": min(r["ratio_cold_start"] for r in runs),
               "cpu_ratio": min((r.get("cpu_ratio") or 0.0) for r in runs),
               "cpu_ratio_cold_start": min((r.get("cpu_ratio_cold_start") or 0.0) for r in runs), "goal": 0.5}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
