"""The default deployment is sized from the cores present; the KubeRay manifest is a valid Serve config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobs import deploy
from serve.sizing import ONGOING_PER_REPLICA, sizing, usable_cores

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_one_replica_per_core_and_a_bounded_queue() -> None:
    assert sizing(1).num_replicas == 1 and sizing(2).num_replicas == 2 and sizing(1000).num_replicas == 32
    two = sizing(2)
    assert two.max_ongoing_requests == ONGOING_PER_REPLICA
    assert two.max_queued_requests == 2 * ONGOING_PER_REPLICA
    with pytest.raises(ValueError, match="cores"):
        sizing(0)


def test_usable_cores_honours_a_cgroup_quota(tmp_path: Path) -> None:
    unlimited = tmp_path / "cpu.max"
    unlimited.write_text("max 100000\n")
    assert usable_cores(unlimited) >= 1
    quota = tmp_path / "quota"
    quota.write_text("150000 100000\n")           # 1.5 CPUs -> 2 replicas' worth, never more than the affinity
    assert usable_cores(quota) == min(2, usable_cores(unlimited))
    assert usable_cores(tmp_path / "absent") == usable_cores(unlimited)


def test_deploy_fills_sizing_left_null_and_keeps_explicit_values() -> None:
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    dep = config["applications"][0]["deployments"][0]
    assert dep["num_replicas"] is None and dep["max_ongoing_requests"] is None   # the default is "from cores"
    out = deploy.render(config, "reg", "redis://127.0.0.1:1/0", {"k-123": "acme"}, cores=3)
    dep = out["applications"][0]["deployments"][0]
    assert (dep["num_replicas"], dep["max_ongoing_requests"], dep["max_queued_requests"]) == \
        (3, ONGOING_PER_REPLICA, 3 * ONGOING_PER_REPLICA)
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    config["applications"][0]["deployments"][0].update(num_replicas=5, max_ongoing_requests=7)
    dep = deploy.render(config, "reg", "redis://x", {}, cores=3)["applications"][0]["deployments"][0]
    assert (dep["num_replicas"], dep["max_ongoing_requests"]) == (5, 7)


def test_kuberay_rayservice_is_a_valid_serve_config_on_the_haproxy_ingress() -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import AppArgs

    doc = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayservice.yaml").read_text())
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    AppArgs.model_validate(serve_config["applications"][0]["args"])
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
        assert env["RAY_worker_niceness"] == "0"
