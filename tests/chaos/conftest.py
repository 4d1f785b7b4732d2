"""The default deployment, started the way `make up` + `jobs.deploy` start it, for hostile tests.

One private stack for the whole chaos session (``make test-chaos``): the launcher's Ray head with
the HAProxy ingress, a real redis-server, two replicas (``--cores 2``), private ports and run
dir. Tenants: ``default`` (the shared registry), ``acme``, ``bolt`` and ``cedar`` (their own model
namespaces and disjoint catalogues; popular tables in Redis for all but ``cedar``), ``dune``
(no models of its own: the shared default). Everything started
here is stopped by ``cluster.local.down`` (pid files, then the stack's tag).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cluster.local import LocalConfig, down, free_port, up

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"chaos-key-default": "default", "chaos-key-acme": "acme", "chaos-key-bolt": "bolt",
        "chaos-key-cedar": "cedar", "chaos-key-dune": "dune"}
# default: the shared registry; acme, bolt, cedar: models of their own (cedar without a popular
# table in Redis, so its popular fallback is its model's); dune: none, it gets the shared default
CATALOGUES = {"default": [f"d{i}" for i in range(1, 9)], "acme": [f"a{i}" for i in range(1, 9)],
              "bolt": [f"b{i}" for i in range(1, 9)], "cedar": [f"c{i}" for i in range(1, 9)]}
PUBLISHED_POPULAR = ("default", "acme", "bolt")
KEY_OF = {tenant: key for key, tenant in KEYS.items()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


# one HAProxy httplog line: ... server timers status bytes cookies termination-state conns queues "METHOD PATH"
_HTTPLOG = re.compile(r"\] \S+ (?P<server>\S+) (?P<timers>\S+) (?P<status>\d{3}) \d+ \S+ \S+ (?P<term>\S{4}) "
                      r"(?P<conns>\S+) \S+ \"(?P<method>\S+) (?P<path>\S+)")


@dataclass
class IngressLog:
    """HAProxy's access log for the chaos stack (syslog over UDP on loopback), kept in memory.

    Serve's HAProxy logs every request to ``RAY_SERVE_HAPROXY_LOG_TARGET``; with nothing listening
    there (the default) a request HAProxy answered itself leaves no trace. Here the 5xx lines and
    the retried ones are kept, so a failing fault test says which side produced a 5xx and how the
    connection ended (HAProxy's termination state: ``S`` = the server aborted, ``C`` = the client).
    """

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    kept: deque = field(default_factory=lambda: deque(maxlen=5000))
    lines: int = 0

    def start(self) -> str:
        self.sock.bind(("127.0.0.1", 0))
        threading.Thread(target=self._read, name="haproxy-log", daemon=True).start()
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except OSError:
                return
            self.lines += 1
            m = _HTTPLOG.search(data.decode(errors="replace"))
            if m and (int(m["status"]) >= 500 or not m["conns"].endswith("/0") or m["term"] != "----"):
                self.kept.append((time.time(), data.decode(errors="replace").strip()))

    def retried(self, t0: float) -> int:
        """Requests logged after ``t0`` that HAProxy sent again (to another replica) before answering."""
        return sum(1 for t, line in list(self.kept) if t >= t0 and (m := _HTTPLOG.search(line))
                   and not m["conns"].endswith("/0"))

    def since(self, t0: float, min_status: int = 500) -> list[str]:
        """Kept lines logged after ``t0`` with a status of at least ``min_status``."""
        out = []
        for t, line in list(self.kept):
            m = _HTTPLOG.search(line)
            if t >= t0 and m and int(m["status"]) >= min_status:
                out.append(line[line.find("]: ") + 3:])
        return out

    def close(self) -> None:
        self.sock.close()


@dataclass
class Stack:
    cfg: LocalConfig
    url: str
    registry: str
    env: dict[str, str]
    tmp: Path
    ingress_log: IngressLog | None = None

    def headers(self, tenant: str = "default") -> dict[str, str]:
        return {"X-API-Key": KEY_OF[tenant], "Content-Type": "application/json"}

    def deploy(self, *extra: str) -> None:
        """``python -m jobs.deploy`` as the demo runs it: the default config, two replicas."""
        out = subprocess.run([sys.executable, "-m", "jobs.deploy", "--registry", self.registry,
                              "--redis", self.cfg.redis_url, *[f"--api-key={k}={t}" for k, t in KEYS.items()],
                              "--address", self.cfg.dashboard_url, "--cores", "2",
                              "--http-port", str(self.cfg.serve_port), "--out", str(self.tmp / "serve.yaml"),
                              "--wait", *extra], env=self.env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def _register_catalogues(registry: str, tmp: Path) -> None:
    """A popularity recommender per tenant over its own items (default = the shared registry)."""
    from models.session_rec.artifact import pop_artifact
    from store.registry import Registry, tenant_uri

    for tenant, items in CATALOGUES.items():
        sessions = [items[: i + 1] for i in range(len(items))]   # item 1 most popular, then 2, ...
        reg = Registry(tenant_uri(registry, tenant))
        mv = reg.register("recommender", pop_artifact(tmp / f"pop-{tenant}", sessions), {"model_type": "pop"})
        reg.set_champion("recommender", mv.version, "chaos fixture")


def _publish_popular(redis_url: str) -> None:
    from store import codec, keys, publish

    client = publish.connect(redis_url)
    try:
        for tenant in PUBLISHED_POPULAR:
            items = CATALOGUES[tenant]
            version = keys.run_version("pop", "chaos1")
            top = [(item, 1.0 / (i + 1)) for i, item in enumerate(items)]
            publish.write_rows(client, "popular", version, [(tenant, keys.POPULAR_ENTITY, codec.encode_top_k(top))],
                               3600)
            publish.commit(client, "popular", version, tenant, {"rows": 1}, 3600)
    finally:
        client.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="tdm-chaos-", dir="/tmp"))
    cfg = LocalConfig(run_dir=tmp / "run", ray_port=free_port(), dashboard_port=free_port(),
                      redis_port=free_port(), serve_port=free_port(), metrics_port=free_port(),
                      agent_port=free_port(), client_port=free_port(), haproxy_stats_port=free_port(),
                      haproxy_metrics_port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TANDEM_"))}
    env.update({"RAY_ADDRESS": cfg.dashboard_url, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cfg.token_path),
                "PYTHONPATH": str(ROOT)})
    registry = str(tmp / "registry")
    ingress_log = IngressLog()
    try:
        with pytest.MonkeyPatch.context() as mp:   # HAProxy's access log comes here, for failure messages
            mp.setenv("RAY_SERVE_HAPROXY_LOG_TARGET", ingress_log.start())
            up(cfg)
        _register_catalogues(registry, tmp)
        _publish_popular(cfg.redis_url)
        stack = Stack(cfg=cfg, url=f"http://127.0.0.1:{cfg.serve_port}", registry=registry, env=env, tmp=tmp,
                      ingress_log=ingress_log)
        stack.deploy()
        deadline = time.time() + 60
        while time.time() < deadline:   # both replicas answer through HAProxy
            if httpx.get(f"{stack.url}/v1/health", timeout=5).status_code == 200:
                break
            time.sleep(0.5)
        yield stack
    finally:
        down(cfg)
        ingress_log.close()
        shutil.rmtree(tmp, ignore_errors=True)
