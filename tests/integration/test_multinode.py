"""The whole pipeline on a real multi-node Ray cluster over a real S3 API, as users deploy it.

``cluster.multinode`` starts a head with 0 CPUs and two 2-CPU workers with ``ray start``
(own temp dirs, ports and process groups) and moto's S3 server on loopback. Each node runs
in its own mount namespace where everything but its scratch directory is READ-ONLY, so a
task that writes anywhere else, or that expects to read a file another node wrote, fails
here as it would on separate machines. Jobs run as drivers on the head (``RAY_ADDRESS``),
exactly as ``ray job submit`` runs them, with only S3 URIs on their command lines, and the
tests read every output back through S3.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.local import free_port
from cluster.multinode import MultiNodeCluster, S3Server

pytestmark = [pytest.mark.slow]

BUCKET = "tdm-multinode"
S3 = f"s3://{BUCKET}"
API_KEY = "mn-key"
# The GCS notices a lost node in ~3 s instead of ~30 s (the kill test waits for it).
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}


@dataclass
class Env:
    cluster: MultiNodeCluster
    s3: S3Server
    redis: str

    def job(self, module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
        """Run ``python -m module args`` as a driver on the head; returns its last JSON line."""
        proc = self.cluster.run_driver([sys.executable, "-m", module, *args], timeout=timeout)
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def env(redis_server: str) -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="tdm-mn-", dir="/tmp"))  # short: Unix socket paths
    s3 = S3Server(root / "s3")
    cluster = MultiNodeCluster(root / "c", head_env=FAST_NODE_DEATH)
    saved: dict[str, str | None] = {}
    try:
        s3.start((BUCKET,))
        cluster.env.update(s3.env)  # every node and driver gets the S3 settings, as from a Secret
        saved = {k: os.environ.get(k) for k in s3.env}
        os.environ.update(s3.env)   # this process reads the outputs back through S3
        cluster.start(workers=2, cpus_per_worker=2)  # 1-CPU nodes cannot host a Ray Data read beside two 0.5-CPU actors
        yield Env(cluster, s3, redis_server)
    finally:
        cluster.stop()
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def retailrocket_csv(table: pa.Table) -> bytes:
    """Synthetic canonical events as a RetailRocket export (the raw format users ingest)."""
    df = table.select(["event_time", "user_id", "session_id", "event_type", "item_id"]).to_pandas()
    df = df[df["event_type"].isin(["view", "cart", "purchase"])]
    out = pd.DataFrame({
        "timestamp": (pd.to_datetime(df["event_time"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms"),
        "visitorid": df["user_id"].fillna(df["session_id"]).astype(str).str.replace(r"\D", "", regex=True)
        .str[-9:].replace("", "0"),
        "event": df["event_type"].map({"view": "view", "cart": "addtocart", "purchase": "transaction"}),
        "itemid": df["item_id"].astype(str).str.replace(r"\D", "", regex=True).replace("", "0"),
        "transactionid": ["" if e != "purchase" else str(i) for i, e in enumerate(df["event_type"])],
    })
    return out.to_csv(index=False).encode()


def s3_table(uri: str) -> pd.DataFrame:
    """A table read back through S3 only, following the publication pointer."""
    from store import fs

    paths = fs.list_files(fs.resolve(uri), suffix=".parquet")
    assert paths, f"no Parquet files at {uri}"
    return pa.concat_tables([pq.read_table(fs.open_input_file(p)) for p in paths],
                            promote_options="default").to_pandas()


def sorted_rows(df: pd.DataFrame) -> pd.DataFrame:
    cols = sorted(c for c in df.columns if c != "date")
    return df[cols].sort_values("session_id").reset_index(drop=True)


@pytest.mark.timeout(1800)  # a few minutes on an idle 2-core box; a box shared with other work needs more
def test_pipeline_on_three_nodes_over_s3(env: Env) -> None:
    from pipelines.synthetic import GeneratorConfig, generate
    from store import fs
    from store.registry import Registry

    table = generate(GeneratorConfig(events=24_000, seed=5, days=6, items=800, start="2026-11-01"))
    day = pd.to_datetime(table["event_time"].to_pandas(), utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    fs.write_bytes(f"{S3}/raw/part-1.csv", retailrocket_csv(table.filter(pa.array(day < "2026-11-06"))))

    # ingest -> features (full) -> more raw data -> ingest -> features (incremental)
    first = env.job("jobs.ingest", "--format", "retailrocket", "--input", f"{S3}/raw/", "--out", f"{S3}/events",
                    "--json")
    assert first["rows_out"] > 0 and fs.exists(f"{S3}/events/_CURRENT")
    full = env.job("jobs.features", "--events", f"{S3}/events", "--out", f"{S3}/features", "--json")
    assert full["sessions"] > 0
    fs.write_bytes(f"{S3}/raw/part-2.csv", retailrocket_csv(table.filter(pa.array(day >= "2026-11-06"))))
    second = env.job("jobs.ingest", "--format", "retailrocket", "--input", f"{S3}/raw/", "--out", f"{S3}/events",
                     "--json")
    assert second["rows_out"] > first["rows_out"]
    inc = env.job("jobs.features", "--events", f"{S3}/events", "--out", f"{S3}/features", "--incremental", "--json")
    manifest = fs.read_json(fs.join(fs.resolve(f"{S3}/features"), "_manifest.json"))
    assert manifest["since"] is not None and manifest["input_files"] < second["partitions"], manifest
    # the stages really ran on both workers: part of the shuffle crossed nodes through the object store
    assert manifest["shuffle_bytes"]["cross_node"] > 0, manifest["shuffle_bytes"]
    recomputed = env.job("jobs.features", "--events", f"{S3}/events", "--out", f"{S3}/features-full", "--json")
    sessions = s3_table(f"{S3}/features/sessions")
    assert 0 < inc["sessions"] < len(sessions) == recomputed["sessions"]   # only recent days were recomputed
    ours, full_rows = sorted_rows(sessions), sorted_rows(s3_table(f"{S3}/features-full/sessions"))
    label = "purchase_within_7d"  # carried-over days keep their label (a later purchase is not looked back at)
    pd.testing.assert_frame_equal(ours.drop(columns=[label]), full_rows.drop(columns=[label]))
    recent = pd.to_datetime(ours["cutoff_time"], utc=True) >= pd.Timestamp(manifest["since"]).floor("D")
    assert recent.any() and ours[label][recent].equals(full_rows[label][recent])
    assert len(fs.list_dirs(f"{S3}/features/_versions")) == 2      # both runs kept, nothing orphaned

    # train both models on the S3 features (Train workers on both nodes), register on S3
    registry = f"{S3}/registry"
    prop = env.job("jobs.train_propensity", "--features", f"{S3}/features/sessions", "--label",
                   "purchase_within_7d", "--time-column", "cutoff_time", "--registry", registry, "--rounds", "30",
                   "--json")
    rec = env.job("jobs.train_recommender", "--train", f"{S3}/features/sequences", "--format", "parquet",
                  "--model", "gru4rec", "--smoke-test", "--workers", "2", "--registry", registry, "--json")
    reg = Registry(registry)
    assert reg.champion("propensity") == prop["version"] and reg.champion("recommender") == rec["version"]
    assert not fs.list_dirs(f"{registry}/_runs/propensity")    # Train checkpoints went through S3 and were removed

    # precompute from S3 into Redis, then serve it
    pre = env.job("jobs.precompute", "--features", f"{S3}/features", "--registry", registry, "--redis", env.redis,
                  "--json")
    assert sum(pre["score"]["rows"].values()) == len(sessions), pre
    port = free_port()
    deploy = (
        "import ray, sys; from ray import serve; from serve.app import build_app\n"
        "ray.init()\n"
        f"serve.start(http_options={{'host': '127.0.0.1', 'port': {port}}}, proxy_location='HeadOnly')\n"
        f"serve.run(build_app({{'registry_uri': '{registry}', 'redis_url': '{env.redis}', "
        f"'api_keys': {{'{API_KEY}': 'default'}}, 'deadline_ms': 2000}}), name='tandem', route_prefix='/')\n")
    env.cluster.run_driver([sys.executable, "-c", deploy], timeout=300)
    session = sessions["session_id"].iloc[0]
    with httpx.Client(timeout=10) as c:
        score = c.post(f"http://127.0.0.1:{port}/v1/score", json={"session_id": session},
                       headers={"X-API-Key": API_KEY})
    assert score.status_code == 200, score.text
    assert score.json()["source"] == "precomputed" and score.json()["model_version"] == prop["version"]


def test_a_task_cannot_write_outside_its_node_scratch(env: Env, tmp_path: Path) -> None:
    """The sandbox that makes the pipeline test fail on any stray local write really bites."""
    if not env.cluster.sandbox:
        pytest.skip(f"per-node sandboxes unavailable: {env.cluster.sandbox_reason}")
    target = tmp_path / "written-by-a-task"
    code = (
        "import os, ray, json, tempfile\n"
        "ray.init()\n"
        "@ray.remote(num_cpus=1)\n"
        "def probe(path):\n"
        "    with tempfile.NamedTemporaryFile() as f: f.write(b'scratch is writable')\n"
        "    try:\n"
        "        open(path, 'w').write('x'); outside = 'written'\n"
        "    except OSError as e: outside = e.strerror\n"
        "    return ray.get_runtime_context().get_node_id(), os.environ['TMPDIR'], outside\n"
        f"print(json.dumps(ray.get([probe.remote({str(target)!r}) for _ in range(6)])))\n")
    out = json.loads(env.cluster.run_driver([sys.executable, "-c", code]).stdout.strip().splitlines()[-1])
    assert {o[2] for o in out} == {"Read-only file system"} and not target.exists()
    assert all(o[1].startswith(str(env.cluster.root)) for o in out)
    # and a job pointed at a local path instead of the store fails instead of writing there
    failed = env.cluster.run_driver([sys.executable, "-m", "jobs.features", "--events", f"{S3}/events",
                                     "--out", str(tmp_path / "features")], check=False)
    assert failed.returncode != 0 and "Read-only file system" in failed.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.timeout(900)
def test_killing_a_worker_node_mid_run_retries_or_publishes_nothing(env: Env) -> None:
    """A third worker joins, is SIGKILLed while the feature job's stage 2 runs, and the job
    either succeeds by retrying (then its rows equal an undisturbed run's) or fails with
    nothing published. Ray rebuilds the lost stage-1 objects from lineage, so we expect the
    retried success; the outcome is printed either way."""
    from pipelines.synthetic import GeneratorConfig, generate, write_partitioned
    from store import fs

    write_partitioned(generate(GeneratorConfig(events=240_000, seed=8, days=3, items=3000)), f"{S3}/kill/events")
    args = ["--events", f"{S3}/kill/events", "--buckets", "24", "--json"]
    reference = env.job("jobs.features", *args, "--out", f"{S3}/kill/reference")
    env.cluster.add_worker("victim", cpus=1)
    log = env.cluster.root / "kill-driver.log"
    proc = env.cluster.popen_driver([sys.executable, "-m", "jobs.features", *args, "--out", f"{S3}/kill/out"], log)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:   # stage 2 writes its first sequences
        staged = [v for v in fs.list_dirs(f"{S3}/kill/out/_versions")]
        if staged and fs.list_files(f"{S3}/kill/out/_versions/{staged[0]}/sequences"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the job ended before the kill: {log.read_text()[-3000:]}"
    env.cluster.kill_node("victim")
    rc = proc.wait(timeout=400)
    outcome = "retried success" if rc == 0 else "failed, nothing published"
    print(f"node-kill outcome: {outcome} (exit {rc})")
    if rc == 0:
        assert sorted_rows(s3_table(f"{S3}/kill/out/sessions")).equals(
            sorted_rows(s3_table(f"{S3}/kill/reference/sessions"))), "retried run differs from the reference"
        assert json.loads(log.read_text().strip().splitlines()[-1])["sessions"] == reference["sessions"]
    else:
        assert not fs.exists(f"{S3}/kill/out/_CURRENT"), "a failed run published a version"
        assert fs.resolve(f"{S3}/kill/out/sessions") == f"{S3}/kill/out/sessions"
