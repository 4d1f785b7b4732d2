"""Choosing bench.bid's default strategy on validation logs that owe nothing to the test log.

    python -m bench.bid_select [--data DIR] [--episodes 157]

The rule, written down before the test log was run with its outcome (see /work/plan/results/bid.md):

1. Validation logs are simulated from ``info.json`` alone (the TRAIN market-price histogram and
   the TRAIN CTR), in episodes of N = 1,000 auctions like the test protocol:
   * logit(pCTR) ~ Normal(mu, sigma^2) with mu set so that E[pCTR] = CTR_train, for sigma in
     {0.5, 1.0} (the pCTR spread is unknown without the test log, so both);
   * click ~ Bernoulli(pCTR) (a calibrated pCTR);
   * market price from the train histogram through a Gaussian copula with the pCTR's normal
     score, correlation rho in {0, 0.3} (better impressions may cost more);
   * one seed per (sigma, rho): 4 logs of ``--episodes`` x 1,000 auctions.
2. Candidates: every tandem strategy of bench.bid with its parameters from info.json only
   (constant, linear, ortb1, ortb2, paced(linear), rlb, ss_mdp, rlb_recal, rlb_dist), not the
   reproduction row ``linear (rlb-dp b0)`` (rlb-dp's own train-tuned bids for this campaign).
3. Score = clicks summed over the 4 logs and the 5 budgets c0 in {1/32, ..., 1/2}. The default
   is the candidate with the highest score; a candidate within 0.5 % of the best loses to
   ``rlb`` if rlb is within that margin too (the incumbent keeps its place on a tie).
4. Then the test log is run once (``python -m bench.bid``) and the chosen strategy's result is
   reported as it comes, whatever it is.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from bench.bid import C0S, DATA, N, _run_all
from models.bidding.ipinyou import CampaignInfo, load_info
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
from models.bidding.simulate import AuctionLog, episode_budget

SIGMAS = (0.5, 1.0)
RHOS = (0.0, 0.3)
EXCLUDED = ("linear (rlb-dp b0)",)
TIE = 0.005


def synthetic_log(info: CampaignInfo, auctions: int, sigma: float, rho: float, seed: int) -> AuctionLog:
    """A validation log from the train information only (see the module docstring)."""
    rng = np.random.default_rng(seed)
    target = info.ctr_train
    lo, hi = -20.0, 5.0
    probe = rng.standard_normal(200_000)
    for _ in range(60):  # mu such that E[expit(mu + sigma z)] = CTR_train
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(mid + sigma * probe).mean() < target else (lo, mid)
    z = rng.standard_normal(auctions)
    pctr = expit((lo + hi) / 2 + sigma * z)
    click = (rng.random(auctions) < pctr).astype(np.int64)
    u = norm.cdf(rho * z + np.sqrt(1 - rho * rho) * rng.standard_normal(auctions))
    cdf = np.cumsum(info.market().pdf)
    price = np.minimum(np.searchsorted(cdf, u * cdf[-1], side="left"), len(cdf) - 1).astype(np.int64)
    return AuctionLog(click, price, pctr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder with info.json")
    ap.add_argument("--episodes", type=int, default=157, help="episodes of 1,000 auctions per validation log")
    args = ap.parse_args(argv)
    if not (args.data / "info.json").is_file():
        print(json.dumps({"bench": "bid_select", "skipped": f"{args.data} absent"}))
        return
    info = load_info(args.data / "info.json")
    market = info.market()
    b_max = max(episode_budget(info.cpm_train, c0, N) for c0 in C0S)
    t0 = time.perf_counter()
    rlb = ValueTable(solve_value_function(market, CtrModel.point(info.ctr_train), N, b_max), market.max_price)
    print(f"RLB point table: {time.perf_counter() - t0:.0f} s", flush=True)
    totals: dict[str, int] = {}
    per_c0: dict[str, dict[str, int]] = {}
    logs = []
    for i, (sigma, rho) in enumerate((s, r) for s in SIGMAS for r in RHOS):
        log = synthetic_log(info, args.episodes * N, sigma, rho, seed=1000 + i)
        dist = ValueTable(solve_value_function(market, CtrModel.from_sample(log.pctr[:N]), N, b_max),
                          market.max_price)
        logs.append({"sigma": sigma, "rho": rho, "ctr": round(float(log.click.mean()), 6),
                     "mean_price": round(float(log.price.mean()), 2)})
        for c0 in C0S:
            results = _run_all(log, info, c0, rlb, dist)
            for name, r in results.items():
                if name in EXCLUDED:
                    continue
                totals[name] = totals.get(name, 0) + r.clicks
                per_c0.setdefault(f"{c0:g}", {})[name] = per_c0.get(f"{c0:g}", {}).get(name, 0) + r.clicks
            print(f"sigma {sigma} rho {rho} c0 {c0:g}: " + ", ".join(
                f"{k} {v.clicks}" for k, v in results.items() if k not in EXCLUDED), flush=True)
    best = max(totals, key=lambda k: totals[k])
    chosen = "rlb" if totals.get("rlb", 0) >= totals[best] * (1 - TIE) else best
    ranking = sorted(totals.items(), key=lambda kv: -kv[1])
    print("validation clicks (4 logs x 5 budgets): " + ", ".join(f"{k} {v}" for k, v in ranking))
    print(f"chosen default: {chosen}")
    print(json.dumps({"bench": "bid_select", "episodes": args.episodes, "logs": logs, "totals": dict(ranking),
                      "per_c0": per_c0, "chosen": chosen, "tie_margin": TIE,
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
