"""Tune GRU4Rec or SASRec with Optuna (TPE) + ASHA on a validation split carved from train.

    python -m jobs.tune_recommender --train TR --valid VALID --format session-tsv --model gru4rec \
        --num-samples 12 --epochs 6 --out-config best.yaml --json

The test split is never read. Without ``--valid`` the last ``--valid-fraction`` of the
(time-ordered) training sessions is held out and scored with protocol (a). ``--out-config``
writes a YAML that ``jobs.train_recommender --config`` accepts.

``--model hybrid`` grid-searches the first part's weight (0, 0.1, ..., 1) and, with
``--temperature-grid``, the neural part's softmax temperature with it; ``--metric
recall@20+mrr@20`` maximises their sum.

``--model vsknn|vstan`` grid-searches a kNN model in process (no Ray): every combination
of the ``--grid key=v1,v2`` values is fitted on the carved train split and scored on
validation (``--valid-sample`` scores a fixed random subset of the validation pairs).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.session_rec.base import item_counts
from models.session_rec.config import load_config
from models.session_rec.data import EncodedData, load_dataset, read_session_lines, read_session_tsv
from pipelines import raycluster

logger = logging.getLogger(__name__)



class TuneConfig(BaseModel):
    """What ``tune`` needs (``python -m jobs.tune_recommender`` flags, same names)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    train: str
    valid: str | None = Field(None, description="validation file in the train format (default: carve from train)")
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    format: Literal["session-tsv", "session-lines"]
    model: Literal["gru4rec", "sasrec", "hybrid", "vsknn", "vstan"]
    grid: list[str] | None = Field(None, description="kNN models: key=v1,v2 specs")
    valid_sample: int | None = Field(None, ge=1)
    parts_from: list[str] | None = None
    config: str | None = Field(None, description="YAML RecommenderConfig with the fixed parameters")
    metric: Literal["mrr@20", "recall@20", "recall@20+mrr@20"] = "mrr@20"
    temperature_grid: str | None = None
    num_samples: int = Field(12, ge=1)
    epochs: int = Field(6, ge=1)
    grace_period: int = Field(2, ge=1)
    concurrency: int = Field(2, ge=1)
    num_cpus: int = Field(2, ge=1)
    ray_temp_dir: str | None = None
    storage: str | None = None
    out_config: str | None = None
    smoke_test: bool = Field(False, description="tiny data (300 train sessions, 100 validation pairs), one epoch")

def search_space(model: str) -> dict[str, Any]:
    from ray import tune

    if model == "gru4rec":
        return {"learning_rate": tune.loguniform(0.02, 0.5), "momentum": tune.uniform(0.0, 0.5),
                "dropout_p_hidden": tune.uniform(0.0, 0.6), "dropout_p_embed": tune.uniform(0.0, 0.5),
                "layers": tune.choice([[64], [100], [160]]), "sample_alpha": tune.uniform(0.0, 1.0),
                "logq": tune.choice([0.0, 1.0])}
    if model == "sasrec":
        return {"learning_rate": tune.loguniform(3e-4, 5e-3), "hidden": tune.choice([32, 64, 128]),
                "n_layers": tune.choice([1, 2]), "dropout": tune.uniform(0.0, 0.5)}
    raise ValueError(f"tuning supports gru4rec and sasrec, not {model!r}")


def carve_validation(opts: TuneConfig) -> EncodedData:
    """train/valid from --valid, or the last --valid-fraction of train sessions; never the test file."""
    if opts.valid:
        return load_dataset(opts.train, opts.valid, opts.format)
    sessions = read_session_tsv(opts.train) if opts.format == "session-tsv" else read_session_lines(opts.train)
    cut = int(len(sessions) * (1 - opts.valid_fraction))
    with tempfile.TemporaryDirectory() as tmp:
        tr, va = Path(tmp) / "train.txt", Path(tmp) / "valid.txt"
        tr.write_text("\n".join(" ".join(s) for s in sessions[:cut]) + "\n", encoding="utf-8")
        va.write_text("\n".join(" ".join(s) for s in sessions[cut:]) + "\n", encoding="utf-8")
        return load_dataset(tr, va, "session-lines")


