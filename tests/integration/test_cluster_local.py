"""The local launcher starts and stops only its own processes, with token auth on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from cluster.local import (
    LocalConfig,
    down,
    free_port,
    port_open,
    read_pid,
    stack_id,
    start_redis,
    stop_group,
    tagged_pids,
    up,
)

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


def _ray_log_tail(cfg: LocalConfig, name: str = "dashboard.log", lines: int = 30) -> str:
    found = sorted(Path(cfg.ray_temp_dir).glob(f"session_latest/logs/{name}"))
    return "\n".join(found[0].read_text(errors="replace").splitlines()[-lines:]) if found else f"(no {name})"


def _deploy(cfg: LocalConfig, registry: Path, env: dict[str, str], cycle: int) -> None:
    """``python -m jobs.deploy`` as the demo runs it (one replica: ``--cores 1``), then a health check."""
    out = subprocess.run([sys.executable, "-m", "jobs.deploy", "--registry", str(registry), "--redis", cfg.redis_url,
                          "--api-key", "test-key=default", "--address", cfg.dashboard_url, "--cores", "1",
                          "--http-port", str(cfg.serve_port), "--out", str(cfg.run_dir / "serve.yaml"), "--wait"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, (f"cycle {cycle}: " + out.stdout[-2000:] + out.stderr[-3000:]
                                 + "\n--- dashboard.log:\n" + _ray_log_tail(cfg))
    health = httpx.get(f"http://127.0.0.1:{cfg.serve_port}/v1/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded"), health.text


@pytest.mark.slow
def test_up_deploy_down_twice_leaves_nothing_behind(tmp_path: Path) -> None:
    """`make up` + deploy, `make down`, and again: the HAProxy ingress (the default) keeps no process
    and no port after `down`, so the second deploy binds the same HTTP port. Token auth is on."""
    run_dir = Path("/tmp") / f"tdm-up-{os.getpid()}"
    cfg = LocalConfig(run_dir=run_dir, ray_port=free_port(), dashboard_port=free_port(),
                      redis_port=free_port(), serve_port=free_port(), metrics_port=free_port(),
                      agent_port=free_port(), client_port=free_port(), haproxy_stats_port=free_port(),
                      haproxy_metrics_port=free_port(), num_cpus=2)
    assert cfg.ingress == "haproxy"
    registry = tmp_path / "registry"   # empty: the app starts cold (fallbacks only)
    registry.mkdir()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TANDEM_"))}
    try:
        for cycle in (1, 2):
            up(cfg)
            tag = stack_id(cfg)
            token = (run_dir / "auth_token").read_text().strip()
            assert len(token) == 64
            env = {**base_env, "RAY_ADDRESS": cfg.dashboard_url, "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN_PATH": str(cfg.token_path), "PYTHONPATH": str(ROOT)}
            _deploy(cfg, registry, env, cycle)
            names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in tagged_pids(tag)
                     if Path(f"/proc/{pid}/comm").exists()}
            assert "haproxy" in names, names      # the ingress is HAProxy, and it carries the stack's tag
            if cycle == 1:
                # Without the token the dashboard refuses a client.
                ray_bin = str(Path(sys.executable).with_name("ray"))
                refused = subprocess.run([ray_bin, "job", "list"], capture_output=True, text=True, timeout=60,
                                         env={**base_env, "RAY_ADDRESS": cfg.dashboard_url,
                                              "RAY_AUTH_MODE": "token", "HOME": str(tmp_path)})
                assert refused.returncode != 0
            down(cfg)
            assert tagged_pids(tag) == [], f"cycle {cycle}: processes of the stack survived `down`"
            assert read_pid(run_dir / "ray.pid") is None and read_pid(run_dir / "redis.pid") is None
            for port in (cfg.serve_port, cfg.dashboard_port, cfg.redis_port, cfg.haproxy_stats_port):
                assert not port_open(port), f"cycle {cycle}: port {port} still taken after `down`"
    finally:
        down(cfg)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize("path", ["cluster.yaml", "cluster/runtime_env.yaml", "cluster/kuberay/raycluster.yaml",
                                  "cluster/kuberay/rayservice.yaml", "cluster/kuberay/rayjob-refresh-fast.yaml",
                                  "cluster/kuberay/raycronjob-refresh-slow.yaml"])
def test_cluster_manifests_parse(path: str) -> None:
    doc = yaml.safe_load((ROOT / path).read_text())
    assert isinstance(doc, dict) and doc


def test_redis_is_ready_only_when_it_answers_ping_not_while_loading() -> None:
    import socket
    import threading

    from cluster.local import free_port, redis_ready

    replies = [b"-LOADING Redis is loading the dataset in memory\r\n", b"+PONG\r\n"]
    port = free_port()
    srv = socket.create_server(("127.0.0.1", port))

    def answer() -> None:
        for reply in replies:
            conn, _ = srv.accept()
            with conn:
                assert conn.recv(64) == b"PING\r\n"
                conn.sendall(reply)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    assert redis_ready(port) is False          # a restarted server replaying its AOF
    assert redis_ready(port) is True
    t.join(5)
    srv.close()
    assert redis_ready(port) is False          # nothing listening
