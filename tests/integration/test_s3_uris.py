"""``s3://`` URIs end to end against a real S3 API (moto's server on loopback, started here).

pyarrow's S3 filesystem reads the endpoint from ``AWS_ENDPOINT_URL_S3``, exactly as it
would read a MinIO or AWS endpoint, so ingest, the feature job's file listing and the
registry run their real code paths; nothing is mocked inside tandem.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from cluster.local import free_port

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
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        pytest.skip("moto_server is not installed (pip install -e '.[dev]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_REGION", "AWS_EC2_METADATA_DISABLED")}
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        os.environ.update({"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
                           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="test",
                               secret_key="test", region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield fs
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


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
