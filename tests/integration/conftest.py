"""Integration tests share one Ray cluster and one real redis-server (see tests/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def serve_http(ray_cluster: object) -> str:
    """Serve started once on the shared cluster, HTTP on a free loopback port; yields its base URL."""
    from ray import serve

    from cluster.local import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"
