"""The whole path on tiny data: generate -> features -> train -> register -> precompute -> serve.

Every job runs through its CLI entry point on the shared Ray cluster, and the Serve
app answers over real HTTP from a real redis-server, as in `make demo`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest

from store.registry import Registry

pytestmark = [pytest.mark.slow]

API_KEY = "e2e-key"


@pytest.fixture(scope="module")
def pipeline(ray_cluster: object, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from jobs import features, generate, precompute, train_propensity

    root = tmp_path_factory.mktemp("e2e")
    events, feats, registry = root / "events", root / "features", root / "registry"
    assert generate.main(["--events", "40000", "--out", str(events), "--seed", "11", "--days", "4",
                          "--items", "3000"]) == 0
    assert features.main(["--events", str(events), "--out", str(feats)]) == 0
    assert train_propensity.main(["--features", str(feats / "sessions"), "--label", "purchased",
                                  "--time-column", "cutoff_time", "--registry", str(registry)]) == 0
    assert precompute.main(["--features", str(feats), "--registry", str(registry), "--redis", redis_server]) == 0
    return {"root": root, "features": feats, "registry": registry, "redis": redis_server}


def test_features_and_registry_outputs(pipeline: dict[str, object]) -> None:
    feats = Path(str(pipeline["features"]))
    sessions = ds.dataset(feats / "sessions").to_table()
    assert sessions.num_rows > 5000
    labels = sessions["purchased"].to_pylist()
    assert 0 < sum(labels) < len(labels) * 0.2  # buyers are a few percent
    reg = Registry(str(pipeline["registry"]))
    champion = reg.champion("propensity")
    assert champion is not None
    meta = reg.get("propensity").meta
    assert "metrics" in meta or "pr_auc" in json.dumps(meta)


@pytest.fixture(scope="module")
def served(pipeline: dict[str, object], serve_http: str) -> Iterator[str]:
    from ray import serve

    from serve.app import build_app

    app = build_app({"registry_uri": str(pipeline["registry"]), "redis_url": str(pipeline["redis"]),
                     "api_keys": {API_KEY: "default"}})
    serve.run(app, name="e2e", route_prefix="/e2e")
    try:
        yield f"{serve_http}/e2e"
    finally:
        serve.delete("e2e")


def test_score_endpoint_serves_precomputed_then_model(pipeline: dict[str, object], served: str) -> None:
    sid = ds.dataset(Path(str(pipeline["features"])) / "sessions").head(1, columns=["session_id"])["session_id"][0].as_py()
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=served, timeout=10) as client:
        # a generous deadline here too: on a loaded box the first Redis read of a fresh replica can take
        # longer than the default 10 ms, and then the prior answers ("popular"), by design
        pre = client.post("/v1/score", json={"session_id": sid, "deadline_ms": 2000}, headers=headers)
        assert pre.status_code == 200, pre.text
        body = pre.json()
        assert 0.0 <= body["score"] <= 1.0 and body["source"] == "precomputed", body

        events = [{"item_id": "i1", "event_type": "view", "event_time": "2026-11-03T10:00:00Z", "price": 20.0},
                  {"item_id": "i1", "event_type": "cart", "event_time": "2026-11-03T10:01:00Z", "price": 20.0}]
        # a generous deadline: this checks that the model serves; the 10 ms fallback is tested elsewhere,
        # and a loaded CI box can push a first model call past 10 ms (then "popular" answers, by design)
        live = client.post("/v1/score", json={"session_id": "brand-new", "events": events, "deadline_ms": 2000},
                           headers=headers)
        assert live.status_code == 200, live.text
        assert live.json()["source"] == "model" and 0.0 <= live.json()["score"] <= 1.0, live.json()

        bad = client.post("/v1/score", json={"session_id": "x", "events": "nope"}, headers=headers)
        assert bad.status_code == 422
        assert "events" in bad.text
        bad_time = client.post("/v1/score", json={"session_id": "x", "events": [{"item_id": "i1",
                               "event_type": "view", "event_time": "yesterday"}]}, headers=headers)
        assert bad_time.status_code == 422 and "event_time" in bad_time.text

        assert client.post("/v1/score", json={"session_id": sid}).status_code == 401
