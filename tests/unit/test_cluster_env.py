"""The launcher's environment for the Ray head: token auth always, HAProxy ingress by default."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster.local import (
    ROOT,
    STACK_ENV,
    LocalConfig,
    haproxy_env,
    pid_alive,
    ray_env,
    stack_id,
    stack_ports,
    stop_tagged,
    tagged_pids,
)
from pipelines.raycluster import TRAIN_HEALTH_CHECK_INTERVAL_S, TRAIN_LOCAL_ENV

pytestmark = pytest.mark.unit


def test_default_head_env_is_haproxy_throughput_optimized_with_token_auth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_INGRESS", raising=False)
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    cfg = LocalConfig.from_env(run_dir=tmp_path)
    env = ray_env(cfg)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "auth_token")
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_worker_niceness"] == "0"                 # replicas at normal priority, not Ray's 15
    assert env[STACK_ENV] == stack_id(cfg) and len(env[STACK_ENV]) == 32


def test_python_proxy_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_INGRESS", "python")
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")      # a stale shell setting does not leak in
    env = ray_env(LocalConfig.from_env(run_dir=tmp_path))
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env and env["RAY_worker_niceness"] == "0"
    assert "TANDEM_HAPROXY_STATS_PORT" not in stack_ports(LocalConfig.from_env(run_dir=tmp_path))


def test_haproxy_ingress_uses_a_private_state_dir_and_ports(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_HAPROXY_STATS_PORT", "28404")
    monkeypatch.setenv("TANDEM_HAPROXY_METRICS_PORT", "29101")
    cfg = LocalConfig.from_env(run_dir=tmp_path)
    env = ray_env(cfg)
    private = Path(cfg.haproxy_dir)
    for key in ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH",
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        assert Path(env[key]).parent == private, key      # never the shared /tmp/haproxy-serve
    # HAProxy binds a stats page and a metrics frontend on every start: a stack's own ports
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == ("28404", "29101")
    assert stack_ports(cfg)["TANDEM_HAPROXY_STATS_PORT"] == 28404
    assert haproxy_env(Path("/tmp/thp-test"), 1, 2)["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == "/tmp/thp-test"
    with pytest.raises(ValueError, match="too long"):    # HAProxy's 97-byte socket path limit
        haproxy_env(Path("/tmp") / ("x" * 40), 1, 2)
    # per-request HAProxy metrics cost ~0.15 ms CPU a request in a Python actor: off unless asked for
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    monkeypatch.setenv("TANDEM_HAPROXY_REQUEST_METRICS", "1")
    assert haproxy_env(Path("/tmp/thp-test"), 1, 2)["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"


def test_down_finds_a_stack_process_after_its_parent_is_gone(tmp_path: Path) -> None:
    """What HAProxy does to `make down`: a child of a process of the stack, in its own process
    group and reparented when that process exits, is still found and stopped by the stack's tag."""
    tag, other = "t" * 32, "u" * 32
    script = "import subprocess, sys; p = subprocess.Popen(['sleep', '300'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    pids = []
    for t in (tag, other):
        out = subprocess.run([sys.executable, "-c", script], env={STACK_ENV: t, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True)
        pids.append(int(out.stdout))
    try:
        assert tagged_pids(tag) == [pids[0]] and pid_alive(pids[0])   # the parent has exited
        assert stop_tagged(tag, timeout=5) == [pids[0]]
        deadline = time.time() + 5
        while time.time() < deadline and pid_alive(pids[0]):
            time.sleep(0.05)
        assert not pid_alive(pids[0]) and tagged_pids(tag) == []
        assert pid_alive(pids[1])                                     # another stack's is left alone
    finally:
        stop_tagged(other, timeout=5)


def test_unknown_ingress_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_INGRESS", "nginx")
    with pytest.raises(ValueError, match="TANDEM_INGRESS='nginx'"):
        ray_env(LocalConfig.from_env(run_dir=tmp_path))


def test_train_controller_poll_is_one_setting_for_the_launcher_and_submitted_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    assert ray_env(LocalConfig.from_env(run_dir=tmp_path))["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == \
        TRAIN_HEALTH_CHECK_INTERVAL_S
    runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    assert runtime_env["env_vars"]["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == TRAIN_HEALTH_CHECK_INTERVAL_S
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0")  # an operator's own value wins
    assert ray_env(LocalConfig.from_env(run_dir=tmp_path))["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.0"


def test_local_cluster_runs_train_without_the_preemption_watcher(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", raising=False)
    env = ray_env(LocalConfig.from_env(run_dir=tmp_path))
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert {k: env[k] for k in TRAIN_LOCAL_ENV} == TRAIN_LOCAL_ENV
