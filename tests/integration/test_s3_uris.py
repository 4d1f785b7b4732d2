"""``s3://`` URIs end to end against a real S3 API (moto's server on loopback, started here).

pyarrow's S3 filesystem reads the endpoint from ``AWS_ENDPOINT_URL_S3``, exactly as it
would read a MinIO or AWS endpoint, so ingest, the feature job's file listing and the
registry run their real code paths; nothing is mocked inside tandem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

BUCKET = "tandem-it"
RETAILROCKET_CSV = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1433221332117,257597,view,355908,\n"
    "1433224214164,257597,addtocart,248676,\n"
    "1433221999827,111016,view,318965,\n"
    "1433221955914,111016,transaction,318965,4000\n"
    "not-a-time,111016,view,1,\n"
    "1433221955914,,view,2,\n"
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pafs.S3FileSystem]:
    from cluster.multinode import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in server.env}
    try:
        try:
            server.start((BUCKET,))
        except RuntimeError as exc:
            if "not installed" in str(exc):
                pytest.skip(str(exc))
            raise
        os.environ.update(server.env)
        yield server.filesystem()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def put(fs: pafs.S3FileSystem, key: str, data: bytes) -> str:
    with fs.open_output_stream(f"{BUCKET}/{key}") as f:
        f.write(data)
    return f"s3://{BUCKET}/{key}"


def test_ingest_reads_s3_and_quarantines_bad_rows(s3: pafs.S3FileSystem, tmp_path: Path) -> None:
    from pipelines import ingest

    put(s3, "raw/retailrocket/events.csv", RETAILROCKET_CSV.encode())
    out = tmp_path / "events"
    summary = ingest.run("retailrocket", [f"s3://{BUCKET}/raw/retailrocket/"], out)
    assert summary["rows_in"] == 6 and summary["rows_out"] == 4, summary
    assert summary["quarantined"] == {"bad_time": 1, "missing_user_id": 1}, summary
    events = pq.read_table(out).to_pandas()
    assert sorted(events["item_id"]) == ["248676", "318965", "318965", "355908"]
    quarantine = pq.read_table(tmp_path / "events_quarantine" / "quarantine.parquet").to_pandas()
    assert set(quarantine["reason"]) == {"bad_time", "missing_user_id"}
    assert set(quarantine["source_file"]) == {f"s3://{BUCKET}/raw/retailrocket/events.csv"}, quarantine


def test_feature_job_lists_and_plans_event_files_on_s3(s3: pafs.S3FileSystem, tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow as pa

    from pipelines.feature_tasks import list_event_files, plan_reads

    table = pa.table({"x": list(range(10))})
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        with s3.open_output_stream(f"{BUCKET}/events/date={day}/part-0.parquet") as f:
            pq.write_table(table, f)
    files = list_event_files(f"s3://{BUCKET}/events", first_day=pd.Timestamp("2026-11-02", tz="UTC"))
    assert files == [f"s3://{BUCKET}/events/date=2026-11-02/part-0.parquet",
                     f"s3://{BUCKET}/events/date=2026-11-03/part-0.parquet"], files
    tasks = plan_reads(files, rows_per_task=1000)       # reads each file's footer from S3
    assert [(t["path"], t["row_groups"]) for t in tasks] == [(f, [0]) for f in files], tasks


def test_registry_on_s3_registers_fetches_promotes_and_rolls_back(s3: pafs.S3FileSystem, tmp_path: Path) -> None:
    from store.registry import Registry

    reg = Registry(f"s3://{BUCKET}/registry")
    versions = []
    for i in range(2):
        art = tmp_path / f"art{i}"
        (art / "sub").mkdir(parents=True)
        (art / "model.txt").write_text(f"model {i}")
        (art / "sub" / "meta.json").write_text("{}")
        mv = reg.register("propensity", art, {"i": i})
        reg.set_champion("propensity", mv.version, f"v{i}")
        versions.append(mv.version)
    assert reg.champion("propensity") == versions[1]
    local = reg.fetch("propensity", None, tmp_path / "cache")
    assert (local / "model.txt").read_text() == "model 1" and (local / "sub" / "meta.json").exists()
    assert reg.rollback("propensity") == versions[0]
    assert reg.champion("propensity") == versions[0]
    assert (reg.fetch("propensity", None, tmp_path / "cache") / "model.txt").read_text() == "model 0"


def test_publication_on_s3_writes_the_pointer_last_and_gc_removes_orphans(s3: pafs.S3FileSystem) -> None:
    import time

    from store import fs

    out = f"s3://{BUCKET}/pub/features"
    pub = fs.Publication(out)
    assert pub.current() is None and fs.resolve(f"{out}/sessions") == f"{out}/sessions"
    old = [time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 600 + i)) + f"-00000{i}" for i in range(4)]
    for i, run_id in enumerate(old[:3]):
        v = pub.begin(run_id)
        fs.write_bytes(fs.join(v, "sessions", "part-0.parquet"), f"v{i}".encode())
        assert fs.resolve(f"{out}/sessions") != fs.join(v, "sessions")   # invisible until committed
        pub.commit(v)
        assert fs.read_bytes(fs.join(fs.resolve(f"{out}/sessions"), "part-0.parquet")) == f"v{i}".encode()
    crashed = pub.begin(old[3])                                          # a run killed before its commit
    fs.write_bytes(fs.join(crashed, "sessions", "part-0.parquet"), b"half")
    assert fs.read_json(f"{out}/_CURRENT")["version"] == old[2] and pub.history() == [old[1], old[0]]
    assert sorted(pub.gc(keep=2)) == [old[0], old[3]]
    assert fs.list_dirs(f"{out}/_versions") == [old[1], old[2]]
    assert fs.read_bytes(fs.join(fs.resolve(out), "sessions", "part-0.parquet")) == b"v2"


def test_ingest_publishes_to_s3_and_the_feature_job_lists_it(s3: pafs.S3FileSystem) -> None:
    from jobs import ingest
    from pipelines.feature_tasks import list_event_files
    from store import fs

    put(s3, "raw2/events.csv", RETAILROCKET_CSV.encode())
    summary = ingest.main(["--format", "retailrocket", "--input", f"s3://{BUCKET}/raw2/",
                           "--out", f"s3://{BUCKET}/canonical", "--json"])
    assert summary == 0
    version = fs.resolve(f"s3://{BUCKET}/canonical")
    assert version.startswith(f"s3://{BUCKET}/canonical/_versions/")
    files = list_event_files(f"s3://{BUCKET}/canonical")
    assert files and all(f.startswith(version) for f in files)
    quarantine = fs.resolve(f"s3://{BUCKET}/canonical_quarantine")
    assert fs.exists(fs.join(quarantine, "quarantine.parquet"))
    assert not Path("s3:").exists()   # never the squashed local path ./s3:/...


def test_experiment_store_drain_and_report_on_s3(s3: pafs.S3FileSystem, redis_client: object) -> None:
    """Experiment configs next to an s3:// registry; the drain's Parquet logs and the KPI report on s3://."""
    import time

    from models.experiments.config import load_config
    from pipelines import experiments, exposures
    from store import explog
    from store.experiments import ExperimentStore

    store = ExperimentStore(f"s3://{BUCKET}/exp-registry")
    cfg = load_config({"tenant": "acme", "experiment_id": "e1", "salt": "s", "variants": [
        {"name": "control", "policy": "popular", "share": 0.5}, {"name": "model", "policy": "model", "share": 0.5}]})
    store.put(cfg, reason="start", by="test")
    assert store.kill("acme", "by hand").revision == 2 and store.tenants() == ["acme"]
    cur = store.current("acme")
    assert cur is not None and cur.config is not None and cur.config.kill_switch.engaged
    now = int(time.time() * 1000)
    explog.append(redis_client, "exposures", "acme", (explog.exposure(
        "acme", "e1", "control" if i % 2 else "model", f"s{i}", None, ["a"], None, "popular", "recommend", now + i,
        "w", i) for i in range(300)), maxlen=10_000)
    logs = f"s3://{BUCKET}/experiment_logs"
    drained = exposures.drain(redis_client, logs, ["acme"], batch=100)
    exp = next(d for d in drained if d.kind == "exposures")
    assert exp.written == 300 and len(exp.files) == 3 and exp.error is None
    assert all(f.startswith(f"{BUCKET}/experiment_logs/acme/exposures/date=") for f in exp.files)
    assert exposures.read_logs(logs, "acme").exposures.num_rows == 300
    analysis = experiments.analyse(logs, cfg)
    page = experiments.write_report(analysis, f"{logs}/acme/reports/e1.html")
    with s3.open_input_stream(page.removeprefix("s3://")) as f:
        assert b'class="plot"' in f.read()
