"""Precompute scores, recommendations and popular items into Redis.

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]

The SAME predictor classes the endpoints use (``PropensityPredictor`` over
``FEATURES/sessions``, ``SessionRecPredictor`` over ``FEATURES/sequences``) score the
sessions; ``store.publish`` writes the rows with pipelined ``SET``s into a new versioned
namespace per table and tenant, and each tenant's pointer flips (fenced by the run's lease,
``store.lease``) only after all its rows are written.

Two engines run the same predictors: Ray Data ``map_batches`` (predictor and writer actors)
for large inputs, and in-process batches for the few thousand sessions of a refresh
window, where starting actors would cost more than the scoring (``engine="auto"`` picks by
row count; a ``Predictors`` pool keeps loaded models across ticks).

Publication is two steps, so a slow tick can write a candidate model's tables before it
promotes the model: ``write`` fills new namespaces without moving a pointer, ``commit``
flips them. Each tenant commits on its own: one tenant's failure is reported and its
partial namespace deleted, while the others go live (a namespace that a pointer serves is
never deleted). Rows whose tenant id cannot be a key part are counted, never written.

Models are per tenant (``store.registry.resolve``): a tenant with a model of its own is scored
by it into a namespace of its own, every other tenant by the shared default. Inputs are read
through ``store.fs`` (a local directory or ``s3://``, one resolved feature version per run).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import pyarrow.dataset as pads
from pydantic import BaseModel, ConfigDict, Field

from models.features.item import popular_items
from store import codec, fs, keys, publish
from store.lease import FencedOut, Lease
from store.registry import Registry, load_predictor, resolve

logger = logging.getLogger(__name__)

MODEL_TABLES = (("score", "propensity", "sessions", "cutoff_time"), ("recs", "recommender", "sequences", "last_time"))


class PrecomputeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: str
    registry: str
    redis: str
    tenant: str | None = None
    ttl: int | None = Field(None, ge=60, description="row TTL in s (default: ttl_cadences x cadence_s)")
    cadence_s: float = Field(publish.DEFAULT_CADENCE_S, gt=0, description="how often this publication repeats")
    ttl_cadences: float = Field(publish.DEFAULT_TTL_CADENCES, gt=1)
    top_k: int = Field(20, ge=1, le=200)
    popular_k: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(2048, ge=1)
    tables: list[str] = Field(default_factory=lambda: ["score", "recs", "popular"])
    actor_cpus: float = Field(0.5, gt=0, description="CPUs per predictor / writer actor (leave room for reads)")
    recent_hours: float | None = Field(None, gt=0, description="only sessions active this close to the watermark")
    since: datetime | None = Field(None, description="only sessions active at or after this time (UTC)")
    versions: dict[str, str] = Field(default_factory=dict, description="pinned model versions (default: champions)")
    engine: Literal["auto", "local", "ray_data"] = "auto"
    local_max_rows: int = Field(200_000, ge=0, description="auto: in process up to this many rows")
    model_cache_dir: str | None = None
    lease_wait_s: float = Field(0.0, ge=0, description="wait this long for the lease held by another run")

    @property
    def ttl_s(self) -> int:
        return self.ttl if self.ttl is not None else publish.ttl_for(self.cadence_s, self.ttl_cadences)


@dataclass
class Written:
    """One table's new namespace, written but not yet live."""

    table: str
    version: str  # namespace version (``keys.run_version``)
    rows: dict[str, int]  # per tenant
    meta: dict[str, Any] = field(default_factory=dict)
    invalid_tenant_rows: int = 0
    scope: str | None = None  # the one tenant scored by its own model; None: the shared model's tenants
    registry: str = ""


class ScoredBatches:
    """Ray Data callable (and in-process scorer): a registry predictor with ``tenant`` carried through."""

    def __init__(self, kind: str, registry_uri: str, version: str, top_k: int = 20, cache_dir: str | None = None):
        if kind == "propensity":
            from models.propensity.predictor import PropensityPredictor

            self.predictor: Any = load_predictor(PropensityPredictor, registry_uri, version=version,
                                                 cache_dir=cache_dir)
        else:
            from models.session_rec.predictor import SessionRecPredictor

            self.predictor = load_predictor(SessionRecPredictor, registry_uri, version=version, cache_dir=cache_dir)
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


