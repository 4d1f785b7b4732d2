"""Precompute scores, recommendations and popular items into Redis.

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]

Ray Data ``map_batches`` runs the SAME predictor classes the endpoints use
(``PropensityPredictor`` over ``FEATURES/sessions``, ``SessionRecPredictor`` over
``FEATURES/sequences``); ``jobs.publish.NamespaceWriter`` writes each block with
pipelined ``SET``s into a new versioned namespace, and the pointer of each
table flips only after every block succeeded. A failed run deletes its partial
namespace and leaves the old pointers, so nothing is half-published.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from jobs import publish
from models import keys
from models.registry import Registry

logger = logging.getLogger(__name__)


class PrecomputeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: str
    registry: str
    redis: str
    tenant: str | None = None
    ttl: int = Field(publish.DEFAULT_TTL_S, ge=60)
    top_k: int = Field(20, ge=1, le=200)
    popular_k: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(2048, ge=1)
    tables: list[str] = Field(default_factory=lambda: ["score", "recs", "popular"])
    actor_cpus: float = Field(0.5, gt=0, description="CPUs per predictor / writer actor (leave room for reads)")
    recent_hours: float | None = Field(None, gt=0, description="only sessions active this close to the watermark")


class ScoredBatches:
    """Ray Data callable: a registry predictor's ``__call__`` with ``tenant`` carried through."""

    def __init__(self, kind: str, registry_uri: str, version: str, top_k: int = 20):
        if kind == "propensity":
            from models.propensity.predictor import PropensityPredictor

            self.predictor: Any = PropensityPredictor.from_registry(registry_uri, version=version)
        else:
            from models.session_rec.predictor import SessionRecPredictor

            self.predictor = SessionRecPredictor.from_registry(registry_uri, version=version)
        self.kind, self.top_k = kind, top_k

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.kind == "propensity":
            out = self.predictor(batch)
            return pd.DataFrame({"tenant": batch["tenant"].to_numpy(), "entity": out["session_id"].to_numpy(),
                                 "value": [repr(float(s)) for s in out["score"]]})
        out = self.predictor(batch[["session_id", "items"]], k=self.top_k, exclude_seen=True)
        values = [json.dumps([[i, float(s)] for i, s in zip(r, sc, strict=True)], separators=(",", ":"))
                  for r, sc in zip(out["recs"], out["rec_scores"], strict=True)]
        return pd.DataFrame({"tenant": batch["tenant"].to_numpy(), "entity": out["session_id"].to_numpy(),
                             "value": values})


def _filter_tenant(batch: pd.DataFrame, tenant: str | None) -> pd.DataFrame:
    if "tenant" not in batch.columns:
        batch = batch.assign(tenant=None)
    batch = batch.assign(tenant=batch["tenant"].map(publish.tenant_of))
    return batch if tenant is None else batch[batch["tenant"] == tenant]


