"""Precompute scores, recommendations and popular items into Redis.

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]

Ray Data ``map_batches`` runs the SAME predictor classes the endpoints use
(``PropensityPredictor`` over ``FEATURES/sessions``, ``SessionRecPredictor`` over
``FEATURES/sequences``); ``store.publish.NamespaceWriter`` writes each block with
pipelined ``SET``s into a new versioned namespace, and the pointer of each
table flips only after every block succeeded. A failed run deletes its partial
namespace and leaves the old pointers, so nothing is half-published.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.features.item import popular_items
from store import codec, fs, keys, publish
from store.registry import Registry, load_predictor, resolve

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

            self.predictor: Any = load_predictor(PropensityPredictor, registry_uri, version=version)
        else:
            from models.session_rec.predictor import SessionRecPredictor

            self.predictor = load_predictor(SessionRecPredictor, registry_uri, version=version)
        self.kind, self.top_k = kind, top_k

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.kind == "propensity":
            out = self.predictor(batch)
            return pd.DataFrame({"tenant": batch["tenant"].to_numpy(), "entity": out["session_id"].to_numpy(),
                                 "value": [codec.encode_score(s) for s in out["score"]]})
        out = self.predictor(batch[["session_id", "items"]], k=self.top_k, exclude_seen=True)
        values = [codec.encode_top_k(zip(r, sc, strict=True)) for r, sc in zip(out["recs"], out["rec_scores"], strict=True)]
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


def recent_since(features: str, hours: float | None) -> pd.Timestamp | None:
    """Watermark of the feature output (a resolved version, local or s3://) minus ``hours`` (None: every session)."""
    if hours is None:
        return None
    manifest = fs.join(features, "_manifest.json")
    try:
        watermark = fs.read_json(manifest).get("watermark")
    except FileNotFoundError:
        raise FileNotFoundError(f"{manifest} not found: --recent-hours needs the feature job's manifest") from None
    return pd.Timestamp(watermark) - pd.Timedelta(hours=hours) if watermark else None


def publish_model_table(cfg: PrecomputeConfig, table: str, kind: str, source: str, version: str,
                        run_id: str) -> dict[str, int]:
    """Score ``source`` with the registry model and publish ``table``; returns rows per tenant."""
    import ray

    ns_version = keys.run_version(version, run_id)
    ds = ray.data.read_parquet(source)
    ds = ds.map_batches(_filter_tenant, fn_kwargs={"tenant": cfg.tenant}, batch_format="pandas")
    since = recent_since(fs.parent(source), cfg.recent_hours)
    if since is not None:
        ds = ds.map_batches(_recent, fn_kwargs={"since": since}, batch_format="pandas")
    ds = ds.map_batches(ScoredBatches, fn_constructor_kwargs={"kind": kind, "registry_uri": cfg.registry,
                                                              "version": version, "top_k": cfg.top_k},
                        batch_size=cfg.batch_size, batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    ds = ds.map_batches(publish.NamespaceWriter, fn_constructor_kwargs={"redis_url": cfg.redis, "table": table,
                                                                        "version": ns_version, "ttl_s": cfg.ttl},
                        batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    client = publish.connect(cfg.redis)
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


def own_popular(cfg: PrecomputeConfig, tenant: str) -> list[tuple[str, float]] | None:
    """A tenant with a recommender of its own, when the items table is not split by tenant: its
    model's training popularity, never the whole table's (which holds other tenants' items)."""
    uri, _ = resolve(cfg.registry, "recommender", tenant)
    if uri == cfg.registry:
        return None
    from models.session_rec.predictor import SessionRecPredictor

    return load_predictor(SessionRecPredictor, uri).popular(cfg.popular_k)


def publish_popular(cfg: PrecomputeConfig, source: str, run_id: str) -> int:
    import ray

    items = ray.data.read_parquet(source).to_pandas()
    tenants = sorted({publish.tenant_of(t) for t in items["tenant"]}) if "tenant" in items.columns else \
        [cfg.tenant or keys.DEFAULT_TENANT]
    if cfg.tenant is not None:
        tenants = [cfg.tenant]
    version = keys.run_version("pop", run_id)
    client = publish.connect(cfg.redis)
    try:
        for tenant in tenants:
            part = items
            if "tenant" in items.columns:
                part = items[items["tenant"].map(publish.tenant_of) == tenant]
            top = popular_items(part, cfg.popular_k)
            if "tenant" not in items.columns:
                top = own_popular(cfg, tenant) or top
            value = codec.encode_top_k(top)
            publish.write_rows(client, "popular", version, [(tenant, keys.POPULAR_ENTITY, value)], cfg.ttl)
            publish.commit(client, "popular", version, tenant, {"rows": len(top)}, cfg.ttl)
    except BaseException:
        publish.abort(client, "popular", version, tenants)
        raise
    finally:
        client.close()
    return len(tenants)


def tenants_in(features: str) -> list[str]:
    """The tenants of the session and sequence features (the default one where no column names any)."""
    import pyarrow.dataset as pads

    found: set[str] = set()
    for table in ("sessions", "sequences"):
        source = fs.join(features, table)
        if not fs.exists(source):
            continue
        filesystem, path = fs.filesystem(source)
        dataset = pads.dataset(path, filesystem=filesystem, format="parquet")
        if "tenant" not in dataset.schema.names:
            found.add(keys.DEFAULT_TENANT)
            continue
        values = dataset.to_table(columns=["tenant"]).column("tenant").unique().to_pylist()
        found.update(publish.tenant_of(v) for v in values)
    return sorted(found) or [keys.DEFAULT_TENANT]


def run(cfg: PrecomputeConfig) -> dict[str, Any]:
    """Publish every table whose inputs and model exist; log and skip the others.

    Models are per tenant (``store.registry.resolve``: a tenant's own, else the shared default).
    Without ``cfg.tenant``, data holding a tenant with models of its own is published one tenant
    at a time, each scored by its own models (``{"tenants": {tenant: report}}``); otherwise
    every tenant's rows are scored by the shared models in one pass."""
    if cfg.tenant is None:
        tenants = tenants_in(fs.resolve(cfg.features))
        if any(resolve(cfg.registry, model, t)[0] != cfg.registry for t in tenants
               for model in ("propensity", "recommender")):
            return {"tenants": {t: run(cfg.model_copy(update={"tenant": t})) for t in tenants}}
    features = fs.resolve(cfg.features)  # one version for every table, even if a newer one lands meanwhile
    run_id = uuid.uuid4().hex[:6]
    report: dict[str, Any] = {"run_id": run_id}
    plan = (("score", "propensity", fs.join(features, "sessions")),
            ("recs", "recommender", fs.join(features, "sequences")))
    for table, model, source in plan:
        if table not in cfg.tables:
            continue
        uri, _ = resolve(cfg.registry, model, cfg.tenant)
        version = Registry(uri).champion(model)
        if version is None or not fs.exists(source):
            logger.warning("skipping %s: %s", table, f"no {model} champion" if version is None
                           else f"{source} is missing")
            report[table] = "skipped"
            continue
        report[table] = {"model_version": version, "registry": uri,
                         "rows": publish_model_table(cfg.model_copy(update={"registry": uri}), table, model,
                                                     source, version, run_id)}
    if "popular" in cfg.tables:
        source = fs.join(features, "items")
        if fs.exists(source):
            report["popular"] = {"tenants": publish_popular(cfg, source, run_id)}
        else:
            logger.warning("skipping popular: %s is missing", source)
            report["popular"] = "skipped"
    return report