class Predictors:
    """Loaded scorers kept across runs of one process (the refresh loop): (kind, registry, version) -> scorer."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._loaded: dict[tuple[str, str, str], ScoredBatches] = {}

    def get(self, kind: str, registry_uri: str, version: str, top_k: int, cache_dir: str | None) -> ScoredBatches:
        key = (kind, registry_uri, version)
        if key not in self._loaded:
            same_kind = [k for k in self._loaded if k[0] == kind]
            for old in same_kind[: max(0, len(same_kind) - self.keep + 1)]:
                del self._loaded[old]
            self._loaded[key] = ScoredBatches(kind, registry_uri, version, top_k, cache_dir)
        scorer = self._loaded[key]
        scorer.top_k = top_k
        return scorer


def _filter_tenant(batch: pd.DataFrame, tenant: str | None, exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows of ``tenant`` (None: every tenant but those in ``exclude``), tenant ids normalised."""
    if "tenant" not in batch.columns:
        batch = batch.assign(tenant=None)
    batch = batch.assign(tenant=batch["tenant"].map(publish.tenant_of))
    if tenant is not None:
        return batch[batch["tenant"] == tenant]
    return batch[~batch["tenant"].isin(exclude)] if exclude else batch


def _recent(batch: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Rows whose session was active at or after ``since`` (cutoff_time or last_time)."""
    col = "cutoff_time" if "cutoff_time" in batch.columns else "last_time"
    return batch[pd.to_datetime(batch[col], utc=True) >= since]


def active_since(cfg: PrecomputeConfig, features: str) -> pd.Timestamp | None:
    """``cfg.since``, else the watermark of ``features`` (a resolved version, local or s3://) minus
    ``recent_hours``, else None (every session)."""
    if cfg.since is not None:
        return pd.Timestamp(cfg.since).tz_convert("UTC") if pd.Timestamp(cfg.since).tzinfo else \
            pd.Timestamp(cfg.since, tz="UTC")
    if cfg.recent_hours is None:
        return None
    manifest = fs.join(features, "_manifest.json")
    try:
        watermark = fs.read_json(manifest).get("watermark")
    except FileNotFoundError:
        raise FileNotFoundError(f"{manifest} not found: --recent-hours needs the feature job's manifest") from None
    return pd.Timestamp(watermark) - pd.Timedelta(hours=cfg.recent_hours) if watermark else None


def _dataset_filter(source: str, time_col: str, since: pd.Timestamp | None) -> tuple[pads.Dataset, Any]:
    filesystem, path = fs.filesystem(source)
    dataset = pads.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")
    if since is None or time_col not in dataset.schema.names:
        return dataset, None
    expr = pads.field(time_col) >= pads.scalar(since.to_pydatetime())
    if "date" in dataset.schema.names:  # prune whole day partitions first
        expr = (pads.field("date") >= since.strftime("%Y-%m-%d")) & expr
    return dataset, expr


def _score_local(cfg: PrecomputeConfig, kind: str, source: str, time_col: str, since: pd.Timestamp | None,
                 version: str, predictors: Predictors, exclude: tuple[str, ...]) -> list[pd.DataFrame]:
    dataset, expr = _dataset_filter(source, time_col, since)
    frame = dataset.to_table(filter=expr).to_pandas()
    frame = _filter_tenant(frame, cfg.tenant, exclude)
    if frame.empty:
        return []
    scorer = predictors.get(kind, cfg.registry, version, cfg.top_k, cfg.model_cache_dir)
    return [scorer(frame.iloc[i:i + cfg.batch_size]) for i in range(0, len(frame), cfg.batch_size)]


def _write_ray_data(cfg: PrecomputeConfig, table: str, kind: str, source: str, since: pd.Timestamp | None,
                    version: str, ns_version: str, exclude: tuple[str, ...]) -> dict[str, int]:
    import ray

    ds = ray.data.read_parquet(source)
    ds = ds.map_batches(_filter_tenant, fn_kwargs={"tenant": cfg.tenant, "exclude": exclude}, batch_format="pandas")
    if since is not None:
        ds = ds.map_batches(_recent, fn_kwargs={"since": since}, batch_format="pandas")
    ds = ds.map_batches(ScoredBatches, fn_constructor_kwargs={"kind": kind, "registry_uri": cfg.registry,
                                                              "version": version, "top_k": cfg.top_k,
                                                              "cache_dir": cfg.model_cache_dir},
                        batch_size=cfg.batch_size, batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    ds = ds.map_batches(publish.NamespaceWriter, fn_constructor_kwargs={"redis_url": cfg.redis, "table": table,
                                                                        "version": ns_version, "ttl_s": cfg.ttl_s},
                        batch_format="pandas", concurrency=1, num_cpus=cfg.actor_cpus)
    counts: dict[str, int] = {}
    for row in ds.iter_rows():
        counts[row["tenant"]] = counts.get(row["tenant"], 0) + int(row["rows"])
    return counts


def _use_local(cfg: PrecomputeConfig, source: str, time_col: str, since: pd.Timestamp | None) -> bool:
    if cfg.engine != "auto":
        return cfg.engine == "local"
    dataset, expr = _dataset_filter(source, time_col, since)
    return dataset.count_rows(filter=expr) <= cfg.local_max_rows


def write_model_table(cfg: PrecomputeConfig, client: Any, table: str, kind: str, source: str, time_col: str,
                      version: str, run_id: str, predictors: Predictors, since: pd.Timestamp | None = None,
                      exclude: tuple[str, ...] = ()) -> Written:
    """Score the sessions of ``source`` active since ``since`` with ``version`` of ``cfg.registry``
    into a new namespace (no flip): ``cfg.tenant``'s rows, or every tenant's but ``exclude``."""
    ns_version = keys.run_version(version, run_id)
    written = Written(table, ns_version, {}, {"model_version": version, "source": source,
                                              "since": str(since) if since is not None else None},
                      scope=cfg.tenant, registry=cfg.registry)
    try:
        if _use_local(cfg, source, time_col, since):
            writer = publish.NamespaceWriter(None, table, ns_version, cfg.ttl_s, client=client)
            for part in _score_local(cfg, kind, source, time_col, since, version, predictors, exclude):
                out = writer(part)
                for tenant, rows in zip(out["tenant"], out["rows"], strict=True):
                    written.rows[tenant] = written.rows.get(tenant, 0) + int(rows)
        else:
            written.rows = _write_ray_data(cfg, table, kind, source, since, version, ns_version, exclude)
    except BaseException:
        publish.abort(client, table, ns_version, _tenants_with_index(client, table, ns_version, cfg.tenant))
        raise
    written.invalid_tenant_rows = written.rows.pop(publish.INVALID_TENANT, 0)
    if written.invalid_tenant_rows:
        logger.warning("%s: %d rows with an invalid tenant id were not published", table,
                       written.invalid_tenant_rows)
    return written


def _tenants_with_index(client: Any, table: str, ns_version: str, tenant: str | None) -> list[str]:
    """Tenants that have ``ns_version`` in their namespace index (what a failed write may have left)."""
    from store import gc

    tenants = [tenant] if tenant else sorted(gc.tenants_indexed(client))
    return [t for t in tenants if client.zscore(keys.index_key(table, t), ns_version) is not None]


def own_popular(cfg: PrecomputeConfig, tenant: str) -> list[tuple[str, float]] | None:
    """A tenant with a recommender of its own, when the items table is not split by tenant: its
    model's training popularity, never the whole table's (which holds other tenants' items)."""
    uri, _ = resolve(cfg.registry, "recommender", tenant)
    if uri == cfg.registry:
        return None
    from models.session_rec.predictor import SessionRecPredictor

    return load_predictor(SessionRecPredictor, uri, cache_dir=cfg.model_cache_dir).popular(cfg.popular_k)


def write_popular(cfg: PrecomputeConfig, client: Any, source: str, run_id: str, tenants_seen: list[str]) -> Written | None:
    filesystem, path = fs.filesystem(source)
    items = pads.dataset(path, filesystem=filesystem, format="parquet").to_table().to_pandas()
    if items.empty:
        logger.warning("skipping popular: %s has no items", source)
        return None
    if "tenant" in items.columns:
        tenants = sorted({publish.tenant_of(t) for t in items["tenant"]})
    else:  # the default tenant's, and each tenant with a recommender of its own gets its model's
        tenants = sorted({keys.DEFAULT_TENANT} | {t for t in tenants_seen if own_popular_registry(cfg, t)})
    if cfg.tenant is not None:
        tenants = [cfg.tenant]
    version = keys.run_version("pop", run_id)
    written = Written("popular", version, {}, {})
    for tenant in tenants:
        if not keys.is_key_part(tenant):
            written.invalid_tenant_rows += 1
            continue
        part = items if "tenant" not in items.columns else items[items["tenant"].map(publish.tenant_of) == tenant]
        top = popular_items(part, cfg.popular_k)
        if "tenant" not in items.columns:
            top = own_popular(cfg, tenant) or top
        publish.write_rows(client, "popular", version, [(tenant, keys.POPULAR_ENTITY, codec.encode_top_k(top))],
                           cfg.ttl_s)
        written.rows[tenant] = 1
    return written


def own_popular_registry(cfg: PrecomputeConfig, tenant: str) -> bool:
    return resolve(cfg.registry, "recommender", tenant)[0] != cfg.registry


def tenants_in(features: str) -> list[str]:
    """The tenants of the session and sequence features (the default one where no column names any)."""
    found: set[str] = set()
    for table in ("sessions", "sequences"):
        source = fs.join(features, table)
        if not fs.exists(source):
            continue
        filesystem, path = fs.filesystem(source)
        dataset = pads.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")
        if "tenant" not in dataset.schema.names:
            found.add(keys.DEFAULT_TENANT)
            continue
        values = dataset.to_table(columns=["tenant"]).column("tenant").unique().to_pylist()
        found.update(publish.tenant_of(v) for v in values)
    return sorted(t for t in found if keys.is_key_part(t)) or [keys.DEFAULT_TENANT]


def _own_model_tenants(cfg: PrecomputeConfig, model: str, tenants: list[str]) -> dict[str, str]:
    """Tenants with a ``model`` of their own: tenant -> its registry."""
    out = {}
    for tenant in tenants:
        uri, _ = resolve(cfg.registry, model, tenant)
        if uri != cfg.registry:
            out[tenant] = uri
    return out


def write(cfg: PrecomputeConfig, client: Any, run_id: str, predictors: Predictors | None = None) -> dict[str, Any]:
    """Write every table whose inputs and model exist into new namespaces.

    Returns ``{table: [Written, ...] | "skipped"}``: one ``Written`` for the tenants the shared
    model scores, one per tenant with a model of its own. ``cfg.versions`` pins versions of the
    shared registry (a candidate before promotion); a tenant's own models are its champions."""
    features = fs.resolve(cfg.features)  # one version for every table, even if a newer one lands meanwhile
    predictors = predictors or Predictors()
    since = active_since(cfg, features)
    tenants = [cfg.tenant] if cfg.tenant is not None else tenants_in(features)
    out: dict[str, Any] = {}
    for table, model, sub, time_col in MODEL_TABLES:
        if table not in cfg.tables:
            continue
        source = fs.join(features, sub)
        if not fs.exists(source):
            logger.warning("skipping %s: %s is missing", table, source)
            out[table] = "skipped"
            continue
        own = _own_model_tenants(cfg, model, tenants)
        parts: list[Written] = []
        groups: list[tuple[str | None, str]] = [(t, uri) for t, uri in sorted(own.items())]
        if cfg.tenant is None or cfg.tenant not in own:
            groups.insert(0, (cfg.tenant, cfg.registry))
        for tenant, uri in groups:
            version = (cfg.versions.get(model) if uri == cfg.registry else None) or Registry(uri).champion(model)
            if version is None:
                logger.warning("skipping %s for %s: no %s champion at %s", table, tenant or "the shared tenants",
                               model, uri)
                continue
            sub_cfg = cfg.model_copy(update={"registry": uri, "tenant": tenant})
            parts.append(write_model_table(sub_cfg, client, table, model, source, time_col, version, run_id,
                                           predictors, since, exclude=tuple(own) if tenant is None else ()))
        out[table] = parts or "skipped"
    if "popular" in cfg.tables:
        source = fs.join(features, "items")
        pop = write_popular(cfg, client, source, run_id, tenants) if fs.exists(source) else None
        out["popular"] = [pop] if pop is not None else "skipped"
    return out


def namespaces(written: dict[str, Any]) -> set[str]:
    """Every namespace version ``write`` filled (kept by GC until committed or aborted)."""
    return {w.version for parts in written.values() if isinstance(parts, list) for w in parts}


def commit(cfg: PrecomputeConfig, client: Any, written: dict[str, Any], lease: Lease) -> dict[str, Any]:
    """Flip each written table for each tenant; one tenant's failure never stops the others.

    Tenants with a live pointer but no rows this time get an empty namespace (no active
    sessions), so every pointer stays fresh. Returns the report: per table the rows per tenant,
    the shared model's version and namespace, ``own_models`` for tenants scored by their own,
    and ``failed`` tenants with their errors."""
    report: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for table, parts in written.items():
        if not isinstance(parts, list):
            report[table] = parts
            continue
        entry: dict[str, Any] = {"rows": {}}
        scoped = {w.scope for w in parts if w.scope is not None}
        for w in parts:
            tenants = dict(w.rows)
            if table != "popular":
                for tenant in _stale_tenants(cfg, client, table, w, scoped):
                    tenants.setdefault(tenant, 0)
            done = _commit_tenants(cfg, client, w, tenants, lease, failed)
            entry["rows"].update(done)
            if w.scope is None or w.scope == cfg.tenant:
                entry["namespace"] = w.version
                if "model_version" in w.meta:
                    entry["model_version"] = w.meta["model_version"]
            else:
                entry.setdefault("own_models", {})[w.scope] = {"registry": w.registry, "namespace": w.version,
                                                                "model_version": w.meta.get("model_version")}
            if w.invalid_tenant_rows:
                entry["invalid_tenant_rows"] = entry.get("invalid_tenant_rows", 0) + w.invalid_tenant_rows
        report[table] = entry
    if failed:
        report["failed"] = failed
    return report


def _stale_tenants(cfg: PrecomputeConfig, client: Any, table: str, w: Written, scoped: set[str]) -> list[str]:
    """Tenants of ``w``'s scope with a live pointer (they get an empty namespace when no row is new)."""
    if w.scope is not None:
        return [w.scope] if client.exists(keys.pointer_key(table, w.scope)) else []
    if cfg.tenant is not None:
        return [cfg.tenant] if client.exists(keys.pointer_key(table, cfg.tenant)) else []
    from store import gc

    return [t for t in gc.tenants_indexed(client) if t not in scoped and client.exists(keys.pointer_key(table, t))]


def _commit_tenants(cfg: PrecomputeConfig, client: Any, w: Written, tenants: dict[str, int], lease: Lease,
                    failed: dict[str, str]) -> dict[str, int]:
    done: dict[str, int] = {}
    for tenant, rows in sorted(tenants.items()):
        try:
            lease.check()
            publish.commit(client, w.table, w.version, tenant, {"rows": rows, **w.meta}, cfg.ttl_s, lease=lease)
            done[tenant] = rows
        except FencedOut:
            publish.abort(client, w.table, w.version, [t for t in tenants if t not in done])
            raise
        except Exception as exc:  # noqa: BLE001 - this tenant fails, the others go on
            logger.exception("commit of %s for tenant %s failed; its previous table stays live", w.table, tenant)
            failed[f"{w.table}/{tenant}"] = f"{type(exc).__name__}: {exc}"
            publish.abort(client, w.table, w.version, [tenant])
    return done


def new_run_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def run(cfg: PrecomputeConfig, lease: Lease | None = None, predictors: Predictors | None = None,
        run_id: str | None = None) -> dict[str, Any]:
    """Write and commit every table; takes its own lease unless the caller (the loop) passes one."""
    client = publish.connect(cfg.redis)
    own = lease is None
    lease = lease or Lease(client, owner=None).acquire_or_raise(cfg.lease_wait_s)
    run_id = run_id or new_run_id()
    t0 = time.perf_counter()
    try:
        if own:
            lease.start_renewing()
        written = write(cfg, client, run_id, predictors)
        report = {"run_id": run_id, **commit(cfg, client, written, lease)}
    finally:
        if own:
            lease.release()
        client.close()
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
