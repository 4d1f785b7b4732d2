"""Drain the experiment logs (exposures, outcomes) from Redis Streams to Parquet (the CLI; library:
``pipelines.exposures``; the refresh loop runs the same drain on every tick).

    python -m jobs.drain_exposures --redis URL --registry URI --logs URI [--tenant T] [--every S] [--json]

Exposures come from the replicas' exposure streams, outcomes (clicks, carts, purchases with
revenue) from the tenant's live-event stream that ``/v1/events`` writes. At least once,
idempotent: each batch is written durably (``<logs>/<tenant>/<kind>/date=.../``) before it is
acknowledged (and, for exposures, removed from its stream); a drain that dies in between writes it
again next time and readers drop the duplicate stream ids. The tenants are those with an
experiment in the registry (``--tenant`` for one). ``--every S`` keeps draining every S seconds
(``--max-runs`` bounds it); without it, one pass.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pipelines import entrypoint, exposures
from store.experiments import ExperimentStore

logger = logging.getLogger(__name__)


class Config(BaseModel, extra="forbid"):
    redis: str = Field(description="redis://host:port/db of the serving app")
    registry: str = Field(description="registry URI (the tenants with an experiment)")
    logs: str = Field(description="where the Parquet logs go (local dir or s3://)")
    tenant: str | None = None
    batch: int = Field(exposures.DEFAULT_BATCH, ge=1, le=1_000_000, description="stream entries per Parquet file")
    every: float = Field(0.0, ge=0, description="seconds between passes (0: one pass)")
    max_runs: int = Field(0, ge=0, description="stop after this many passes (0: no limit with --every)")
    smoke_test: bool = False


def run(cfg: Config) -> dict[str, Any]:
    from store.publish import connect

    client = connect(cfg.redis)
    store = ExperimentStore(cfg.registry)
    totals: dict[str, dict[str, Any]] = {}
    runs = 0
    try:
        while True:
            tenants = [cfg.tenant] if cfg.tenant else store.tenants()
            for d in exposures.drain(client, cfg.logs, tenants, batch=cfg.batch):
                t = totals.setdefault(f"{d.tenant}/{d.kind}", {"read": 0, "written": 0, "files": 0, "quarantined": {}})
                t["read"] += d.read
                t["written"] += d.written
                t["files"] += len(d.files)
                t["backlog"] = d.backlog
                t["error"] = d.error
                for reason, n in d.quarantined.items():
                    t["quarantined"][reason] = t["quarantined"].get(reason, 0) + n
            runs += 1
            if not cfg.every or (cfg.max_runs and runs >= cfg.max_runs):
                break
            time.sleep(cfg.every)
    finally:
        client.close()
    failed = sorted(k for k, t in totals.items() if t.get("error"))
    return {"runs": runs, "logs": cfg.logs, "streams": totals, "failed": failed}


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", help="redis://host:port/db")
    p.add_argument("--registry", help="registry URI (tenants with an experiment)")
    p.add_argument("--logs", help="Parquet log root (local dir or s3://)")
    p.add_argument("--tenant", help="drain this tenant only")
    p.add_argument("--batch", type=int, help=f"entries per file (default {exposures.DEFAULT_BATCH})")
    p.add_argument("--every", type=float, help="seconds between passes (default: one pass)")
    p.add_argument("--max-runs", type=int, help="passes at most with --every")


def fill_smoke(values: dict[str, Any], tmp: Path) -> Callable[[], None] | None:
    """A private redis-server with a few exposures and outcomes of a fresh experiment."""
    from models.experiments.config import ExperimentConfig
    from pipelines import smoke
    from store import explog, keys
    from store.publish import connect

    stop = None
    if "redis" not in values:
        values["redis"], stop = smoke.private_redis(tmp / "redis")
    values.setdefault("registry", str(tmp / "registry"))
    values.setdefault("logs", str(tmp / "logs"))
    store = ExperimentStore(values["registry"])
    if not store.tenants():
        store.put(ExperimentConfig.model_validate({
            "experiment_id": "smoke", "salt": "s", "variants": [
                {"name": "control", "policy": "popular", "share": 0.5},
                {"name": "model", "policy": "model", "share": 0.5}]}), reason="smoke test", by="smoke")
        client = connect(values["redis"])
        now = int(time.time() * 1000)
        explog.append(client, "exposures", "default", (explog.exposure(
            "default", "smoke", "control" if i % 2 else "model", f"s{i}", None, ["i1", "i2"], None, "popular",
            "recommend", now, "smoke", i) for i in range(20)), maxlen=1000)
        for i in range(5):  # outcomes are the tenant's live events, as /v1/events stores them
            client.xadd(keys.events_stream_key("default"), explog.event_entry(f"s{i}", "i1", "purchase", now, 10.0))
        client.close()
    return stop


JOB = entrypoint.Job(prog="python -m jobs.drain_exposures", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, smoke=fill_smoke, exit_code=lambda r: 1 if r["failed"] else 0)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