def _recent(batch: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Rows whose session was active at or after ``since`` (cutoff_time or last_time)."""
    col = "cutoff_time" if "cutoff_time" in batch.columns else "last_time"
    return batch[pd.to_datetime(batch[col], utc=True) >= since]


def recent_since(features: Path, hours: float | None) -> pd.Timestamp | None:
    """Watermark of the feature output minus ``hours`` (None: every session)."""
    if hours is None:
        return None
    manifest = features / "_manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} not found: --recent-hours needs the feature job's manifest")
    watermark = json.loads(manifest.read_text()).get("watermark")
    return pd.Timestamp(watermark) - pd.Timedelta(hours=hours) if watermark else None


def publish_model_table(cfg: PrecomputeConfig, table: str, kind: str, source: Path, version: str,
                        run_id: str) -> dict[str, int]:
    """Score ``source`` with the registry model and publish ``table``; returns rows per tenant."""
    import ray

    ns_version = keys.run_version(version, run_id)
    ds = ray.data.read_parquet(str(source))
    ds = ds.map_batches(_filter_tenant, fn_kwargs={"tenant": cfg.tenant}, batch_format="pandas")
    since = recent_since(Path(cfg.features), cfg.recent_hours)
    if since is not None:
        ds = ds.map_batches(_recent, fn_kwargs={"since": since}, batch_format="pandas")
    ds = ds.map_batches(ScoredBatches, fn_constructor_kwargs={"kind": kind, "registry_uri": cfg.registry,
                                                              "version": version, "top_k": cfg.top_k},
                        batch_size=cfg.batch_size, batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    ds = ds.map_batches(publish.NamespaceWriter, fn_constructor_kwargs={"redis_url": cfg.redis, "table": table,
                                                                        "version": ns_version, "ttl_s": cfg.ttl},
                        batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    client = publish._client(cfg.redis)
    counts: dict[str, int] = {}
    try:
        for row in ds.iter_rows():
            counts[row["tenant"]] = counts.get(row["tenant"], 0) + int(row["rows"])
        for tenant, rows in sorted(counts.items()):
            publish.commit(client, table, ns_version, tenant, {"rows": rows, "model_version": version,
                                                               "source": str(source)}, cfg.ttl)
    except BaseException:
        publish.abort(client, table, ns_version, counts or [cfg.tenant or keys.DEFAULT_TENANT])
        raise
    finally:
        client.close()
    return counts


def popular_table(items: pd.DataFrame, k: int) -> list[tuple[str, float]]:
    """Top-k items by purchases then views (the first popularity columns present)."""
    cols = [c for c in ("purchases_7d", "carts_7d", "views_7d", "purchases", "views", "popularity", "count")
            if c in items.columns]
    if not cols or "item_id" not in items.columns:
        raise ValueError(f"items table has no popularity column; columns are {list(items.columns)}")
    weights = {"purchases_7d": 10.0, "carts_7d": 3.0, "purchases": 10.0}
    score = sum(pd.to_numeric(items[c], errors="coerce").fillna(0.0) * weights.get(c, 1.0) for c in cols)
    top = items.assign(_score=score).sort_values(["_score", "item_id"], ascending=[False, True]).head(k)
    peak = float(top["_score"].max() or 1.0) or 1.0
    return [(str(i), float(s) / peak) for i, s in zip(top["item_id"], top["_score"], strict=True)]


def publish_popular(cfg: PrecomputeConfig, source: Path, run_id: str) -> int:
    import ray

    items = ray.data.read_parquet(str(source)).to_pandas()
    tenants = sorted({publish.tenant_of(t) for t in items["tenant"]}) if "tenant" in items.columns else \
        [cfg.tenant or keys.DEFAULT_TENANT]
    if cfg.tenant is not None:
        tenants = [cfg.tenant]
    version = keys.run_version("pop", run_id)
    client = publish._client(cfg.redis)
    try:
        for tenant in tenants:
            part = items
            if "tenant" in items.columns:
                part = items[items["tenant"].map(publish.tenant_of) == tenant]
            top = popular_table(part, cfg.popular_k)
            value = json.dumps([[i, s] for i, s in top], separators=(",", ":"))
            publish.write_rows(client, "popular", version, [(tenant, keys.POPULAR_ENTITY, value)], cfg.ttl)
            publish.commit(client, "popular", version, tenant, {"rows": len(top)}, cfg.ttl)
    except BaseException:
        publish.abort(client, "popular", version, tenants)
        raise
    finally:
        client.close()
    return len(tenants)


def run(cfg: PrecomputeConfig) -> dict[str, Any]:
    """Publish every table whose inputs and model exist; log and skip the others."""
    features = Path(cfg.features)
    registry = Registry(cfg.registry)
    run_id = uuid.uuid4().hex[:6]
    report: dict[str, Any] = {"run_id": run_id}
    plan = (("score", "propensity", features / "sessions"), ("recs", "recommender", features / "sequences"))
    for table, model, source in plan:
        if table not in cfg.tables:
            continue
        version = registry.champion(model)
        if version is None or not source.exists():
            logger.warning("skipping %s: %s", table, f"no {model} champion" if version is None
                           else f"{source} is missing")
            report[table] = "skipped"
            continue
        report[table] = {"model_version": version, "rows": publish_model_table(cfg, table, model, source,
                                                                              version, run_id)}
    if "popular" in cfg.tables:
        source = features / "items"
        if source.exists():
            report["popular"] = {"tenants": publish_popular(cfg, source, run_id)}
        else:
            logger.warning("skipping popular: %s is missing", source)
            report["popular"] = "skipped"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature job output (sessions/, sequences/, items/)")
    parser.add_argument("--registry", required=True, help="model registry URI")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--tenant", default=None, help="publish only this tenant's rows")
    parser.add_argument("--ttl", type=int, default=publish.DEFAULT_TTL_S, help="TTL of published rows (s)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--popular-k", type=int, default=100)
    parser.add_argument("--tables", default="score,recs,popular")
    parser.add_argument("--recent-hours", type=float, default=None,
                        help="only sessions active within this many hours of the feature watermark")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PrecomputeConfig(features=ns.features, registry=ns.registry, redis=ns.redis, tenant=ns.tenant,
                           ttl=ns.ttl, top_k=ns.top_k, popular_k=ns.popular_k,
                           tables=[t for t in ns.tables.split(",") if t], recent_hours=ns.recent_hours)
    logger.info("precompute config: %s", cfg.model_dump())
    import ray

    if not ray.is_initialized():
        ray.init()
    report = run(cfg)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
