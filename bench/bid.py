"""Budgeted bidding on iPinYou campaign 2997 under the rlb-dp protocol, against rlb-dp's published numbers.

``python -m bench.bid [--data DIR] [--c0 0.03125 ...] [--no-rlb-dist]``
``python -m bench.bid --target stack|live ...``: the log through the live ``/v1/bid`` endpoint under
wrk load (``bench.bid_live``).

Protocol (han-cai/rlb-dp ``bid_ss.py``, reproduced in ``models.bidding.simulate``): the test log
``test.theta.txt`` (rows ``click market_price pCTR``) in file order, episodes of N = 1,000
auctions (the last 63 auctions are a short episode that still starts with n = N), budget
``B = int(c0 * N * CPM_train)`` with CPM_train = cost_train / imp_train from info.json (the
TRAIN average market price, 63.02: rlb-dp's ``self.cpm``), second price with ties won
(``bid >= market price``), bids capped at the remaining budget and at 300.

What each strategy uses, and how its parameters were set. Nothing is tuned on the test log:

* constant: bids b0, the highest whole bid whose expected payment per auction under the
  TRAIN market-price histogram (Laplace +1, as rlb-dp) is at most B / N.
* linear: b0 * pCTR / CTR_train (CTR_train = clk_train / imp_train).
* linear (rlb-dp b0): the same with rlb-dp's base bids, tuned by rlb-dp on the 2997 TRAIN log
  (their ``bid-model/lin-bid_1000_<c0>_clk_14205.pickle``: 10, 15, 20, 85, 130). A
  reproduction check of the replay, not a tandem strategy.
* ortb1 / ortb2 (Zhang et al. KDD'14): winning-function scale c fitted to the TRAIN
  market-price CDF; lambda set so that the bid at CTR_train is b0.
* paced(linear): linear scaled by a PID controller on the spend rate (kp 0.5, ki 0.1, every 50
  auctions; the defaults of ``PidConfig``, set before any replay). It sees its own spend.
* rlb (tandem's default): the RLB value function of rlb-dp (point CTR = CTR_train, TRAIN
  market-price histogram, N = 1,000), solved once for the largest budget (V(n, b) does not
  depend on the starting budget) and read per bid. It sees the remaining budget and auctions.
* ss_mdp: the same table, every impression priced at CTR_train (rlb-dp's SS-MDP baseline,
  which ignores pCTR); a reproduction check and a measure of what pCTR adds.
* rlb_recal (experimental, added after the other rows had been run on this log; not the
  default): ``rlb`` pricing each impression at p' = sigmoid(a + b logit pCTR), refitted every
  1,000 auctions by MAP on the (pCTR, click) pairs of the impressions it has WON so far (prior
  a ~ N(0, 1), b ~ N(1, 0.5^2), fixed before its first run). It sees its own clicks.
* rlb_dist: the paper's full form, h(x) = E[(theta - x)^+] over a pCTR distribution: the
  pCTRs of the bid requests of the first episode (no clicks, no prices), which is bid by
  ``rlb`` meanwhile. It also sees those unlabeled requests.

"tandem's default" was fixed as ``rlb`` from rlb-dp's published nine-campaign table (the only
strategy there never beaten by linear bidding). Differences are given as a paired bootstrap
over the 157 episodes (95 % interval of default minus the other strategy's clicks); with
~0.5 clicks per episode, differences of a few clicks are not significant.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from models.bidding.calibrate import build, linear_base, strategy_configs
from models.bidding.ipinyou import CampaignInfo, load_info, read_theta
from models.bidding.recalibrate import RecalConfig, RecalibratedBid
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
from models.bidding.simulate import AuctionLog, ReplayResult, episode_budget, merge, paired_bootstrap, replay
from models.bidding.strategies import (
    AuctionState,
    BidStrategy,
    LinearBid,
    LinearConfig,
    PacedBid,
    PidConfig,
    RlbBid,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ipinyou_2997"
C0S = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
N = 1000
MAX_BID = 300
DEFAULT = "rlb"
# rlb-dp README, camp 2997, N = 1000, c0 = 1/32: (clicks, impressions, cost, eCPC)
PUBLISHED = {"lin_bid": (71, 32208, 203610, 2.87), "rlb": (78, 39680, 304375, 3.90),
             "ss_mdp": (80, 40395, 306637, 3.83), "mcpc": (48, 14752, 307751, 6.41)}
RLBDP_LIN_B0 = {1 / 32: 10, 1 / 16: 15, 1 / 8: 20, 1 / 4: 85, 1 / 2: 130}


def _slice(log: AuctionLog, lo: int, hi: int) -> AuctionLog:
    return AuctionLog(log.click[lo:hi], log.price[lo:hi], log.pctr[lo:hi])


def _run_all(log: AuctionLog, info: CampaignInfo, c0: float, rlb: ValueTable,
             rlb_dist: ValueTable | None) -> dict[str, ReplayResult]:
    market = info.market()
    budget = episode_budget(info.cpm_train, c0, N)
    strategies: dict[str, BidStrategy] = {name: build(cfg) for name, cfg in
                                         strategy_configs(market, info.ctr_train, budget, N).items()}
    if c0 in RLBDP_LIN_B0:
        strategies["linear (rlb-dp b0)"] = LinearBid(LinearConfig(base=RLBDP_LIN_B0[c0], avg_ctr=info.ctr_train),
                                                     name="linear (rlb-dp b0)")
    strategies["paced(linear)"] = PacedBid(build(strategy_configs(market, info.ctr_train, budget, N)["linear"]),
                                           PidConfig())
    strategies["rlb"] = RlbBid(rlb)
    strategies["ss_mdp"] = RlbBid(rlb, "ss_mdp", fixed_ctr=info.ctr_train)
    strategies["rlb_recal"] = RecalibratedBid(RlbBid(rlb), RecalConfig(), name="rlb_recal")
    out = {name: replay(log, s, budget, N, MAX_BID) for name, s in strategies.items()}
    if rlb_dist is not None:
        warm = replay(_slice(log, 0, N), RlbBid(rlb), budget, N, MAX_BID)
        rest = replay(_slice(log, N, len(log)), RlbBid(rlb_dist, "rlb_dist"), budget, N, MAX_BID)
        out["rlb_dist"] = merge([warm, rest], "rlb_dist")
    return out


def _bid_latency_us(strategy: BidStrategy, pctrs: list[float], budget: float) -> float:
    """Mean microseconds per ``bid`` call over the given pCTRs, budget state moving as in an episode."""
    states = [AuctionState(N - i % N, budget * (1 - (i % N) / N), N, budget) for i in range(len(pctrs))]
    t0 = time.perf_counter()
    for p, st in zip(pctrs, states, strict=True):
        strategy.bid(p, st)
    return (time.perf_counter() - t0) / len(pctrs) * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder with test.theta.txt and info.json")
    ap.add_argument("--c0", type=float, nargs="+", default=None, help="budget ratios (replay: all five; "
                    "live: 1/32)")
    ap.add_argument("--no-rlb-dist", action="store_true", help="skip the pCTR-distribution RLB (one more DP solve)")
    ap.add_argument("--target", choices=["replay", "stack", "live"], default="replay",
                    help="replay: offline (rlb-dp protocol); stack: a private default deployment under wrk; "
                         "live: the running app (make demo) under wrk")
    ap.add_argument("--duration", type=int, default=60, help="live/stack: seconds per wrk point")
    ap.add_argument("--connections", default="4,8,16", help="live/stack: wrk connections per point "
                    "(bench.serve met its 10 ms p99 at 2-8 on this box)")
    ap.add_argument("--url", default=os.environ.get("TANDEM_SERVE_URL", "http://127.0.0.1:8000"),
                    help="live: the app's base URL (default $TANDEM_SERVE_URL)")
    ap.add_argument("--api-key", default=os.environ.get("TANDEM_DEMO_API_KEY", "demo-key"),
                    help="live: an API key of the default tenant (default $TANDEM_DEMO_API_KEY or demo-key)")
    ap.add_argument("--redis", default=os.environ.get("TANDEM_REDIS_URL"),
                    help="live: the app's Redis (default $TANDEM_REDIS_URL)")
    ap.add_argument("--registry", default=str(ROOT / "artifacts" / "registry"),
                    help="live: the app's registry, where the bench campaigns are published")
    args = ap.parse_args(argv)
    args.c0 = args.c0 or (list(C0S) if args.target == "replay" else [1 / 32])
    if not (args.data / "test.theta.txt").is_file():
        print(f"skipped: {args.data}/test.theta.txt not found (../shared/data is absent)")
        print(json.dumps({"bench": "bid", "skipped": f"{args.data} absent"}))
        return
    info = load_info(args.data / "info.json")
    log, quarantine = read_theta(args.data / "test.theta.txt")
    if args.target != "replay":
        from bench.bid_live import run_live

        print(json.dumps(run_live(args, log, info)))
        return
    market = info.market()
    b_max = max(episode_budget(info.cpm_train, c0, N) for c0 in args.c0)
    print(f"campaign 2997 test log: {len(log):,} auctions, {int(log.click.sum())} clicks, "
          f"quarantined {quarantine.total}; CPM_train {info.cpm_train:.3f}, CTR_train {info.ctr_train:.6f}; "
          f"load {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    rlb = ValueTable(solve_value_function(market, CtrModel.point(info.ctr_train), N, b_max), market.max_price)
    dp_point = time.perf_counter() - t0
    rlb_dist = None
    dp_dist = 0.0
    if not args.no_rlb_dist:
        t0 = time.perf_counter()
        ctr = CtrModel.from_sample(log.pctr[:N])
        rlb_dist = ValueTable(solve_value_function(market, ctr, N, b_max), market.max_price)
        dp_dist = time.perf_counter() - t0
    print(f"RLB tables N={N} x B={b_max}: point {dp_point:.1f} s, distribution {dp_dist:.1f} s")

    header = f"{'c0':>7} {'strategy':<22} {'clicks':>6} {'imps':>7} {'spend':>9} {'eCPC':>6} {'win%':>6}  " \
             f"{'default - this [95% CI]':>24}"
    print(header)
    print("-" * len(header))
    table: dict[str, dict[str, dict[str, object]]] = {}
    goal_every_c0 = True
    for c0 in args.c0:
        results = _run_all(log, info, c0, rlb, rlb_dist)
        default = results[DEFAULT]
        row: dict[str, dict[str, object]] = {}
        for name, r in results.items():
            lo, hi = paired_bootstrap(default.episode_clicks, r.episode_clicks) if name != DEFAULT else (0.0, 0.0)
            ci = "" if name == DEFAULT else f"{default.clicks - r.clicks:+d} [{lo:+.0f}, {hi:+.0f}]"
            print(f"{c0:>7.5f} {name:<22} {r.clicks:>6} {r.impressions:>7} {r.spend:>9.0f} {r.ecpc:>6.2f} "
                  f"{100 * r.win_rate:>5.1f}%  {ci:>24}")
            row[name] = {"clicks": r.clicks, "impressions": r.impressions, "spend": r.spend,
                         "ecpc": round(r.ecpc, 3), "overspent_episodes": r.overspent_episodes,
                         "diff_ci95": None if name == DEFAULT else [round(lo, 1), round(hi, 1)]}
        if c0 == 1 / 32:
            for name, (clk, imp, cost, ecpc) in PUBLISHED.items():
                print(f"{c0:>7.5f} {'rlb-dp README ' + name:<22} {clk:>6} {imp:>7} {cost:>9} {ecpc:>6.2f} "
                      f"{100 * imp / len(log):>5.1f}%")
        goal_every_c0 &= default.clicks >= max(results["linear"].clicks, results["rlb"].clicks)
        table[f"{c0:g}"] = row
        print(f"{'':>7} b0 = {linear_base(market, episode_budget(info.cpm_train, c0, N), N)}, "
              f"B = {episode_budget(info.cpm_train, c0, N)}")
    found = table.get(f"{1 / 32:g}", {}).get(DEFAULT, {}).get("clicks")
    best_1_32 = found if isinstance(found, int) else None
    budget = episode_budget(info.cpm_train, args.c0[0], N)
    pctrs = log.pctr[:100_000].tolist()
    latency = {name: round(_bid_latency_us(s, pctrs, budget), 2) for name, s in (
        ("constant", build(strategy_configs(market, info.ctr_train, budget, N)["constant"])),
        ("linear", build(strategy_configs(market, info.ctr_train, budget, N)["linear"])),
        ("ortb2", build(strategy_configs(market, info.ctr_train, budget, N)["ortb2"])),
        ("paced(linear)", PacedBid(build(strategy_configs(market, info.ctr_train, budget, N)["linear"]), PidConfig())),
        ("rlb", RlbBid(rlb)))}
    print(f"bid latency, microseconds per call in one Python thread (c0={args.c0[0]:g}): {latency}")
    ratio = best_1_32 / PUBLISHED["rlb"][0] if best_1_32 is not None else None
    print(f"ratio: tandem default ({DEFAULT}) clicks / rlb-dp published RLB clicks at c0=1/32 = "
          f"{best_1_32} / {PUBLISHED['rlb'][0]} = {ratio if ratio is None else round(ratio, 4)}")
    print(json.dumps({
        "bench": "bid", "campaign": "2997", "episode_len": N, "auctions": len(log), "default": DEFAULT,
        "published_c0_1_32": {k: {"clicks": v[0], "impressions": v[1], "spend": v[2], "ecpc": v[3]}
                              for k, v in PUBLISHED.items()},
        "results": table, "ratio_default_vs_published_rlb_clicks": ratio,
        "goal_more_than_78_at_1_32": bool(best_1_32 is not None and best_1_32 > PUBLISHED["rlb"][0]),
        "goal_default_at_least_linear_and_rlb_every_c0": goal_every_c0,
        "dp_seconds": {"point": round(dp_point, 1), "distribution": round(dp_dist, 1)},
        "bid_latency_us": latency,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
