"""Sessionization + session features: tandem's Ray Data job against DuckDB, same data, same run.

``python -m bench.features [--events 5000000,20000000] [--quick]``

For each size it generates canonical events (``jobs.generate``), then runs, each in a fresh
subprocess so peak memory is measured per engine:

- DuckDB, single process (all cores): the same session features and point-in-time label in SQL;
- tandem: ``jobs.features.run(..., sessions_only=True)`` on a local Ray cluster with every core.

It prints events/s per core for both (wall clock over all cores), the peak RSS and the CPU
seconds of each process tree, the ratio tandem / DuckDB of per-core throughput and, as
``cpu_ratio``, of events per CPU second (which a busy machine does not distort). The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def _measure(cmd: list[str]) -> tuple[float, int, float, str]:
    """Run ``cmd``; return wall seconds, peak process-tree RSS, process-tree CPU seconds and its stdout.

    CPU seconds (user + system of every process of the tree, sampled every 0.2 s) do not
    grow when other work shares the machine, unlike wall time, so they compare engines on a
    busy box.
    """
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


def _duckdb(events: str, out: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute(DUCKDB_SQL.format(events=events, out=out))
    n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/sessions.parquet')").fetchone()[0]
    sys.stdout.write(json.dumps({"sessions": n}) + "\n")


def _tandem(events: str, out: str) -> None:
    import secrets

    tmp = tempfile.mkdtemp(prefix="tdm-bf-", dir="/tmp")
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))  # read by Ray at import
    import ray

    from jobs import features

    # A fixed object store (2 GiB): memory stays bounded as input grows; Ray spills past it.
    for attempt in range(3):  # on a busy machine the raylet can miss Ray's fixed 30 s start-up wait
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=tmp,
                     log_to_driver=False, object_store_memory=2 * 1024**3)
            break
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        t0 = time.perf_counter()
        rows = sum(f.stat().st_size for f in Path(events).rglob("*.parquet")) // 14  # ~14 bytes/event on disk
        buckets = max(4 * (os.cpu_count() or 1), rows // 500_000)  # ~500k events per stage-2 task
        manifest = features.run(events, Path(out) / "features", buckets=buckets, sessions_only=True)
        sys.stdout.write(json.dumps({"sessions": manifest["sessions"], "job_s": time.perf_counter() - t0,
                                     "timings": manifest["timings"]}) + "\n")
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="5000000,20000000", help="comma-separated sizes")
    parser.add_argument("--quick", action="store_true", help="one 1M-event size")
    parser.add_argument("--data", help="keep the generated events under DATA/events-N and reuse them next time")
    parser.add_argument("--engine", choices=["duckdb", "tandem"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine == "duckdb":
        _duckdb(args.input, args.out)
        return 0
    if args.engine == "tandem":
        _tandem(args.input, args.out)
        return 0
    from jobs.generate import GeneratorConfig, generate, write_partitioned

    sizes = [1_000_000] if args.quick else [int(s) for s in args.events.split(",")]
    cores = os.cpu_count() or 1
    runs = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tdm-bench-") as tmp:
            events = Path(args.data) / f"events-{n}" if args.data else Path(tmp) / "events"
            if not (events / "_done").exists():
                write_partitioned(generate(GeneratorConfig(events=n, seed=1)), events)
                (events / "_done").touch()
            row = {"events": n, "cores": cores}
            for engine in ("duckdb", "tandem"):
                out = Path(tmp) / engine
                out.mkdir()
                load_before = os.getloadavg()[0]
                secs, rss, cpu_s, stdout = _measure([sys.executable, "-m", "bench.features", "--engine", engine,
                                                     "--input", str(events), "--out", str(out)])
                row[f"{engine}_load_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]  # before, after
                info = json.loads(stdout.strip().splitlines()[-1])
                row[f"{engine}_s"] = round(secs, 2)
                row[f"{engine}_events_per_s_per_core"] = round(n / secs / cores)
                row[f"{engine}_peak_rss_mb"] = round(rss / 2**20)
                row[f"{engine}_cpu_s"] = round(cpu_s, 1)
                row[f"{engine}_events_per_cpu_s"] = round(n / cpu_s) if cpu_s else None
                row[f"{engine}_sessions"] = info["sessions"]
                if "job_s" in info:
                    row[f"{engine}_job_s"] = round(info["job_s"], 2)
                    row[f"{engine}_stages_s"] = info.get("timings")
            row["ratio"] = round(row["tandem_events_per_s_per_core"] / row["duckdb_events_per_s_per_core"], 3)
            if row.get("tandem_job_s"):
                # the job on an already running cluster (how `ray job submit` runs it): Ray's
                # start-up, paid once per cluster, is left out; DuckDB keeps its whole process
                row["ratio_running_cluster"] = round(row["duckdb_s"] / row["tandem_job_s"], 3)
            if row["tandem_events_per_cpu_s"] and row["duckdb_events_per_cpu_s"]:
                row["cpu_ratio"] = round(row["tandem_events_per_cpu_s"] / row["duckdb_events_per_cpu_s"], 3)
            print(json.dumps(row))
            runs.append(row)
    summary = {"runs": runs, "ratio": min(r["ratio"] for r in runs),
               "cpu_ratio": min((r.get("cpu_ratio") or 0.0) for r in runs),
               "ratio_running_cluster": min((r.get("ratio_running_cluster") or 0.0) for r in runs), "goal": 0.5}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
