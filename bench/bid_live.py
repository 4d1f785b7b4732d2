"""The live mode of ``bench.bid``: the 2997 test log through ``POST /v1/bid`` under wrk load.

    python -m bench.bid --target stack [--duration 60] [--connections 4,8,16]
    python -m bench.bid --target live [--url URL] [--api-key KEY] [--redis URL] [--registry URI]

``stack`` starts a private copy of the default deployment (``cluster.local up`` with its own run
dir and free ports, then ``jobs.deploy`` of ``serve/config.yaml``, exactly as ``make demo``
deploys it) and stops it afterwards; ``live`` drives an app already running (``make demo``:
URL, Redis and key from ``.run/env`` / ``TANDEM_SERVE_URL``, ``TANDEM_REDIS_URL``,
``TANDEM_DEMO_API_KEY``; the registry ``artifacts/registry``).

Per load point (wrk, one thread, ``c`` connections, ``--duration`` seconds):

* a campaign of its own, ``bench-2997-c<c>``, is published to the app's registry (RLB from the
  TRAIN market-price histogram and CTR of info.json; budget ``c0 x N x CPM_train`` over a
  period whose auctions forecast N is ``--duration`` x 1,000 requests/s, the goal rate), its
  period's budget reset in Redis; the app picks it up within its campaign poll interval;
* wrk replays the log in time order (wrapping around if it runs out), each request a bid with
  the log row's pCTR and a fresh bid id. Its Lua ``response`` hook settles each bid as the
  exchange would: the bid wins when its price is >= the row's market price and pays that price
  (a win notice), else a loss notice; notices go in batches of 32 to ``/v1/bid/notice``;
* a sampler reads the campaign's budget hash every 5 ms during the run: ``spent + reserved``
  must never pass the budget; after the run, the spend in Redis is checked against the budget
  and against the wins wrk counted.

The peer, in the same run: the same campaign deciding in process over the same rows in the same
order (``offline_peer``: exact budget state, no HTTP or Redis); the ratio printed is live clicks /
offline clicks (what serving costs the strategy: stale budget state, holds, concurrency), and
live p99 over the in-process decision time.

Latency and throughput are wrk's over all requests (bids, and notice batches: about 1 request
in 60). The goal: some point with >= 1,000 bids/s, p99 <= 10 ms, 0 errors, spend never over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.serve import parse_wrk
from models.bidding.campaign import CampaignConfig, CampaignSet
from models.bidding.ipinyou import CampaignInfo
from models.bidding.simulate import AuctionLog

ROOT = Path(__file__).resolve().parent.parent
GOAL_BIDS_PER_S = 1000.0
GOAL_P99_MS = 10.0
TENANT = "default"

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
local campaign = "%(campaign)s"
local run = "%(run)s"
local pctr, price, click = {}, {}, {}
for line in io.lines("%(log)s") do
  local p, m, c = line:match("^(%%S+) (%%d+) (%%d+)$")
  pctr[#pctr + 1] = p; price[#price + 1] = tonumber(m); click[#click + 1] = tonumber(c)
end
local rows = #pctr
-- globals, not locals: done() reads them through thread:get, which sees only a thread's globals
sent, bids, wins, clicks, spend, losses, notices = 0, 0, 0, 0, 0, 0, 0
reasons = {}
pending = {}
local function notice_body()
  local body = '{"notices":[' .. table.concat(pending, ",") .. ']}'
  pending = {}
  notices = notices + 1
  return wrk.format(nil, "/v1/bid/notice", nil, body)
end
request = function()
  if #pending >= 32 then return notice_body() end
  local i = sent
  sent = sent + 1
  local row = (i %% rows) + 1
  return wrk.format(nil, "/v1/bid", nil, '{"campaign_id":"' .. campaign .. '","bid_id":"' .. run .. '-' .. i ..
    '","pctr":' .. pctr[row] .. '}')
end
response = function(status, headers, body)
  if status ~= 200 then return end
  local i = body:match('^{"bid_id":"' .. run .. '%%-(%%d+)"')
  if not i then return end
  if body:find('"bid":true', 1, true) then
    bids = bids + 1
    local row = (tonumber(i) %% rows) + 1
    local bid = tonumber(body:match('"price":(%%d+)'))
    local period = body:match('"period":(%%d+)')
    local id = run .. '-' .. i
    if bid >= price[row] then
      wins = wins + 1; clicks = clicks + click[row]; spend = spend + price[row]
      pending[#pending + 1] = '{"campaign_id":"' .. campaign .. '","bid_id":"' .. id ..
        '","outcome":"win","price":' .. price[row] .. ',"period":' .. period .. '}'
    else
      losses = losses + 1
      pending[#pending + 1] = '{"campaign_id":"' .. campaign .. '","bid_id":"' .. id ..
        '","outcome":"loss","period":' .. period .. '}'
    end
  else
    local r = body:match('"reason":"([%%w_]+)"') or "?"
    reasons[r] = (reasons[r] or 0) + 1
  end
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    local parts = {}
    for k, v in pairs(t:get("reasons")) do parts[#parts + 1] = '"' .. k .. '":' .. v end
    io.write(string.format('BIDSTATS {"sent":%%d,"bids":%%d,"wins":%%d,"clicks":%%d,"spend":%%d,"losses":%%d,' ..
      '"notice_batches":%%d,"unsent_notices":%%d,"no_bid":{%%s}}\n', t:get("sent"), t:get("bids"), t:get("wins"),
      t:get("clicks"), t:get("spend"), t:get("losses"), t:get("notices"), #t:get("pending"),
      table.concat(parts, ",")))
  end
end
"""


