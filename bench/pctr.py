"""The bidder's pCTR model through tandem's propensity pipeline: calibration against the truth.

    python -m bench.pctr [--rows 100000] [--holdout 50000] [--registry URI]

1. ``models.bidding.synthetic_ctr`` draws an impression log with a known true CTR (multi-field
   categoricals with missing values, Zipf ids, a numeric floor price with gaps): ``--rows`` rows
   to train on, ``--holdout`` more from the same truth, never seen by the job.
2. ``jobs.train_propensity --name pctr`` (its library call, on a private local Ray without a
   dashboard) trains on the first part (``market_price`` and
   ``true_ctr`` excluded: neither is known at bid time) and registers the model as ``pctr``;
   its JSON carries the reliability table and ECE of its own test split.
3. On the holdout, the registered model (``PctrPredictor``, the class ``/v1/bid`` serves) is
   scored and compared with the truth: reliability table and ECE against the clicks, the
   same for the true CTR (the peer: a perfectly calibrated model's ECE is not 0 on a finite
   sample), log loss ratio model / truth, and the mean gap to the true CTR. ``predict_one``
   latency (one impression, as a bid with features pays it) is timed.
4. Smoke runs of the same job on the Criteo and Avazu schema samples in ../shared/data (tiny:
   they show the pipeline takes those schemas, not model quality).

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "data" / "schema_samples"


def train(features: Path, label: str, registry: Path, **extra: Any) -> dict[str, Any]:
    """``jobs.train_propensity --name pctr``'s library call, on this process's private Ray."""
    from pipelines.train_propensity import TrainConfig, train_and_register

    return train_and_register(TrainConfig(features=str(features), label=label, name="pctr",
                                          registry=str(registry), **extra))


def brief(rep: dict[str, Any]) -> str:
    return (f"ECE {rep['ece']:.5f}, calibration ratio {rep['calibration_ratio']:.3f}, "
            f"NE {rep['normalized_entropy']:.4f}, log loss {rep['log_loss']:.5f}")


def main(argv: list[str] | None = None) -> None:
    from models.bidding.pctr import PctrPredictor
    from models.bidding.synthetic_ctr import SyntheticCtrConfig, make_ctr_table
    from models.evaluation.calibration import calibration_report
    from store.registry import load_predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--holdout", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--registry", help="register into this registry (default: a temp one)")
    args = ap.parse_args(argv)
    from pipelines.raycluster import connect

    tmp = Path(tempfile.mkdtemp(prefix="tdm-pctr-", dir="/tmp"))
    connect(own_local=True, num_cpus=2, temp_dir=str(tmp / "ray"), log_to_driver=False)
    registry = Path(args.registry) if args.registry else tmp / "registry"
    data = make_ctr_table(SyntheticCtrConfig(rows=args.rows + args.holdout, seed=args.seed))
    frame = data.frame
    train_part, hold = frame.iloc[: args.rows], frame.iloc[args.rows:]
    train_part.to_csv(tmp / "impressions.csv", index=False)
    t0 = time.perf_counter()
    job = train(tmp / "impressions.csv", "click", registry, exclude=["market_price", "true_ctr"])
    train_s = time.perf_counter() - t0
    print(f"trained {job['model']} ({job['selected']}, calibration {job['calibration']}) in {train_s:.0f} s; "
          f"registered pctr {job.get('version')}; test split: {brief(job['reliability'])}", flush=True)
    model = load_predictor(PctrPredictor, str(registry), cache_dir=str(tmp / "cache"))
    features = hold.drop(columns=["click", "market_price", "true_ctr"])
    pctr = model.predict_proba(features)
    y = hold["click"].to_numpy()
    truth = hold["true_ctr"].to_numpy()
    ours = calibration_report(y, np.clip(pctr, 0, 1), bins=10)
    oracle = calibration_report(y, truth, bins=10)
    gap = float(np.mean(np.abs(pctr - truth)))
    corr = float(np.corrcoef(pctr, truth)[0, 1])
    rows = features.head(2000).to_dict("records")
    t1 = time.perf_counter()
    for r in rows:
        model.predict_one(r)
    one_us = (time.perf_counter() - t1) / len(rows) * 1e6
    print(f"holdout ({len(hold):,} rows, CTR {y.mean():.5f}): model {brief(ours.as_dict())}")
    print(f"holdout, the true CTR as the peer:            {brief(oracle.as_dict())}")
    ratio = ours.log_loss / oracle.log_loss
    print(f"ratio log loss model / truth = {ratio:.4f}; mean |pCTR - true CTR| = {gap:.5f}; "
          f"corr(pCTR, true CTR) = {corr:.3f}; predict_one {one_us:.0f} us")
    print(f"{'bin':>3} {'pCTR range':>21} {'rows':>6} {'clicks':>6} {'mean pCTR':>9} {'observed':>9} {'95% CI':>17}")
    for i, b in enumerate(ours.bins):
        print(f"{i:>3} {b.lo:>10.5f}-{b.hi:<10.5f} {b.count:>6} {b.clicks:>6} {b.mean_pred:>9.5f} "
              f"{b.observed:>9.5f} [{b.ci_low:.5f}, {b.ci_high:.5f}]")
    smoke: dict[str, Any] = {}
    for name, label, extra in (("criteo", "label", {}), ("avazu", "click", {"time_column": "hour",
                                                                             "exclude": ["id"]})):
        path = SAMPLES / f"{name}_sample.csv"
        if not path.is_file():
            smoke[name] = {"skipped": f"{path} absent"}
            continue
        try:
            r = train(path, label, tmp / f"registry-{name}", **extra)
            smoke[name] = {"ok": True, "rows": r.get("columns"), "reliability_ece": r["reliability"]["ece"],
                           "test_rows": r["reliability"]["rows"]}
        except Exception as exc:  # noqa: BLE001 - reported: the schema sample is what is tested
            smoke[name] = {"ok": False, "error": str(exc)[-600:]}
        print(f"smoke {name}: {smoke[name]}", flush=True)
    print(json.dumps({"bench": "pctr", "rows": args.rows, "holdout": len(hold), "train_seconds": round(train_s, 1),
                      "job": {k: job.get(k) for k in ("model", "selected", "calibration", "version", "split")},
                      "job_test_reliability": job["reliability"], "holdout_reliability": ours.as_dict(),
                      "truth_reliability": oracle.as_dict(), "ratio_log_loss_model_vs_truth": round(ratio, 4),
                      "mean_abs_gap_to_truth": round(gap, 6), "corr_with_truth": round(corr, 4),
                      "predict_one_us": round(one_us, 1), "smoke": smoke,
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
