"""LightGBM with Ray Train V2 (``LightGBMTrainer``) vs plain ``lightgbm.train``: same data, same params.

    python -m bench.train [--rows 2000000] [--features 30] [--rounds 100] [--layouts 1x2,2x1] [--repeats 2]
                          [--sweep-trials 20]

Each layout ``WxT`` runs ``W`` Ray Train workers with ``T`` threads each (``2x1`` is
data-parallel LightGBM over its network; ``1x2`` is one worker using both cores). The plain
peer uses all the cluster's CPUs as threads. Per Ray run the overhead is split into:

- ``worker_start``: trainer built (incl. ``ray.data.from_pandas``) -> the train loop starts
  on the workers (controller, placement group, worker actors, backend setup);
- ``ingest``: each worker's Ray Data shard to pandas (split + ``materialize`` + ``to_pandas``);
- ``convert``: to the float matrix and ``lightgbm.Dataset`` construction (the plain run pays
  its own ``Dataset`` construction too);
- ``train``: ``lightgbm.train`` itself (includes the socket network setup with 2 workers);
- ``teardown``: report + checkpoint + worker shutdown until ``fit()`` returns.

``worker_start`` and ``teardown`` are split further by a Train callback (``PhaseStamps``, a
developer API) that stamps the controller's own hooks: ``controller_up`` (``fit()`` -> the
controller actor runs), ``data_setup`` (``ray.data.from_pandas`` and the rest of ``fit()``'s
set-up before it), ``placement`` (worker-group start requested -> placement group ready and
worker actors up), ``backend`` (-> the backend set up and the loop dispatched), ``report``
(loop done -> the controller sees the finished workers; it polls every
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default), ``shutdown`` (worker group and
placement group removed) and ``return`` (-> ``fit()`` returns in the driver).

``--sweep-trials N`` also times an N-trial ``jobs.tune_propensity`` sweep on a sample.
The last line is one JSON object with ``ratio`` (best Ray layout / plain).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
LABEL = "label"


def synthetic(rows: int, features: int, seed: int = 0) -> pd.DataFrame:
    """Float features; a logistic label on a few of them with ~5 % positives."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = np.zeros(features)
    w[: min(6, features)] = [1.2, -0.8, 0.6, 0.5, -0.4, 0.3][: min(6, features)]
    logit = x @ w + 0.5 * x[:, 0] * x[:, min(1, features - 1)] - 3.4
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    df[LABEL] = y
    return df


def params(threads: int, rounds: int) -> dict[str, Any]:
    return {"objective": "binary", "learning_rate": 0.1, "num_leaves": 63, "min_data_in_leaf": 50,
            "feature_fraction": 1.0, "bagging_fraction": 1.0, "verbose": -1, "seed": 0, "num_threads": threads,
            "max_bin": 255, "_rounds": rounds}


def plain(df: pd.DataFrame, threads: int, rounds: int) -> dict[str, float]:
    import lightgbm as lgb

    t0 = time.perf_counter()
    cols = [c for c in df.columns if c != LABEL]
    x, y = df[cols].to_numpy(np.float32), df[LABEL].to_numpy()
    dset = lgb.Dataset(x, label=y, params={"max_bin": 255}, free_raw_data=False).construct()
    t1 = time.perf_counter()
    p = params(threads, rounds)
    booster = lgb.train({k: v for k, v in p.items() if k != "_rounds"}, dset, num_boost_round=rounds)
    t2 = time.perf_counter()
    return {"total": t2 - t0, "convert": t1 - t0, "train": t2 - t1, "trees": booster.num_trees()}