def write_log(log: AuctionLog, path: Path) -> int:
    """The rows as ``pctr market_price click`` lines (what the Lua script reads); their count."""
    with open(path, "w") as f:
        for p, m, c in zip(log.pctr.tolist(), log.price.tolist(), log.click.tolist(), strict=True):
            f.write(f"{p!r} {int(m)} {int(c)}\n")
    return len(log)


def bench_campaign(campaign_id: str, info: CampaignInfo, auctions: int, c0: float, now_s: float,
                   period_s: int = 86_400) -> CampaignConfig:
    """The RLB campaign of a load point: train market histogram and CTR, budget c0 x N x CPM_train."""
    from datetime import UTC, datetime

    from models.bidding.simulate import episode_budget

    return CampaignConfig.model_validate({
        "campaign_id": campaign_id, "budget": episode_budget(info.cpm_train, c0, auctions),
        "period_s": period_s, "start": datetime.fromtimestamp(int(now_s) - 60, UTC).isoformat(),
        "auctions_per_period": auctions, "strategy": {"kind": "rlb", "avg_ctr": info.ctr_train},
        "market": {"counts": info.price_counter_train}, "max_bid": 300, "hold_ms": 5000})


def publish(registry_uri: str, redis_url: str, campaigns: list[CampaignConfig]) -> dict[str, Any]:
    """Publish the bench campaigns next to whatever the tenant has, and reset their period budgets."""
    import redis

    from models.bidding.book import REGISTRY_NAME, read_campaigns
    from store.campaigns import publish as publish_book
    from store.registry import Registry

    reg = Registry(registry_uri)
    keep: list[CampaignConfig] = []
    current = reg.champion(REGISTRY_NAME)
    if current is not None:
        with tempfile.TemporaryDirectory() as tmp:
            old = read_campaigns(reg.fetch(REGISTRY_NAME, current, tmp))
        ours = {c.campaign_id for c in campaigns}
        keep = [c for c in old.campaigns if c.campaign_id not in ours]
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return publish_book(reg, CampaignSet(campaigns=keep + campaigns), "bench.bid live", TENANT, client,
                            reset_spend=True)
    finally:
        client.close()


