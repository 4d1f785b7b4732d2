"""wrk load for bench.soak: back-to-back short wrk runs on /v1/score and /v1/recommend.

Each run lasts ``segment_s`` seconds, so latency can be split by what the loop was doing
(publishing or not) from the runs' time windows. A Lua script alternates the two endpoints
over the session ids in a file the soak rewrites each tick (sessions active in the window),
paces each connection with ``delay`` (a constant offered load, not a saturating one), and
counts 5xx answers and fallback reasons from the bodies.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.serve import parse_wrk

LUA = r"""
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
if #ids == 0 then ids[1] = "no-session" end
local n = 0
local s5xx, other, fallback, precomputed = 0, 0, {}, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
request = function()
  n = n + 1
  local sid = ids[math.random(1, #ids)]
  if n %% 2 == 0 then
    return wrk.format(nil, "/v1/recommend", nil, '{"session_id":"' .. sid .. '","k":10}')
  end
  return wrk.format(nil, "/v1/score", nil, '{"session_id":"' .. sid .. '"}')
end
delay = function() return %(delay_ms)d end
response = function(status, headers, body)
  if status >= 500 then s5xx = s5xx + 1 elseif status >= 300 then other = other + 1 end
  if status == 200 then
    local reason = string.match(body, '"fallback_reason":"([%%w_]+)"')
    if reason then fallback[reason] = (fallback[reason] or 0) + 1 end
    if string.find(body, '"source":"precomputed"', 1, true) then precomputed = precomputed + 1 end
  end
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local s, o, p, fb = 0, 0, 0, {}
  for _, t in ipairs(threads) do
    s = s + t:get("s5xx"); o = o + t:get("other"); p = p + t:get("precomputed")
    for k, v in pairs(t:get("fallback")) do fb[k] = (fb[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(fb) do parts[#parts + 1] = '"' .. k .. '":' .. v end
  io.write('SOAK {"5xx":' .. s .. ',"other_non2xx":' .. o .. ',"precomputed":' .. p ..
           ',"fallbacks":{' .. table.concat(parts, ",") .. '}}\n')
end
"""


class Load:
    """wrk in ``segment_s`` runs until ``stop``; ``segments`` holds each run's window and figures."""

    def __init__(self, url: str, key: str, ids_file: Path, work: Path, connections: int = 2, delay_ms: int = 10,
                 segment_s: int = 2):
        self.url, self.connections, self.segment_s = url, connections, segment_s
        self.script = work / "soak.lua"
        self.script.write_text(LUA % {"ids": ids_file, "key": key, "delay_ms": delay_ms})
        self.segments: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wrk", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.segment_s + 15)

    def _run(self) -> None:
        cmd = ["wrk", "-t1", f"-c{self.connections}", f"-d{self.segment_s}s", "--latency", "--timeout", "2s",
               "-s", str(self.script), self.url]
        while not self._stop.is_set():
            t0 = time.time()
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            seg = {"start": t0, "end": time.time(), **parse_wrk(out)}
            non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
            sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
            seg["non2xx"] = int(non2xx.group(1)) if non2xx else 0
            seg["socket_errors"] = sum(map(int, sock.groups())) if sock else 0
            m = re.search(r"^SOAK (\{.*\})$", out, re.M)
            seg.update(json.loads(m.group(1)) if m else {"5xx": 0, "other_non2xx": 0, "fallbacks": {},
                                                          "parse_error": out[-300:]})
            self.segments.append(seg)


def p99_split(segments: list[dict[str, Any]], windows: list[tuple[float, float]]) -> dict[str, Any]:
    """p99 (the worst segment p99 and the median of segment p99s) of runs overlapping a publish
    window vs runs overlapping none."""
    def overlaps(seg: dict[str, Any]) -> bool:
        return any(seg["start"] < b and a < seg["end"] for a, b in windows)

    out: dict[str, Any] = {}
    for name, group in (("during_publish", [s for s in segments if overlaps(s)]),
                        ("between", [s for s in segments if not overlaps(s)])):
        p99 = sorted(s["p99_ms"] for s in group if s.get("p99_ms") is not None)
        out[name] = {"segments": len(group), "requests": sum(s.get("requests", 0) for s in group),
                     "p99_ms_median": p99[len(p99) // 2] if p99 else None, "p99_ms_max": p99[-1] if p99 else None}
    return out