def _loop(config: dict[str, Any]) -> None:
    """Ray Train worker: stamps each phase (wall clock, same host) and reports them."""
    import lightgbm as lgb
    import ray.train

    t_start = time.time()
    shard = ray.train.get_dataset_shard("train").materialize().to_pandas()
    t_ingest = time.time()
    cols = [c for c in shard.columns if c != LABEL]
    p = {k: v for k, v in config["params"].items() if k != "_rounds"}
    if config["workers"] > 1:
        from ray.train.lightgbm import get_network_params

        p.update(tree_learner="data_parallel", pre_partition=True, **get_network_params())
    dset_params = {"max_bin": p["max_bin"], **({"pre_partition": True} if config["workers"] > 1 else {})}
    dset = lgb.Dataset(shard[cols].to_numpy(np.float32), label=shard[LABEL].to_numpy(), params=dset_params).construct()
    t_convert = time.time()
    booster = lgb.train(p, dset, num_boost_round=config["params"]["_rounds"])
    t_train = time.time()
    metrics = {"t_start": t_start, "t_ingest": t_ingest, "t_convert": t_convert, "t_train": t_train,
               "rows": len(shard), "trees": booster.num_trees()}
    # Train V2 keeps metrics on the Result only when they come with a checkpoint (rank 0's)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            (Path(tmp) / "stamps.json").write_text(json.dumps(metrics))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def _phase_stamps(path: str) -> Any:
    """A Train callback (developer API, runs in the controller) appending ``name time`` lines to ``path``."""
    from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback

    class PhaseStamps(ControllerCallback, WorkerGroupCallback):
        def _stamp(self, name: str) -> None:
            with open(path, "a") as f:
                f.write(f"{name} {time.time()}\n")

        def after_controller_start(self, train_run_context: Any) -> None:
            self._stamp("controller_start")

        def before_worker_group_start(self, worker_group_context: Any) -> None:
            self._stamp("group_start")

        def after_worker_group_start(self, worker_group: Any) -> None:
            self._stamp("group_ready")

        def after_worker_group_training_start(self, worker_group: Any) -> None:
            self._stamp("training_start")

        def before_worker_group_shutdown(self, worker_group: Any) -> None:
            self._stamp("group_shutdown")

        def after_worker_group_shutdown(self, worker_group_context: Any) -> None:
            self._stamp("group_down")

        def after_controller_finish(self, result: Any) -> None:
            self._stamp("controller_finish")

    return PhaseStamps()


def ray_train(df: pd.DataFrame, workers: int, threads: int, rounds: int) -> dict[str, float]:
    import ray.data
    import ray.train
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tdm-bench-") as tmp:
        stamps_path = str(Path(tmp) / "stamps.txt")
        trainer = LightGBMTrainer(
            _loop, train_loop_config={"params": params(threads, rounds), "workers": workers},
            datasets={"train": ray.data.from_pandas(df)},
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": threads}),
            run_config=RunConfig(name=f"bench-train-{int(t0)}", storage_path=str(Path(tmp) / "storage"),
                                 callbacks=[_phase_stamps(stamps_path)]))
        t_fit = time.time()
        result = trainer.fit()
        t_end = time.time()
        st = {}
        for line in Path(stamps_path).read_text().splitlines():
            name, value = line.split()
            st.setdefault(name, float(value))  # first occurrence (one worker group per run here)
    m = result.metrics  # rank 0's stamps
    out = {"total": t_end - t0, "worker_start": m["t_start"] - t0, "ingest": m["t_ingest"] - m["t_start"],
           "convert": m["t_convert"] - m["t_ingest"], "train": m["t_train"] - m["t_convert"],
           "teardown": t_end - m["t_train"], "rows_rank0": m["rows"], "trees": m["trees"]}
    if {"controller_start", "group_start", "group_ready", "group_down", "controller_finish"} <= st.keys():
        out.update({"data_setup": t_fit - t0, "controller_up": st["controller_start"] - t_fit,
                    "pre_group": st["group_start"] - st["controller_start"],
                    "placement": st["group_ready"] - st["group_start"],
                    "backend": m["t_start"] - st["group_ready"],
                    "report": st.get("group_shutdown", st["group_down"]) - m["t_train"],
                    "shutdown": st["group_down"] - st.get("group_shutdown", st["group_down"]),
                    "return": t_end - st["group_down"]})
    return out


