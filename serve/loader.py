"""Load a tenant's models from the registry; a missing champion is a cold start, not an error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from models.contracts import PropensityScorer, Recommender
from serve.engine import ModelBundle
from serve.schemas import TenantConfig
from store.modelcache import ModelCache
from store.redact import redact_url
from store.registry import Registry, RegistryError, load_predictor, resolve

logger = logging.getLogger(__name__)


def _propensity(registry_uri: str, version: str | None, cache_dir: str | None) -> PropensityScorer | None:
    try:
        from models.propensity.predictor import PropensityPredictor
    except ImportError:
        logger.warning("models.propensity is not available; /v1/score serves precomputed and prior only")
        return None
    if version is None and Registry(registry_uri).champion("propensity") is None:
        logger.info("no propensity champion at %s (cold start)", registry_uri)
        return None
    return load_predictor(PropensityPredictor, registry_uri, version=version, cache_dir=cache_dir)


def _recommender(registry_uri: str, version: str | None, cache_dir: str | None) -> Recommender | None:
    from models.session_rec.predictor import SessionRecPredictor

    if version is None and Registry(registry_uri).champion("recommender") is None:
        logger.info("no recommender champion at %s (cold start: popularity)", registry_uri)
        return None
    return load_predictor(SessionRecPredictor, registry_uri, version=version, cache_dir=cache_dir)


def pinned_registries(tenant: str, registry_uri: str, own_registry: str | None = None) -> list[str]:
    """Where an A/B variant's pinned version of ``tenant`` is looked up, in order: the tenant's
    configured registry, its namespace in the shared one, the shared one."""
    from store.registry import pin_lookup

    return pin_lookup(registry_uri, tenant, own_registry)


def load_pinned(tenant: str, registries: list[str], name: str, version: str, cache_dir: str | None) -> Any:
    """An A/B variant's pinned ``name`` model ``version`` from the first of ``registries`` that
    holds it (``pinned_registries``); loaded and warmed up; raises when it cannot."""
    for uri in registries:
        if "://" not in uri and not Path(uri).is_dir():
            continue
        if version not in Registry(uri).versions(name):
            continue
        bundle = ModelBundle(tenant=tenant)  # files from the node's shared model cache, never a temp dir
        if name == "recommender":
            bundle.recommender = _recommender(uri, version, cache_dir)
        else:
            bundle.propensity = _propensity(uri, version, cache_dir)
        model = bundle.recommender or bundle.propensity
        if model is None:
            raise RegistryError(f"{name} {version}: its predictor cannot be imported")
        if not warm_up(bundle):
            raise RuntimeError(f"{name} {version} failed its warm-up call")
        return model
    raise RegistryError(f"tenant {tenant}: no {name} version {version!r} at "
                        f"{', '.join(redact_url(u) for u in registries)}")


def preload_modules() -> None:
    """Import the predictor modules up front, so a first hot swap does not import on a live replica."""
    import importlib

    for module in ("models.session_rec.predictor", "models.propensity.predictor"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            logger.warning("cannot import %s: %s", module, exc)


def clean_model_cache(cache_dir: str | None) -> None:
    """On replica start: drop copies left by dead processes and keep the cache under its cap."""
    try:
        ModelCache(cache_dir).clean()
    except OSError as exc:  # a cache problem must not stop the replica; loads will report it
        logger.warning("model cache %s: clean-up failed: %s", cache_dir, exc)


def popular_from(recommender: Recommender | None, k: int) -> list[tuple[str, float]]:
    """Top-k items by the recommender's training popularity (the in-process fallback)."""
    return recommender.popular(k) if recommender is not None else []


def _where(tenant: str, registry_uri: str, own_uri: str | None, name: str,
           version: str | None) -> tuple[str, str | None]:
    """(registry, version) of model ``name`` for ``tenant``: its configured registry as is, else
    ``store.registry.resolve`` (its own namespace when it has one, else the shared default)."""
    return (own_uri, version) if own_uri else resolve(registry_uri, name, tenant, version)


def load_bundle(tenant: str, registry_uri: str, cfg: TenantConfig | None = None,
                cache_dir: str | None = None, popular_k: int = 100, strict: bool = False) -> ModelBundle:
    """Both models of ``tenant`` (pinned versions or champions). Failures are logged and that model is
    left out (a cold start), or, with ``strict`` (a hot swap), raised: a swap must not go cold.

    Each model comes from the tenant's own registry namespace when it holds one (``store.registry.
    resolve``), else from the shared default; a tenant's ``registry_uri`` replaces the lookup.
    Model files come from the node's shared model cache (``store.modelcache``; ``cache_dir`` or
    its default root), one copy per version, never a new temp dir per load."""
    cfg = cfg or TenantConfig()
    bundle = ModelBundle(tenant=tenant)
    prop_uri, prop_version = _where(tenant, registry_uri, cfg.registry_uri, "propensity", cfg.propensity_version)
    try:
        bundle.propensity = _propensity(prop_uri, prop_version, cache_dir)
    except (RegistryError, OSError, ValueError, KeyError) as exc:
        logger.error("could not load propensity for tenant %s from %s: %s", tenant, redact_url(prop_uri), exc)
        if strict:
            raise
    rec_uri, rec_version = _where(tenant, registry_uri, cfg.registry_uri, "recommender", cfg.recommender_version)
    try:
        bundle.recommender = _recommender(rec_uri, rec_version, cache_dir)
    except (RegistryError, OSError, ValueError, KeyError) as exc:
        logger.error("could not load recommender for tenant %s from %s: %s", tenant, redact_url(rec_uri), exc)
        if strict:
            raise
    bundle.popular = popular_from(bundle.recommender, popular_k)
    bundle.prior = float(bundle.propensity.base_rate or 0.0) if bundle.propensity is not None else 0.0
    if not warm_up(bundle) and strict:
        raise RuntimeError(f"the models of tenant {tenant} failed their warm-up call")
    logger.info("tenant %s models: %s", tenant, bundle.versions)
    return bundle


def warm_up(bundle: ModelBundle) -> bool:
    """Run each model once before it takes traffic: lazy indexes and first-call costs
    (seconds for a kNN index) must never land on a live request's deadline."""
    import pandas as pd

    item = bundle.popular[0][0] if bundle.popular else "warm-up"
    try:
        if bundle.recommender is not None:
            bundle.recommender.recommend([item], k=5)
        if bundle.propensity is not None:
            now = pd.Timestamp.now(tz="UTC")
            bundle.propensity.score_events(pd.DataFrame({
                "event_time": [now, now], "session_id": ["warm-up", "warm-up"], "item_id": [item, item],
                "event_type": ["view", "cart"], "price": [1.0, 1.0]}))
    except Exception:  # noqa: BLE001 - a failed warm-up must not stop the replica; the request path logs errors
        logger.exception("warm-up failed for tenant %s", bundle.tenant)
        return False
    return True
