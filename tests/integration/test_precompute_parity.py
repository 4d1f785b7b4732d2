"""Parity: the score precomputed by Ray Data equals the score /v1/score computes online.

The same events go (a) through ``models.features.session.session_features`` into
``FEATURES/sessions`` and ``pipelines.precompute`` (``map_batches`` with
``PropensityPredictor``) to Redis, and (b) into ``POST /v1/score`` as request
events, where the replica scores them with the same predictor class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from models.features.session import SESSION_FEATURES, session_features
from models.propensity import artifact as prop_artifact
from models.propensity.finalize import fit_local
from models.propensity.model import PropensityConfig
from pipelines import precompute
from store import keys
from store.registry import Registry
from tests.integration.test_serve_app import deploy, undeploy

pytestmark = pytest.mark.integration


def synthetic_events(n_sessions: int = 60, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    t0 = pd.Timestamp("2026-11-20T10:00:00Z")
    for s in range(n_sessions):
        t = t0 + pd.Timedelta(minutes=int(rng.integers(0, 3000)))
        buyer = s % 4 == 0
        for j in range(int(rng.integers(2, 9))):
            t += pd.Timedelta(seconds=int(rng.integers(5, 400)))
            etype = "cart" if (buyer and j > 0) or rng.random() < 0.1 else "view"
            rows.append({"event_time": t, "session_id": f"p{s}", "user_id": None, "item_id": f"i{rng.integers(0, 30)}",
                         "event_type": etype, "price": float(rng.integers(5, 90)), "category": f"c{rng.integers(0, 4)}",
                         "tenant": None})
        if buyer:
            rows.append({**rows[-1], "event_time": t + pd.Timedelta(seconds=30), "event_type": "purchase"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def propensity_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame, Path]:
    tmp = tmp_path_factory.mktemp("parity")
    events = synthetic_events()
    feats = session_features(events, cut_at_first_purchase=True)
    cfg = PropensityConfig(num_boost_round=15, early_stopping_rounds=0, min_child_samples=2, num_leaves=4)
    booster, art = fit_local(feats, feats, list(SESSION_FEATURES), "purchased", cfg)
    art_dir = prop_artifact.save(tmp / "prop", booster, art)
    uri = str(tmp / "registry")
    reg = Registry(uri)
    reg.set_champion("propensity", reg.register("propensity", art_dir, {"model_type": "lightgbm"}).version, "t")
    (tmp / "features" / "sessions").mkdir(parents=True)
    feats.to_parquet(tmp / "features" / "sessions" / "part-0.parquet")
    return uri, events, tmp


def test_batch_and_online_scores_are_identical(ray_cluster: object, serve_http: str, redis_server: str,
                                               redis_client: Any, propensity_registry: tuple) -> None:
    uri, events, tmp = propensity_registry
    cfg = precompute.PrecomputeConfig(features=str(tmp / "features"), registry=uri, redis=redis_server,
                                      tables=["score"])
    report = precompute.run(cfg)
    assert report["score"]["rows"] == {"default": 60}
    version = redis_client.get(keys.pointer_key("score", "default")).decode()
    assert keys.model_version_of(version) == Registry(uri).champion("propensity")
    deploy("tandem-parity", "/p", {"registry_uri": uri, "redis_url": redis_server,
                                   "api_keys": {"key-parity": "default"}, "model_cache_dir": str(tmp / "cache"),
                                   "deadline_ms": 5000})
    try:
        # sessions without a purchase: online features use every event, exactly as the batch job did
        non_buyers = [f"p{s}" for s in range(60) if s % 4 != 0][:12]
        checked = 0
        with httpx.Client() as c:
            for sid in non_buyers:
                sess = events[events["session_id"] == sid]
                body = {"session_id": sid, "deadline_ms": 5000, "events": [
                    {"item_id": r.item_id, "event_type": r.event_type, "event_time": r.event_time.isoformat(),
                     "price": r.price, "category": r.category} for r in sess.itertuples()]}
                online = c.post(f"{serve_http}/p/v1/score", json=body, headers={"X-API-Key": "key-parity"},
                                timeout=30).json()
                batch = float(redis_client.get(keys.entity_key("score", version, sid)))
                assert online["source"] == "model", online
                assert online["score"] == batch, (sid, online["score"], batch)
                cached = c.post(f"{serve_http}/p/v1/score", json={"session_id": sid},
                                headers={"X-API-Key": "key-parity"}, timeout=30).json()
                assert cached["source"] == "precomputed" and cached["score"] == batch
                checked += 1
    finally:
        undeploy("tandem-parity")
    assert checked == len(non_buyers)