def wait_campaign(url: str, key: str, campaign_id: str, timeout_s: float = 120.0) -> None:
    """Until the app knows the campaign (a probe under an impossible floor: no budget is held)."""
    import httpx

    deadline = time.time() + timeout_s
    last = ""
    while time.time() < deadline:
        try:
            r = httpx.post(f"{url}/v1/bid", headers={"X-API-Key": key}, timeout=5, json={
                "campaign_id": campaign_id, "bid_id": f"probe-{secrets.token_hex(4)}", "pctr": 0.001,
                "floor": 1e9, "deadline_ms": 1000})
            last = f"{r.status_code} {r.text[:200]}"
            if r.status_code == 200 and r.json().get("reason") != "unknown_campaign":
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1.0)
    raise RuntimeError(f"{url} does not know campaign {campaign_id} after {timeout_s:.0f}s (last answer: {last})")


class Sampler(threading.Thread):
    """Reads a campaign period's budget hash every ``interval_s``; keeps the worst over-commitment."""

    def __init__(self, redis_url: str, key: str, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.redis_url, self.key, self.interval_s = redis_url, key, interval_s
        self.samples = 0
        self.worst = -10**18  # max over samples of spent + reserved - budget
        self.worst_spent = -10**18  # max of spent - budget
        self.halt = threading.Event()

    def run(self) -> None:
        import redis

        from store.budget import BudgetStore

        store = BudgetStore(redis.Redis.from_url(self.redis_url, socket_timeout=2), tenant=TENANT)
        while not self.halt.is_set():
            s = store.state(self.key)
            if s is not None:
                self.samples += 1
                self.worst = max(self.worst, s.spent + s.reserved - s.budget)
                self.worst_spent = max(self.worst_spent, s.spent - s.budget)
            time.sleep(self.interval_s)


_TABLES: dict[str, Any] = {}  # table_inputs -> solved RLB table (the load points share one)


def offline_peer(cfg: CampaignConfig, log: AuctionLog, sent: int) -> dict[str, Any]:
    """The peer: the same campaign's decisions in process on the rows wrk sent, in order, with exact state.

    Row ``i`` of the run is log row ``i mod len(log)``; the strategy sees ``n_left = N - i``
    (at least 1) and the budget left after the wins before it, with no HTTP, no Redis, no
    staleness and no concurrency: what the live endpoint would win if it were one in-process
    loop. Also times one decision (``decide``), the in-process cost of a bid."""
    from models.bidding.book import table_inputs
    from models.bidding.campaign import build_strategy, decide, solve_table
    from models.bidding.strategies import AuctionState

    table = None
    if cfg.market is not None:
        key = table_inputs(cfg)
        table = _TABLES[key] = _TABLES.get(key) or solve_table(cfg)
    strategy = build_strategy(cfg, table)
    pctr, price, click = log.pctr.tolist(), log.price.tolist(), log.click.tolist()
    rows, n, budget = len(pctr), cfg.auctions_per_period, cfg.budget
    left, bids, wins, clicks, spend = budget, 0, 0, 0, 0
    t0 = time.perf_counter()
    for i in range(sent):
        r = i % rows
        d = decide(strategy, pctr[r], AuctionState(max(1, n - i), float(left), n, float(budget)), 0.0, cfg.max_bid)
        if d.price <= 0:
            continue
        bids += 1
        if d.price >= price[r]:
            wins, clicks, spend, left = wins + 1, clicks + click[r], spend + price[r], left - price[r]
    seconds = time.perf_counter() - t0
    return {"sent": sent, "bids": bids, "wins": wins, "clicks": clicks, "spend": spend,
            "decision_us": round(seconds / max(sent, 1) * 1e6, 2)}


def run_point(url: str, key: str, redis_url: str, cfg: CampaignConfig, log_path: Path, conns: int,
              duration: int, tmp: Path) -> dict[str, Any]:
    import redis

    from store.budget import BudgetStore

    script = tmp / f"bid-{cfg.campaign_id}.lua"
    script.write_text(LUA % {"key": key, "campaign": cfg.campaign_id, "run": f"r{secrets.token_hex(3)}",
                             "log": str(log_path)})
    budget_key = f"{cfg.campaign_id}.0"
    sampler = Sampler(redis_url, budget_key)
    sampler.start()
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "2s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    time.sleep(0.2)
    sampler.halt.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = parse_wrk(proc.stdout)
    found = re.search(r"^BIDSTATS (\{.*\})$", proc.stdout, re.M)
    stats: dict[str, Any] = json.loads(found.group(1)) if found else {}
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    state = BudgetStore(client, tenant=TENANT).state(budget_key)
    client.close()
    seconds = duration
    bid_requests = stats.get("sent", 0)
    res.update({
        "connections": conns, "campaign": cfg.campaign_id, "budget": cfg.budget,
        "bid_requests_per_s": round(bid_requests / seconds, 1) if seconds else 0.0,
        "sent": stats.get("sent"), "bids": stats.get("bids"), "wins": stats.get("wins"), "clicks": stats.get("clicks"),
        "no_bid": stats.get("no_bid", {}), "notice_batches": stats.get("notice_batches"),
        "spend_wrk": stats.get("spend"), "unsent_notices": stats.get("unsent_notices"),
        "redis": None if state is None else {"budget": state.budget, "spent": state.spent,
                                             "reserved": state.reserved, "late_wins": state.late_wins,
                                             "seen": state.seen},
        "budget_samples": sampler.samples, "max_committed_over_budget": sampler.worst,
        "max_spent_over_budget": sampler.worst_spent})
    res["spend_ok"] = bool(state is not None and state.spent <= state.budget and sampler.worst <= 0
                           and state.late_wins == 0)
    res["goal_met"] = bool(res["spend_ok"] and res["errors"] == 0 and res["p99_ms"] is not None
                           and res["p99_ms"] <= GOAL_P99_MS and res["bid_requests_per_s"] >= GOAL_BIDS_PER_S)
    return res


@contextmanager
def private_stack(tmp: Path) -> Iterator[dict[str, str]]:
    """The default deployment on private ports and run dir: ``cluster.local up``, ``jobs.deploy``; down after."""
    from cluster.local import free_port

    run_dir = tmp / "run"
    ports = {name: str(free_port()) for name in (
        "TANDEM_RAY_PORT", "TANDEM_DASHBOARD_PORT", "TANDEM_REDIS_PORT", "TANDEM_SERVE_PORT", "TANDEM_METRICS_PORT",
        "TANDEM_AGENT_PORT", "TANDEM_CLIENT_PORT", "TANDEM_HAPROXY_STATS_PORT", "TANDEM_HAPROXY_METRICS_PORT")}
    env = {**os.environ, "TANDEM_RUN_DIR": str(run_dir), **ports,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("RAY_ADDRESS", None)
    py = sys.executable
    try:
        subprocess.run([py, "-m", "cluster.local", "up"], env=env, cwd=ROOT, check=True, timeout=600)
        for line in (run_dir / "env").read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
        key = f"bench-{secrets.token_hex(8)}"
        registry = str(tmp / "registry")
        subprocess.run([py, "-m", "jobs.deploy", "--config", str(ROOT / "serve" / "config.yaml"),
                        "--registry", registry, "--redis", env["TANDEM_REDIS_URL"], "--api-key", f"{key}=default",
                        "--address", env["RAY_ADDRESS"], "--http-port", ports["TANDEM_SERVE_PORT"],
                        "--out", str(run_dir / "serve.resolved.yaml"), "--wait"],
                       env=env, cwd=ROOT, check=True, timeout=900)
        yield {"url": f"http://127.0.0.1:{ports['TANDEM_SERVE_PORT']}", "api_key": key,
               "redis": env["TANDEM_REDIS_URL"], "registry": registry}
    finally:
        subprocess.run([py, "-m", "cluster.local", "down"], env=env, cwd=ROOT, timeout=300)


def run_live(ns: argparse.Namespace, log: AuctionLog, info: CampaignInfo) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    conns = [int(c) for c in ns.connections.split(",") if c]
    tmp = Path(tempfile.mkdtemp(prefix="tdm-bidlive-", dir="/tmp"))
    try:
        log_path = tmp / "log.txt"
        write_log(log, log_path)
        auctions = int(ns.duration * GOAL_BIDS_PER_S)
        now = time.time()
        campaigns = [bench_campaign(f"bench-2997-c{c}", info, auctions, ns.c0[0], now) for c in conns]
        if ns.target == "stack":
            with private_stack(tmp) as app:
                return _drive(ns, app, campaigns, conns, log, log_path, tmp)
        app = {"url": ns.url, "api_key": ns.api_key, "redis": ns.redis, "registry": ns.registry}
        return _drive(ns, app, campaigns, conns, log, log_path, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(ns: argparse.Namespace, app: dict[str, str], campaigns: list[CampaignConfig], conns: list[int],
           log: AuctionLog, log_path: Path, tmp: Path) -> dict[str, Any]:
    for name in ("url", "api_key", "redis", "registry"):
        if not app.get(name):
            raise SystemExit(f"--target live needs --{name.replace('_', '-')} (or the demo's .run/env)")
    published = publish(app["registry"], app["redis"], campaigns)
    print(f"published {published['version']} ({len(campaigns)} bench campaigns) to {app['registry']}", flush=True)
    points = []
    for cfg, c in zip(campaigns, conns, strict=True):
        wait_campaign(app["url"], app["api_key"], cfg.campaign_id)
        load = os.getloadavg()[0]
        res = run_point(app["url"], app["api_key"], app["redis"], cfg, log_path, c, ns.duration, tmp)
        res["load_before"] = round(load, 2)
        peer = res["offline_peer"] = offline_peer(cfg, log, res.get("sent") or 0)
        res["clicks_ratio_live_over_offline"] = round((res["clicks"] or 0) / peer["clicks"], 3) \
            if peer["clicks"] else None
        res["p99_over_decision"] = round(res["p99_ms"] * 1000 / peer["decision_us"], 1) \
            if res["p99_ms"] is not None and peer["decision_us"] else None
        print(f"  peer (offline decisions on the same {peer['sent']} rows, in process): bids {peer['bids']} "
              f"wins {peer['wins']} clicks {peer['clicks']} spend {peer['spend']} / {cfg.budget}, "
              f"{peer['decision_us']} us per decision; live/offline clicks {res['clicks_ratio_live_over_offline']}, "
              f"live p99 / decision time {res['p99_over_decision']}x", flush=True)
        points.append(res)
        redis_state = res["redis"] or {}
        print(f"live c={c:<3d} {res['bid_requests_per_s']:8.1f} bids/s  {res['rps']:8.1f} req/s  "
              f"p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  errors {res['errors']}  "
              f"bids {res['bids']} wins {res['wins']} clicks {res['clicks']}  spent {redis_state.get('spent')} / "
              f"budget {cfg.budget} (max committed over budget {res['max_committed_over_budget']}, "
              f"{res['budget_samples']} samples)  no-bids {res['no_bid']}  load {res['load_before']}", flush=True)
    met = [p["connections"] for p in points if p["goal_met"]]
    print(f"goal: >= {GOAL_BIDS_PER_S:,.0f} bids/s, p99 <= {GOAL_P99_MS:g} ms, 0 errors, spend never over "
          f"budget: {'met at c=' + ','.join(map(str, met)) if met else 'NOT met'}")
    return {"bench": "bid", "target": ns.target, "url": app["url"], "duration_s": ns.duration, "c0": ns.c0[0],
            "points": points, "goal_met_at_connections": met, "goal_met": bool(met),
            "spend_never_over_budget": all(p["spend_ok"] for p in points),
            "clicks_ratio_live_over_offline": [p["clicks_ratio_live_over_offline"] for p in points],
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
