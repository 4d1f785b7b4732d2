"""The live default deployment against schemathesis (all checks) and a hand-written hostile list."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import Stack

ST = shutil.which("st") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "st")
MIN_CASES = 2000


@pytest.mark.skipif(not Path(ST).exists(), reason="schemathesis (the dev extra) is not installed")
def test_schemathesis_all_checks_finds_nothing(stack: Stack, tmp_path: Path) -> None:
    """Positive and negative cases over every operation, every check, >= 2,000 cases, 0 failures."""
    out = subprocess.run([ST, "run", f"{stack.url}/openapi.json", "--checks", "all", "--mode", "all",
                          "-H", f"X-API-Key: {stack.headers()['X-API-Key']}", "--max-examples", "650",
                          "--workers", "1", "--seed", "16", "--no-color", "--request-timeout", "10",
                          "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
                         capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    tail = out.stdout[-6000:] + out.stderr[-2000:]
    summary = re.search(r"Test cases:\s*\n\s*(.+)", out.stdout)
    print(f"\nschemathesis: {summary.group(1).strip() if summary else '?'}")
    generated = re.search(r"(\d+) generated", out.stdout)
    assert generated is not None, tail
    assert int(generated.group(1)) >= MIN_CASES, tail
    assert out.returncode == 0 and "No issues found" in out.stdout, tail
    assert re.search(r"Operations:\s+6 selected / 6 total", out.stdout), tail  # + /v1/bid, /v1/bid/notice


def _raw(stack: Stack, head: bytes, body: bytes, send_body: int | None = None) -> int:
    """Status of a hand-built HTTP/1.1 request (for bodies httpx would not send as they are)."""
    with socket.create_connection(("127.0.0.1", stack.cfg.serve_port), timeout=30) as s:
        s.sendall(head)
        try:
            sent = 0
            limit = len(body) if send_body is None else send_body
            while sent < limit:
                sent += s.send(body[sent: sent + 65536])
        except OSError:   # the server answered and closed before the whole body was sent: fine
            pass
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


HOSTILE_EVENTS = [
    b'{"session_id": "s1", "events": [{"item_id": "i1", "price": NaN}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "price": Infinity}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "price": -Infinity}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "price": 1e999}]}',
    b'{"session_id": "__meta__", "events": [{"item_id": "i1"}]}',
    b'{"session_id": "__all__", "events": [{"item_id": "i1"}]}',
    b'{"session_id": "x:tandem:acme:sess", "events": [{"item_id": "i1"}]}',
    b'{"session_id": "s\\u0000", "events": [{"item_id": "i1"}]}',
    b'{"session_id": "s1", "events": [{"item_id": "__meta__\\n"}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "event_time": "9999-12-31T23:59:59Z"}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "event_time": "0001-01-01T00:00:00Z"}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "event_time": 1700000000}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "event_type": ""}]}',
    b'{"session_id": "s1", "events": [{"item_id": "i1", "price": true}]}',
    b'{"session_id": true, "events": [{"item_id": "i1"}]}',
    b'{"session_id": "s1", "events": {"item_id": "i1"}}',
    b'{"session_id": "s1", "events": []}',
    b'[]', b'null', b'"s1"', b'{', b'\xff\xfe', b'',
]
HOSTILE_SCORE = [
    b'{"session_id": "__meta__"}', b'{"session_id": "__all__"}', b'{"session_id": "a:b"}',
    b'{"session_id": "s1", "deadline_ms": NaN}', b'{"session_id": "s1", "deadline_ms": 0}',
    b'{"session_id": "s1", "deadline_ms": true}', b'{"session_id": "s1", "events": [{"item_id": "i", "price": NaN}]}',
]
HOSTILE_RECOMMEND = [
    b'{"session_id": "__all__"}', b'{"session_id": "s1", "k": 1e9}', b'{"session_id": "s1", "k": true}',
    b'{"session_id": "s1", "exclude_seen": 0}', b'{"session_id": "s1", "items": ["a:b"]}',
    b'{"session_id": "s1", "k": -1}', b'{"session_id": "s1", "items": "d1"}',
]

HOSTILE_BID = [
    b'{"campaign_id": "c1", "bid_id": "b1", "pctr": NaN}', b'{"campaign_id": "c1", "bid_id": "b1", "pctr": 1e999}',
    b'{"campaign_id": "c1", "bid_id": "b1", "pctr": null}', b'{"campaign_id": "c1", "bid_id": "b1"}',
    b'{"campaign_id": "c1", "bid_id": "b1", "pctr": 0.1, "features": {}}',
    b'{"campaign_id": "c1.0", "bid_id": "b1", "pctr": 0.1}', b'{"campaign_id": "c1", "bid_id": "b 1", "pctr": 0.1}',
    b'{"campaign_id": "c1", "bid_id": "b1", "features": {"a b": 1}}',
    b'{"campaign_id": "c1", "bid_id": "b1", "pctr": 0.1, "floor": -Infinity}',
]
HOSTILE_NOTICE = [
    b'{"notices": []}', b'{"notices": [{"campaign_id": "c1", "bid_id": "b1", "outcome": "win"}]}',
    b'{"notices": [{"campaign_id": "c1", "bid_id": "b1", "outcome": "loss", "price": null}]}',
    b'{"notices": [{"campaign_id": "c1", "bid_id": "b1", "outcome": "win", "price": 1e99}]}',
    b'{"notices": [{"campaign_id": "c1", "bid_id": "b1", "outcome": "win", "price": true}]}',
]


def test_hostile_bodies_get_only_4xx(stack: Stack) -> None:
    codes: dict[tuple[str, bytes], int] = {}
    with httpx.Client(timeout=30) as c:
        for path, bodies in (("/v1/events", HOSTILE_EVENTS), ("/v1/score", HOSTILE_SCORE),
                             ("/v1/recommend", HOSTILE_RECOMMEND), ("/v1/bid", HOSTILE_BID),
                             ("/v1/bid/notice", HOSTILE_NOTICE)):
            for body in bodies:
                for tenant in ("default", "acme"):
                    r = c.post(f"{stack.url}{path}", content=body, headers=stack.headers(tenant))
                    codes[(path, body)] = r.status_code
                    assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:300])
                    assert len(r.content) < 4000, (path, body, len(r.content))
        # 10,000 events: over the body cap (413) or, under it, over the 500-event limit (422), never echoed
        ten_k = json.dumps({"session_id": "s1", "events": [{"item_id": f"i{i}"} for i in range(10_000)]})
        r = c.post(f"{stack.url}/v1/events", content=ten_k, headers=stack.headers())
        assert r.status_code in (413, 422) and len(r.content) < 4000, (r.status_code, r.text[:300])
        # the same without a key: refused before the body is read
        r = c.post(f"{stack.url}/v1/events", content=ten_k, headers={"Content-Type": "application/json"})
        assert r.status_code in (401, 413), r.status_code
    # a 30 MB body without a key: refused on its Content-Length, long before it is all sent
    body = b'{"session_id": "s1", "events": [' + b'{"item_id": "i1"},' * (30 * 1024 * 1024 // 18) + b'{"item_id": "i"}]}'
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    assert _raw(stack, head, body, send_body=1 << 20) in (401, 413)
    # ... and streamed without a Content-Length (chunked): cut at the cap, still a 4xx
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
                       (body[i: i + 65536] for i in range(0, 4 << 20, 65536)))
    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    for key in (b"", b"X-API-Key: " + stack.headers()["X-API-Key"].encode() + b"\r\n"):
        assert 400 <= _raw(stack, head + key + b"\r\n", chunked) < 500
    # nothing a hostile body said reached Redis
    import redis

    client = redis.Redis.from_url(stack.cfg.redis_url)
    try:
        odd = [k for k in client.scan_iter("tandem:*:sess:*") if b"__" in k or k.count(b":") != 3]
    finally:
        client.close()
    assert odd == [], odd
