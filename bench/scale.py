"""Scaling of the feature job, measured: S3 in and out on 1, 2 and 3 Ray worker nodes.

``python -m bench.scale [--events 20000000] [--nodes 1,2,3] [--cpus-per-node 2] [--data DIR]``

This machine has 2 cores, so wall-clock speed-up cannot show scaling here; the bench measures
the cost of distribution instead. For each node count it starts a fresh ``cluster.multinode``
cluster (a head with 0 CPUs, N workers, each its own ``ray start`` in its own sandbox) whose
nodes reach moto's S3 server on loopback through a counting proxy, runs the full feature job
(``pipelines.features.run``, all three stages) as a driver on the head with ``s3://`` input
and output, and reports:

- CPU-seconds over every Ray process (each node's process tree from ``/proc`` plus the driver),
  events per CPU-second and efficiency = (1-node CPU-s) / (N-node CPU-s);
- peak RSS per node (its whole process tree, sampled every 0.25 s);
- bytes of the stage shuffle that crossed nodes through Ray's object store (each part's size,
  by the node that made it and the node that used it) and bytes to and from S3;
- S3 requests by method (counted by the proxy).

Every run's sessions, sequences and items tables are compared with the 1-node run's (same rows,
same values); the bench fails if they differ. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "tdm-scale"
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class S3Counter:
    """A counting HTTP proxy in front of the S3 server: requests by method, bytes in and out."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.reset()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"content-length"}}
                conn = http.client.HTTPConnection("127.0.0.1", counter.upstream_port, timeout=300)
                conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                             headers={**headers, "Content-Length": str(len(body))})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and not (k.lower() == "content-length" and self.command != "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                query = self.path.partition("?")[2]
                kind = self.command + (f" ?{query.split('=')[0].split('&')[0]}" if query else "")
                with counter.lock:
                    counter.requests[kind] = counter.requests.get(kind, 0) + 1
                    counter.bytes_in += len(body)
                    counter.bytes_out += len(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.requests: dict[str, int] = {}
            self.bytes_in = 0
            self.bytes_out = 0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": dict(self.requests), "total": sum(self.requests.values()),
                    "bytes_to_s3": self.bytes_in, "bytes_from_s3": self.bytes_out}


def _sample(trees: dict[str, int], base: dict[str, dict[int, float]], cpu: dict[str, dict[int, float]],
            peak: dict[str, int]) -> None:
    from bench.features import _tree_stats

    for name, pid in trees.items():
        rss, seen = _tree_stats(pid)
        peak[name] = max(peak.get(name, 0), rss)
        for p, secs in seen.items():
            cpu[name][p] = max(cpu[name].get(p, 0.0), secs - base.get(name, {}).get(p, 0.0))


def _column_hash(col: Any) -> int:
    """Order-dependent hash of one column's values (lists as their lengths and flattened values)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return _column_hash(pc.list_value_length(arr)) * 31 + _column_hash(pc.list_flatten(arr))
    values = pd.Series(arr.to_pandas())
    weights = pd.Series(range(1, len(values) + 1), dtype="uint64")
    return int((pd.util.hash_pandas_object(values, index=False) * weights).sum() % 2**61)


def _digest(prefix: str) -> dict[str, Any]:
    """Per table (read back from S3), row count and a hash of every value with rows in key order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from store import fs

    out = {}
    version = fs.resolve(prefix)
    for table, key in (("sessions", "session_id"), ("sequences", "session_id"), ("items", "item_id")):
        files = fs.list_files(fs.join(version, table), ".parquet")
        t = pa.concat_tables([pq.read_table(fs.open_input_file(f)) for f in files], promote_options="default")
        t = t.select(sorted(t.column_names)).sort_by(key)
        out[table] = {"rows": t.num_rows, "hash": sum(_column_hash(c) * (i + 1) for i, c in enumerate(t.columns)) % 2**61}
    return out


def run_size(nodes: int, cpus: float, events_uri: str, n_events: int, counter: S3Counter, s3_env: dict[str, str],
             buckets: int, object_store_mb: int, work: Path) -> dict[str, Any]:
    from cluster.multinode import MultiNodeCluster
    from store import fs

    out = f"s3://{BUCKET}/out-{nodes}"
    cluster = MultiNodeCluster(work / f"c{nodes}", env={**s3_env, "RAY_worker_niceness": "0"},
                               object_store_mb=object_store_mb)
    try:
        cluster.start(workers=nodes, cpus_per_worker=cpus)
        time.sleep(3)  # let start-up settle: the measurement is the job on a running cluster
        trees = {name: node.pid for name, node in cluster.nodes.items()}
        base: dict[str, dict[int, float]] = {}
        for name, pid in trees.items():
            from bench.features import _tree_stats

            base[name] = _tree_stats(pid)[1]
        cpu: dict[str, dict[int, float]] = {name: {} for name in [*trees, "driver"]}
        peak: dict[str, int] = {}
        counter.reset()
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        log = work / f"driver-{nodes}.log"
        proc = cluster.popen_driver([sys.executable, "-m", "bench.scale", "--driver", events_uri, out,
                                     str(buckets)], log)
        trees["driver"] = proc.pid
        while proc.poll() is None:
            _sample(trees, base, cpu, peak)
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{nodes} node(s): the job failed:\n{log.read_text()[-4000:]}")
        manifest = json.loads(log.read_text().strip().splitlines()[-1])
        s3 = counter.snapshot()
        cpu_by_node = {name: round(sum(v.values()), 1) for name, v in cpu.items()}
        total = sum(cpu_by_node.values())
        row = {"nodes": nodes, "cpus_per_node": cpus, "events": n_events, "rows_in": manifest["rows_in"],
               "sessions": manifest["sessions"], "wall_s": round(wall, 1), "job_s": manifest["seconds"],
               "stages_s": manifest["timings"], "cpu_s": round(total, 1), "cpu_s_by_node": cpu_by_node,
               "events_per_cpu_s": round(n_events / total) if total else None,
               "peak_rss_mb_by_node": {k: round(v / 2**20) for k, v in peak.items()},
               "shuffle_cross_node_mb": round(manifest["shuffle_bytes"]["cross_node"] / 2**20, 1),
               "shuffle_local_mb": round(manifest["shuffle_bytes"]["local"] / 2**20, 1),
               "s3_requests": s3["requests"], "s3_requests_total": s3["total"],
               "s3_mb_in": round(s3["bytes_from_s3"] / 2**20, 1), "s3_mb_out": round(s3["bytes_to_s3"] / 2**20, 1),
               "load_1m": [round(load, 1), round(os.getloadavg()[0], 1)], "sandbox": cluster.sandbox}
        row["digest"] = _digest(out)
        return row
    finally:
        cluster.stop()
        try:
            fs.delete(out)
        except OSError:
            pass


def _driver(events: str, out: str, buckets: int) -> None:
    """The job's driver on the head: the whole feature job, S3 in and out."""
    import ray

    from pipelines.features import run

    ray.init(log_to_driver=False)
    manifest = run(events, out, buckets=buckets)
    time.sleep(1.0)  # let the bench sample the workers' final CPU before the job's workers exit
    ray.shutdown()
    sys.stdout.write(json.dumps(manifest, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--driver":
        _driver(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--nodes", default="1,2,3", help="worker node counts; the first is the baseline")
    parser.add_argument("--cpus-per-node", type=float, default=2)
    parser.add_argument("--buckets", type=int, default=None, help="default: about 500k events per bucket")
    parser.add_argument("--object-store-mb", type=int, default=1536, help="per node")
    parser.add_argument("--data", default="/tmp/tdm-scale-data", help="generated events are kept here and reused")
    args = parser.parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop what we started
    from cluster.multinode import S3Server
    from pipelines.synthetic import GeneratorConfig, generate, write_partitioned
    from store import fs

    counts = [int(n) for n in args.nodes.split(",")]
    buckets = args.buckets or max(8, args.events // 500_000)
    local = Path(args.data) / f"events-{args.events}"
    if not (local / "_done").exists():
        write_partitioned(generate(GeneratorConfig(events=args.events, seed=1)), local)
        (local / "_done").touch()
    work = Path(tempfile.mkdtemp(prefix="tdm-bsc-", dir="/tmp"))
    s3 = S3Server(work / "s3").start((BUCKET,))
    rows: list[dict[str, Any]] = []
    try:
        os.environ.update(s3.env)
        fs.upload_dir(local, f"s3://{BUCKET}/events")
        fs.delete(f"s3://{BUCKET}/events/_done")
        counter = S3Counter(s3.port)
        node_env = {**s3.env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{counter.port}"}
        os.environ["AWS_ENDPOINT_URL_S3"] = node_env["AWS_ENDPOINT_URL_S3"]
        for n in counts:
            row = run_size(n, args.cpus_per_node, f"s3://{BUCKET}/events", args.events, counter, node_env, buckets,
                           args.object_store_mb, work)
            row["efficiency"] = round(rows[0]["cpu_s"] / row["cpu_s"], 3) if rows else 1.0
            row["same_rows_as_1_node"] = row["digest"] == rows[0]["digest"] if rows else True
            print(json.dumps(row))
            rows.append(row)
    finally:
        s3.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'nodes':>5} {'cpu_s':>7} {'ev/cpu_s':>9} {'eff':>6} {'wall_s':>7} {'peak RSS MB by node':<40} "
          f"{'x-node MB':>9} {'S3 req':>7} {'S3 MB in/out':>13} same")
    for r in rows:
        rss = ",".join(f"{k}:{v}" for k, v in r["peak_rss_mb_by_node"].items())
        print(f"{r['nodes']:>5} {r['cpu_s']:>7} {r['events_per_cpu_s']:>9} {r['efficiency']:>6} {r['wall_s']:>7} "
              f"{rss:<40} {r['shuffle_cross_node_mb']:>9} {r['s3_requests_total']:>7} "
              f"{r['s3_mb_in']:>6}/{r['s3_mb_out']:<6} {r['same_rows_as_1_node']}")
    same = all(r["same_rows_as_1_node"] for r in rows)
    summary = {"events": args.events, "buckets": buckets, "cpus_per_node": args.cpus_per_node,
               "runs": [{k: v for k, v in r.items() if k != "digest"} for r in rows],
               "efficiency": {str(r["nodes"]): r["efficiency"] for r in rows}, "same_rows": same, "goal": 0.8}
    print(json.dumps(summary))
    if not same:
        raise SystemExit("a multi-node run produced different rows than the 1-node run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