def sweep(df: pd.DataFrame, trials: int, rows: int, trainer: str) -> dict[str, Any]:
    """Time ``python -m jobs.tune_propensity`` (a subprocess: nothing imports ``jobs``) on this
    cluster, with ``trials`` trials of up to 100 rounds on a ``rows``-row sample."""
    import subprocess

    import ray

    sample = df.sample(n=min(rows, len(df)), random_state=0)
    with tempfile.TemporaryDirectory(prefix="tdm-bench-sweep-") as tmp:
        path = Path(tmp) / "table.parquet"
        sample.to_parquet(path)
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        cmd = [sys.executable, "-m", "jobs.tune_propensity", "--features", str(path), "--label", LABEL,
               "--trials", str(trials), "--rounds", "100", "--trainer", trainer, "--out", str(Path(tmp) / "out"),
               "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            logger.error("sweep failed (rc %d):\n%s", proc.returncode, proc.stderr[-3000:])
        res = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
        return {"trials": trials, "rows": len(sample), "trainer": trainer, "seconds": round(seconds, 1),
                "sweep_seconds": res.get("sweep_seconds"), "rc": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--layouts", default="1x2,2x1", help="Ray Train layouts WORKERSxTHREADS, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest of each counts")
    parser.add_argument("--sweep-trials", type=int, default=0, help="also time an N-trial tune_propensity sweep")
    parser.add_argument("--sweep-rows", type=int, default=20_000)
    parser.add_argument("--sweep-trainer", choices=["ray-train", "booster"], default="ray-train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    if not ray.is_initialized():
        # tandem's clusters run Train with a 0.5 s controller poll (cluster/local.py,
        # cluster/runtime_env.yaml); a Ray started here gets the same setting
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(log_to_driver=False, include_dashboard=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    t = time.perf_counter()
    df = synthetic(args.rows, args.features)
    logger.info("data: %d rows x %d features, %.1f %% positive, built in %.1f s", len(df), args.features,
                100 * df[LABEL].mean(), time.perf_counter() - t)
    layouts = []
    for layout in args.layouts.split(","):
        w, th = (int(v) for v in layout.lower().split("x"))
        if w * th > cpus:
            logger.warning("skip layout %s: needs %d CPUs, cluster has %d", layout, w * th, cpus)
            continue
        layouts.append((layout, w, th))
    # Interleave the variants and keep each one's fastest repeat: the box is shared, and its
    # load moves timings far more than the variants differ.
    trials: dict[str, list[dict[str, float]]] = {"plain": [], **{name: [] for name, _, _ in layouts}}
    for rep in range(args.repeats):
        trials["plain"].append(plain(df, cpus, args.rounds))
        b = trials["plain"][-1]
        logger.info("[%d] plain lightgbm.train (%d threads): %.2f s (Dataset %.2f s, train %.2f s)", rep, cpus,
                    b["total"], b["convert"], b["train"])
        for name, w, th in layouts:
            r = ray_train(df, w, th, args.rounds)
            trials[name].append(r)
            logger.info("[%d] Ray Train %s: %.2f s = worker start %.2f + ingest %.2f + convert %.2f + train %.2f + "
                        "teardown %.2f", rep, name, r["total"], r["worker_start"], r["ingest"], r["convert"],
                        r["train"], r["teardown"])
            if "placement" in r:
                logger.info("[%d]   fixed cost: data set-up %.2f, controller up %.2f, to group start %.2f, placement + "
                            "worker actors %.2f, backend + dispatch %.2f | report seen %.2f, group shutdown %.2f, "
                            "fit() return %.2f", rep, r["data_setup"], r["controller_up"], r["pre_group"],
                            r["placement"], r["backend"], r["report"], r["shutdown"], r["return"])
    base = min(trials["plain"], key=lambda r: r["total"])
    runs = {name: min(trials[name], key=lambda r: r["total"]) for name, _, _ in layouts}
    for name, r in runs.items():
        logger.info("fastest Ray Train %s: %.2f s vs plain %.2f s = %.2fx (train phase alone %.2fx)", name,
                    r["total"], base["total"], r["total"] / base["total"], r["train"] / base["train"])
    best = min(runs, key=lambda k: runs[k]["total"]) if runs else None
    out: dict[str, Any] = {"rows": args.rows, "features": args.features, "rounds": args.rounds, "cpus": cpus,
                           "plain": {k: round(v, 3) for k, v in base.items()},
                           "ray": {k: {m: round(v, 3) for m, v in r.items()} for k, r in runs.items()},
                           "best_layout": best,
                           "ratio": round(runs[best]["total"] / base["total"], 3) if best else None,
                           "ratios": {k: round(r["total"] / base["total"], 3) for k, r in runs.items()},
                           "all_totals": {k: [round(r["total"], 2) for r in v] for k, v in trials.items()}}
    if args.sweep_trials:
        out["sweep"] = sweep(df, args.sweep_trials, args.sweep_rows, args.sweep_trainer)
        logger.info("sweep: %d trials on %d rows in %.1f s", args.sweep_trials, out["sweep"]["rows"],
                    out["sweep"]["seconds"])
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
