"""Shared test fixtures: one Ray cluster and one real redis-server per test session.

Both are started by the suite itself, on their own ports and temp dirs, and only
those processes are stopped at the end (never ``ray stop`` or a kill by name).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (../shared/data is absent)")
    return SHARED_DATA


_AUTH_DIR: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Token auth must be in the environment before anything imports ray (Ray reads it at import)."""
    tmp = tempfile.mkdtemp(prefix="tdm-", dir="/tmp")
    token = Path(tmp) / "auth_token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    _AUTH_DIR.append(tmp)


def pytest_unconfigure(config: pytest.Config) -> None:
    for tmp in _AUTH_DIR:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """One local Ray cluster for the whole session, pinned to 2 CPUs, token auth on."""
    import ray

    tmp = _AUTH_DIR[0] if _AUTH_DIR else tempfile.mkdtemp(prefix="tdm-", dir="/tmp")
    os.environ.pop("RAY_ADDRESS", None)
    # Workers must import the project packages (models, jobs, serve).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tmp,
                   configure_logging=False, log_to_driver=False,
                   object_store_memory=512 * 1024 * 1024)
    try:
        yield ctx
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 - best effort: serve may never have started
            pass
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real redis-server on a free loopback port; yields its URL."""
    from cluster.local import free_port, start_redis, stop_group

    workdir = Path(tempfile.mkdtemp(prefix="tdm-redis-"))
    port = free_port()
    pid_file = workdir / "redis.pid"
    start_redis(port, workdir, pid_file)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(pid_file, "test redis-server")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def redis_client(redis_server: str) -> Iterator[object]:
    """A sync client on a flushed database."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    yield client
    client.close()
