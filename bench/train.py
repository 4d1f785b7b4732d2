"""LightGBM with Ray Train V2 (``LightGBMTrainer``) vs a plain local fit: same data, same params.

    python -m bench.train [--rows 2000000] [--features 30] [--rounds 100] [--layouts 1x2,2x1] [--repeats 2]
                          [--sweep-trials 20]

Both sides run the propensity job's own code: the Ray side is
``pipelines.train_propensity.train_distributed`` (what ``jobs.train_propensity`` calls),
the plain side ``to_matrix`` + ``fit_booster`` in the driver (what each Train worker runs),
with one ``PropensityConfig`` (binary log loss, lr 0.1, 63 leaves, no early stopping).

Each layout ``WxT[:INGEST]`` runs ``W`` Ray Train workers with ``T`` threads each (``2x1`` is
data-parallel LightGBM over its network; ``1x2`` is one worker using both cores); ``INGEST``
forces how rows reach the workers (``object_ref`` or ``ray_data``; default ``auto``, the
job's rule). The plain peer uses all the cluster's CPUs as threads. Per Ray run the overhead
is split into:

- ``worker_start``: ``train_distributed`` called (incl. the data set-up: matrices put, or
  ``ray.data.from_pandas``) -> the train loop starts on the workers (controller, placement
  group, worker actors, backend setup);
- ``ingest``: object refs: ``ray.get`` of the worker's matrix block; Ray Data: the shard's
  ``materialize`` + ``to_pandas``;
- ``convert``: Ray Data only: ``to_matrix`` on the worker (object refs: done in the driver,
  inside ``data_setup``; the plain run's ``convert`` is its ``to_matrix``);
- ``train``: ``fit_booster`` (``lightgbm.Dataset`` construction + ``lightgbm.train``; includes
  the socket network setup with 2 workers);
- ``teardown``: report + checkpoint + worker shutdown until ``train_distributed`` returns.

``worker_start`` and ``teardown`` are split further by a Train callback (``PhaseStamps``, a
developer API) that stamps the controller's own hooks: ``controller_up`` (``fit()`` -> the
controller actor runs), ``data_setup`` (``train_distributed`` called -> ``fit()``: matrices
put, or ``ray.data.from_pandas``), ``placement`` (worker-group start requested -> placement group ready and
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


def config(threads: int, rounds: int) -> Any:
    """The bench's booster: binary log loss, lr 0.1, 63 leaves, no early stopping, ``threads`` threads."""
    from models.propensity.model import PropensityConfig

    return PropensityConfig(kind="lightgbm", imbalance="none", num_boost_round=rounds, early_stopping_rounds=0,
                            learning_rate=0.1, num_leaves=63, max_depth=16, min_child_samples=50,
                            feature_fraction=1.0, bagging_fraction=1.0, reg_lambda=0.0, num_threads=threads, seed=0)


def plain(df: pd.DataFrame, threads: int, rounds: int) -> dict[str, float]:
    """The local fit the job's Train workers run: ``to_matrix`` then ``fit_booster`` (no Ray)."""
    from models.propensity.model import fit_booster, to_matrix

    t0 = time.perf_counter()
    features = [c for c in df.columns if c != LABEL]
    x, y = to_matrix(df, features), df[LABEL].to_numpy(np.float64)
    t1 = time.perf_counter()
    booster = fit_booster(config(threads, rounds), x, y, None, None, features)
    t2 = time.perf_counter()
    return {"total": t2 - t0, "convert": t1 - t0, "train": t2 - t1, "trees": booster.num_trees()}


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