def trainable(config: dict[str, Any], data: EncodedData, model: str, base: dict[str, Any], seed: int) -> None:
    import torch
    from ray import tune

    from models.session_rec.batching import pack
    from models.session_rec.evaluate import evaluate_model
    from models.session_rec.network import GRU4RecScorer
    from models.session_rec.sasrec import SASRecScorer
    from models.session_rec.training import GRU4RecTrainer, SASRecTrainer

    torch.set_num_threads(1)
    params = {**base, **config}
    n = len(data.items)  # type: ignore[arg-type]
    cls = GRU4RecTrainer if model == "gru4rec" else SASRecTrainer
    trainer = cls(n, item_counts(data.train, n), params, seed=seed)
    items, offsets = pack(data.train)
    for epoch in range(params["n_epochs"]):
        stats = trainer.train_epoch(items, offsets)
        scorer = GRU4RecScorer(trainer.net, params) if model == "gru4rec" else SASRecScorer(trainer.net, params)
        metrics = evaluate_model(scorer, data)
        tune.report({"epoch": epoch + 1, "loss": stats["loss"], "events_per_s": stats["events_per_s"],
                     "recall@20": metrics["recall@20"], "mrr@20": metrics["mrr@20"]})


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the k largest scores (any order; ties at the k-th broken arbitrarily)."""
    k = min(k, scores.shape[1])
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def mix_ranks(d0: np.ndarray, d1: np.ndarray, w0: float, w1: float, targets: np.ndarray, top0: np.ndarray,
              top1: np.ndarray, cap: int = 20) -> np.ndarray:
    """Conservative ranks of ``targets`` under HybridModel's mix ``(w0 * d0 + w1 * d1).astype(float32)``.

    Exact for every rank <= ``cap``; a rank known to be above ``cap`` is returned as n_items + 1 (a miss at
    every cutoff <= cap). ``top0`` / ``top1``: per row, the top-K columns of d0 / d1. An item outside both
    has d0 <= b0 and d1 <= b1 (the K-th values), so its mix is <= B = mix(b0, b1) (rounding is monotone):
    if the target's mix is > B only the candidate columns can outrank it; if more than ``cap`` candidates
    already do, the rank is above cap; otherwise the row is ranked over the whole catalogue.
    """
    n_rows, n = d0.shape
    targets = np.asarray(targets, dtype=np.int64)
    ranks = np.full(n_rows, float(n + 1))
    ok = (targets >= 0) & (targets < n)
    r = np.arange(n_rows)[:, None]
    cand = np.sort(np.concatenate([top0, top1, np.where(ok, targets, 0)[:, None]], axis=1), axis=1)
    first = np.ones(cand.shape, dtype=bool)
    first[:, 1:] = cand[:, 1:] != cand[:, :-1]  # each column counted once
    mix_c = (w0 * d0[r, cand] + w1 * d1[r, cand]).astype(np.float32)
    t = np.where(ok, targets, 0)
    mix_t = (w0 * d0[r[:, 0], t] + w1 * d1[r[:, 0], t]).astype(np.float32)
    count = ((mix_c >= mix_t[:, None]) & first).sum(axis=1)
    bound = (w0 * d0[r, top0].min(axis=1) + w1 * d1[r, top1].min(axis=1)).astype(np.float32)
    exact = ok & np.isfinite(mix_t) & (mix_t > bound)
    ranks[exact] = count[exact]
    rest = np.nonzero(ok & ~exact & (count <= cap))[0]
    if len(rest):
        from models.evaluation.ranking import ranks_from_scores

        full = (w0 * d0[rest] + w1 * d1[rest]).astype(np.float32)
        ranks[rest] = ranks_from_scores(full, targets[rest])
    return ranks


def tune_hybrid(opts: TuneConfig) -> dict[str, Any]:
    """Fit each hybrid part on the train split (or load ``--parts-from``), grid-search weights on valid."""
    from models.evaluation.ranking import RankMetrics
    from models.session_rec.artifact import load_artifact
    from models.session_rec.batching import pack
    from models.session_rec.evaluate import BASELINES, fit_baseline
    from models.session_rec.hybrid import NEURAL, as_distribution
    from models.session_rec.network import GRU4RecScorer
    from models.session_rec.sasrec import SASRecScorer
    from models.session_rec.training import GRU4RecTrainer, SASRecTrainer

    cfg = load_config(opts.config, model="hybrid")
    data = carve_validation(opts)
    if opts.smoke_test:
        data.train, data.test_prefixes = data.train[-300:], data.test_prefixes[:100]
        data.test_targets = data.test_targets[:100]
    n = len(data.items)  # type: ignore[arg-type]
    parts = []
    for i, part in enumerate(cfg.hybrid.parts):
        if opts.parts_from and i < len(opts.parts_from) and opts.parts_from[i] != "-":
            art = load_artifact(opts.parts_from[i])
            if art.items.ids != data.items.ids:  # type: ignore[attr-defined]
                raise ValueError(f"{opts.parts_from[i]}: item map differs from the carved train split")
            parts.append(art.model)
        elif part in BASELINES:
            parts.append(fit_baseline(part, data, getattr(cfg, part).model_dump() if part != "pop" else {}))
        else:
            params = getattr(cfg, part).model_dump()
            if opts.smoke_test:
                params["n_epochs"] = 1
            trainer = (GRU4RecTrainer if part == "gru4rec" else SASRecTrainer)(n, item_counts(data.train, n), params,
                                                                               seed=cfg.seed)
            items, offsets = pack(data.train)
            for _ in range(params["n_epochs"]):
                trainer.train_epoch(items, offsets)
            parts.append(GRU4RecScorer(trainer.net, params) if part == "gru4rec" else SASRecScorer(trainer.net, params))
    if len(parts) != 2:
        raise ValueError("weight search supports exactly two parts")
    grid = np.round(np.linspace(0.0, 1.0, 11), 2)
    # --temperature-grid: the softmax temperature of the neural part(s) (kNN parts keep 1); default: the config's
    neural = [p.model_type in NEURAL for p in parts]
    base_t = list(cfg.hybrid.temperatures or [1.0, 1.0])
    if opts.temperature_grid and not any(neural):
        raise ValueError("--temperature-grid needs a neural part (gru4rec or sasrec)")
    temps = [float(t) for t in opts.temperature_grid.split(",")] if opts.temperature_grid else [None]
    metrics = {(t, w): RankMetrics() for t in temps for w in grid}
    keep = [i for i, p in enumerate(data.test_prefixes) if len(p)]
    for start in range(0, len(keep), 512):
        rows = keep[start:start + 512]
        prefixes = [data.test_prefixes[i] for i in rows]
        s0, s1 = parts[0].score(prefixes), parts[1].score(prefixes)
        top0, top1 = top_columns(s0, 100), top_columns(s1, 100)  # a softmax / normalisation keeps the order
        for t in temps:
            t0, t1 = [base_t[i] if t is None or not neural[i] else t for i in range(2)]
            d0 = as_distribution(parts[0].model_type, s0, t0)
            d1 = as_distribution(parts[1].model_type, s1, t1)
            for w in grid:  # ranks of HybridModel.score with weights [w, 1 - w] (exact up to rank 20)
                metrics[(t, w)].add_ranks(mix_ranks(d0, d1, float(w), round(1.0 - float(w), 2),
                                                    data.test_targets[rows], top0, top1))
        logger.info("hybrid grid: %d / %d validation pairs scored", start + len(rows), len(keep))
    table = {key: m.result() for key, m in metrics.items()}

    def objective(key: tuple[float | None, float]) -> tuple[float, float]:
        r = table[key]
        value = r["recall@20"] + r["mrr@20"] if opts.metric == "recall@20+mrr@20" else r[opts.metric]
        return (round(value, 6), r["mrr@20"])  # ties: higher MRR@20, then grid order (T as given, w ascending)

    best_t, best_w = max(table, key=objective)
    weights = [float(best_w), round(1.0 - float(best_w), 2)]
    temperatures = None if best_t is None else [best_t if neural[i] else 1.0 for i in range(2)]
    if opts.out_config:
        import yaml

        hyb: dict[str, Any] = {"parts": list(cfg.hybrid.parts), "weights": weights}
        if temperatures is not None or cfg.hybrid.temperatures is not None:
            hyb["temperatures"] = temperatures or cfg.hybrid.temperatures
        out = {"model": "hybrid", "hybrid": hyb}
        for part in cfg.hybrid.parts:
            if part != "pop":
                out[part] = getattr(cfg, part).model_dump()
        Path(opts.out_config).write_text(yaml.safe_dump(out), encoding="utf-8")
    valid = {(str(w) if t is None else f"T={t} w={w}"): {k: round(r[k], 4) for k in ("recall@20", "mrr@20",
                                                                                   "recall@10", "mrr@10")}
             for (t, w), r in table.items()}
    report = {"model": "hybrid", "metric": opts.metric, "parts": list(cfg.hybrid.parts), "best_weights": weights,
              "valid": valid, "valid_pairs": len(data.test_prefixes)}
    if best_t is not None:
        report["best_temperatures"] = temperatures
    return report


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["k=100,500", "lambda_snh=none,2000"]`` -> {"k": [100, 500], "lambda_snh": [None, 2000.0]}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid {spec!r}: expected key=v1,v2,...")
        out: list[Any] = []
        for v in values.split(","):
            v = v.strip()
            out.append(None if v.lower() == "none" else int(v) if v.lstrip("-").isdigit() else float(v))
        grid[key.strip()] = out
    return grid


def tune_knn(opts: TuneConfig) -> dict[str, Any]:
    """Grid search of a kNN model's parameters on the validation split (no Ray)."""
    import itertools

    from models.session_rec.evaluate import evaluate_model, fit_baseline

    cfg = load_config(opts.config, model=opts.model)
    base = cfg.model_params()
    grid = parse_grid(opts.grid or [])
    unknown = set(grid) - set(base)
    if unknown:
        raise ValueError(f"--grid: {sorted(unknown)} are not {opts.model} parameters; expected {sorted(base)}")
    data = carve_validation(opts)
    if opts.valid_sample and opts.valid_sample < len(data.test_prefixes):
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(data.test_prefixes), opts.valid_sample,
                                                                replace=False))
        data.test_prefixes = [data.test_prefixes[i] for i in keep]
        data.test_targets = data.test_targets[keep]
    rows = []
    for values in itertools.product(*grid.values()):
        params = {**base, **dict(zip(grid, values, strict=True))}
        load_config(None, model=opts.model, **{opts.model: params})  # validate through the typed config
        m = evaluate_model(fit_baseline(opts.model, data, params), data)
        rows.append({"params": params, **{k: round(m[k], 4) for k in ("recall@20", "mrr@20", "recall@10",
                                                                        "mrr@10")},
                     "eval_seconds": round(m["eval_seconds"], 1)})
        logger.info("%s %s -> recall@20 %.4f mrr@20 %.4f", opts.model, dict(zip(grid, values, strict=True)),
                    m["recall@20"], m["mrr@20"])
    best = max(rows, key=lambda r: r[opts.metric])
    if opts.out_config:
        import yaml

        Path(opts.out_config).write_text(yaml.safe_dump({"model": opts.model, opts.model: best["params"]}),
                                         encoding="utf-8")
    return {"model": opts.model, "metric": opts.metric, "best": best, "grid": rows,
            "valid_pairs": len(data.test_prefixes)}


