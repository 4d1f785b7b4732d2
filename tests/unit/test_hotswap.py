"""The hot swap's config rewrite and replica checks, on Serve's details shape (no cluster)."""

from __future__ import annotations

import pytest

from pipelines.hotswap import SwapError, pinned_config, running_replicas, settling

pytestmark = pytest.mark.unit


def _details(state: str = "RUNNING", status: str = "HEALTHY") -> dict:
    tandem = {"name": "tandem", "route_prefix": "/", "import_path": "serve.app:build_app",
              "args": {"registry_uri": "/r", "redis_url": "redis://x", "api_keys": {"secret-key": "acme"}},
              "deployments": [{"name": "Tandem", "user_config": {"generation": 0, "propensity_version": None},
                               "max_ongoing_requests": 64}]}
    other = {"name": "other", "route_prefix": "/o", "import_path": "x:y"}
    return {"proxy_location": "HeadOnly", "target_capacity": 50,
            "http_options": {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 2, "root_path": ""},
            "applications": {
                "tandem": {"deployed_app_config": tandem, "deployments": {"Tandem": {"status": status, "replicas": [
                    {"replica_id": "r1", "state": state}, {"replica_id": "r2", "state": "RUNNING"}]}}},
                "other": {"deployed_app_config": other}}}


def test_pins_versions_bumps_generation_and_keeps_everything_else() -> None:
    cfg = pinned_config(_details(), "tandem", {"propensity": "v2", "recommender": "v9"}, generation=17)
    apps = {a["name"]: a for a in cfg["applications"]}
    assert set(apps) == {"tandem", "other"}  # the other app is kept (a declarative apply deletes what is missing)
    dep = apps["tandem"]["deployments"][0]
    assert dep["user_config"] == {"generation": 17, "propensity_version": "v2", "recommender_version": "v9"}
    assert dep["max_ongoing_requests"] == 64 and apps["tandem"]["args"]["api_keys"] == {"secret-key": "acme"}
    assert cfg["proxy_location"] == "HeadOnly" and cfg["target_capacity"] == 50
    assert cfg["http_options"] == {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 2}
    with pytest.raises(SwapError, match="not deployed"):
        pinned_config(_details(), "nope", {}, 1)


def test_a_swap_is_done_only_when_every_replica_runs_and_the_deployment_is_healthy() -> None:
    assert running_replicas(_details(), "tandem") == ["r1", "r2"] and settling(_details(), "tandem") == []
    assert running_replicas(_details("STARTING"), "tandem") == ["r2"]
    assert settling(_details("STARTING", "UPDATING"), "tandem") == ["r1:STARTING", "deployment:UPDATING"]
