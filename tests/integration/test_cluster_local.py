"""The local launcher starts and stops only its own processes, with token auth on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.local import LocalConfig, down, free_port, port_open, read_pid, start_redis, stop_group, up

ROOT = Path(__file__).resolve().parents[2]


def test_stop_group_stops_only_its_own_redis(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    pids = [start_redis(p, tmp_path / f"r{i}", tmp_path / f"r{i}.pid") for i, p in enumerate(ports)]
    try:
        assert stop_group(tmp_path / "r0.pid", "first")
        assert not port_open(ports[0])
        assert port_open(ports[1]) and read_pid(tmp_path / "r1.pid") == pids[1]
        assert not stop_group(tmp_path / "r0.pid", "first")  # idempotent
    finally:
        stop_group(tmp_path / "r1.pid", "second")
    assert not port_open(ports[1])


@pytest.mark.slow
def test_up_submit_job_with_token_then_down(tmp_path: Path) -> None:
    run_dir = Path("/tmp") / f"tdm-up-{os.getpid()}"
    cfg = LocalConfig(run_dir=run_dir, ray_port=free_port(), dashboard_port=free_port(),
                      redis_port=free_port(), metrics_port=free_port(), agent_port=free_port(),
                      client_port=free_port(), num_cpus=1)
    try:
        up(cfg)
        token = (run_dir / "auth_token").read_text().strip()
        assert len(token) == 64
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update({"RAY_ADDRESS": cfg.dashboard_url, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(cfg.token_path)})
        ray_bin = str(Path(sys.executable).with_name("ray"))
        ok = subprocess.run([ray_bin, "job", "submit", "--", "python", "-c", "import models.schema; print('job-ok')"],
                            env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "job-ok" in ok.stdout
        # Without the token the dashboard refuses the submission.
        env.pop("RAY_AUTH_TOKEN_PATH")
        env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
        refused = subprocess.run([ray_bin, "job", "list"], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
    finally:
        down(cfg)
    assert read_pid(run_dir / "ray.pid") is None and read_pid(run_dir / "redis.pid") is None
    assert not port_open(cfg.dashboard_port) and not port_open(cfg.redis_port)


@pytest.mark.parametrize("path", ["cluster.yaml", "cluster/runtime_env.yaml", "cluster/kuberay/raycluster.yaml",
                                  "cluster/kuberay/rayservice.yaml", "cluster/kuberay/rayjob-refresh.yaml"])
def test_cluster_manifests_parse(path: str) -> None:
    doc = yaml.safe_load((ROOT / path).read_text())
    assert isinstance(doc, dict) and doc