def ray_train(df: pd.DataFrame, workers: int, threads: int, rounds: int, ingest: str = "auto") -> dict[str, float]:
    """One fit through ``pipelines.train_propensity.train_distributed``, the job's own path."""
    from pipelines.train_propensity import train_distributed

    features = [c for c in df.columns if c != LABEL]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tdm-bench-") as tmp:
        stamps_path = str(Path(tmp) / "stamps.txt")
        fitted = train_distributed(config(threads, rounds), df, None, features, workers, str(Path(tmp) / "storage"),
                                   ingest=ingest,  # type: ignore[arg-type]
                                   cpus_per_worker=threads, callbacks=[_phase_stamps(stamps_path)],
                                   name=f"bench-train-{int(t0)}", label=LABEL)
        t_end = time.time()
        st = {}
        for line in Path(stamps_path).read_text().splitlines():
            name, value = line.split()
            st.setdefault(name, float(value))  # first occurrence (one worker group per run here)
    m = fitted.metrics  # rank 0's stamps
    out = {"total": t_end - t0, "worker_start": m["t_start"] - t0, "ingest": m["t_ingest"] - m["t_start"],
           "convert": m["t_convert"] - m["t_ingest"], "train": m["t_train"] - m["t_convert"],
           "teardown": t_end - m["t_train"], "rows_rank0": m["rows"], "trees": fitted.booster.num_trees()}
    if {"controller_start", "group_start", "group_ready", "group_down", "controller_finish"} <= st.keys():
        t_fit = fitted.fit_start
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


def _auth_env() -> None:
    """Token auth for a Ray started here, unless the caller set it (Ray reads it at import)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    import secrets

    token = Path(tempfile.mkdtemp(prefix="tdm-bt-auth-")) / "token"
    token.write_text(secrets.token_hex(32))
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--layouts", default="1x2,2x1",
                        help="Ray Train layouts WORKERSxTHREADS[:INGEST], comma-separated; INGEST is auto (default), "
                             "object_ref or ray_data")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest of each counts")
    parser.add_argument("--sweep-trials", type=int, default=0, help="also time an N-trial tune_propensity sweep")
    parser.add_argument("--sweep-rows", type=int, default=20_000)
    parser.add_argument("--sweep-trainer", choices=["ray-train", "booster"], default="ray-train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _auth_env()
    import ray

    if not ray.is_initialized():
        # a Ray started here gets the Train settings of tandem's local cluster (cluster/local.py):
        # the shorter controller poll and no preemption watcher
        from pipelines.raycluster import use_train_local_env

        use_train_local_env()
        # Ray starts its workers at nice +15; the plain fit runs at the caller's priority. Same
        # footing for both (as bench.serve does), else any other load on the box slows only Ray.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(log_to_driver=False, include_dashboard=False,
                 **({} if os.environ.get("RAY_ADDRESS") else {"_temp_dir": tempfile.mkdtemp(prefix="tdm-bt-")}))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    t = time.perf_counter()
    df = synthetic(args.rows, args.features)
    logger.info("data: %d rows x %d features, %.1f %% positive, built in %.1f s", len(df), args.features,
                100 * df[LABEL].mean(), time.perf_counter() - t)
    layouts = []
    for layout in args.layouts.split(","):
        shape, _, ingest = layout.lower().partition(":")
        w, th = (int(v) for v in shape.split("x"))
        if w * th > cpus:
            logger.warning("skip layout %s: needs %d CPUs, cluster has %d", layout, w * th, cpus)
            continue
        layouts.append((layout, w, th, ingest or "auto"))
    # Interleave the variants and keep each one's fastest repeat: the box is shared, and its
    # load moves timings far more than the variants differ.
    trials: dict[str, list[dict[str, float]]] = {"plain": [], **{name: [] for name, *_ in layouts}}
    for rep in range(args.repeats):
        trials["plain"].append(plain(df, cpus, args.rounds))
        b = trials["plain"][-1]
        logger.info("[%d] plain fit (%d threads): %.2f s (to_matrix %.2f s, fit_booster %.2f s)", rep, cpus,
                    b["total"], b["convert"], b["train"])
        for name, w, th, ingest in layouts:
            r = ray_train(df, w, th, args.rounds, ingest)
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
    runs = {name: min(trials[name], key=lambda r: r["total"]) for name, *_ in layouts}
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