def tune(opts: TuneConfig) -> dict[str, Any]:
    """Search ``opts.model``'s parameters on the validation split; never reads the test split."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if opts.model == "hybrid":
        return tune_hybrid(opts)
    if opts.metric == "recall@20+mrr@20" or opts.temperature_grid:
        raise ValueError("--metric recall@20+mrr@20 and --temperature-grid are for --model hybrid")
    if opts.model in ("vsknn", "vstan"):
        return tune_knn(opts)
    cfg = load_config(opts.config, model=opts.model)
    base = cfg.model_params()
    base["n_epochs"] = opts.epochs
    data = carve_validation(opts)
    if opts.smoke_test:
        data.train, data.test_prefixes = data.train[-300:], data.test_prefixes[:100]
        data.test_targets = data.test_targets[:100]
    started = raycluster.connect(own_local=True, num_cpus=opts.num_cpus, temp_dir=opts.ray_temp_dir, train_env=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, data=data, model=cfg.model, base=base, seed=cfg.seed),
                                {"cpu": 1}),
            param_space=search_space(cfg.model),
            tune_config=tune.TuneConfig(metric=opts.metric, mode="max", num_samples=opts.num_samples,
                                        search_alg=OptunaSearch(seed=cfg.seed),
                                        scheduler=ASHAScheduler(max_t=opts.epochs, grace_period=opts.grace_period,
                                                                reduction_factor=2),
                                        max_concurrent_trials=opts.concurrency),
            run_config=tune.RunConfig(name=f"tune-{cfg.model}", storage_path=opts.storage
                                      or tempfile.mkdtemp(prefix="tdm-tune-")),
        )
        results = tuner.fit()
        best = results.get_best_result(metric=opts.metric, mode="max", scope="all")
    finally:
        if started:
            ray.shutdown()
    best_params = {**base, **best.config}
    if opts.out_config:
        import yaml

        Path(opts.out_config).write_text(yaml.safe_dump({"model": cfg.model, cfg.model: best_params}),
                                         encoding="utf-8")
    return {"model": cfg.model, "metric": opts.metric, "trials": len(results),
            "best_valid": {k: float(best.metrics[k]) for k in ("recall@20", "mrr@20", "epoch")},
            "best_config": best_params, "valid_pairs": len(data.test_prefixes)}
