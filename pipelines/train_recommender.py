"""Fit a session recommender: baselines in process, GRU4Rec/SASRec through Ray Train's TorchTrainer.

The wiring of ``python -m jobs.train_recommender`` (which evaluates, saves and registers).

Baselines (pop, itemknn, vsknn, vstan) fit in process; torch models (gru4rec, sasrec) train
through Ray Train's TorchTrainer with ``--workers`` data-parallel workers (GPU when the
cluster has one). The artifact is saved, registered as ``recommender`` when
``--registry`` is given (champion when none exists; with ``--promote`` when it passes the
recommender promotion gates against the champion on the test pairs), and ``--json``
ends the output with one JSON line of metrics.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.session_rec.artifact import load_artifact, model_class, save_artifact
from models.session_rec.base import item_counts
from models.session_rec.batching import pack
from models.session_rec.cold import category_index
from models.session_rec.config import RecommenderConfig, load_config
from models.session_rec.data import EncodedData, load_dataset, read_item_categories
from models.session_rec.evaluate import BASELINES, evaluate_with_slices, fit_baseline
from models.session_rec.predictor import REGISTRY_NAME
from pipelines import raycluster
from pipelines.promotion import apply_gates, recommender_gates
from pipelines.reports.model import MODEL_REPORT, write_recommender_report
from pipelines.tenancy import tenant_rows
from pipelines.train_callbacks import callback_types, without_default_callbacks
from store import fs
from store.registry import Registry, tenant_uri

logger = logging.getLogger(__name__)

SMOKE = {"max_train_sessions": 400, "max_test_pairs": 200}



class TrainConfig(BaseModel):
    """What ``train_and_register`` needs (``python -m jobs.train_recommender`` flags, same names)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    train: str = Field(description="training data (file or parquet dir)")
    test: str | None = Field(None, description="test data; optional for format parquet (time split)")
    format: Literal["session-tsv", "session-lines", "prefix-target", "parquet", "diginetica-views"]
    model: Literal["auto", "gru4rec", "sasrec", "vsknn", "vstan", "itemknn", "pop", "hybrid"] | None = Field(
        None, description="default auto: family and hybrid weights chosen on a validation split carved from train")
    item_categories: str | None = Field(None, description="item table (itemId;categoryId): its items join the "
                                        "catalogue; a category fallback is an auto candidate and a cold-start baseline")
    config: str | None = Field(None, description="YAML RecommenderConfig")
    parts_from: list[str] | None = Field(None, description="hybrid: artifacts of parts trained on this train ('-' = fit)")
    epochs: int | None = Field(None, ge=1, description="override n_epochs")
    time_budget_min: float | None = Field(None, gt=0, description="torch models: minutes of training (wall); auto: "
                                          "CPU minutes for the whole choice (default 90, RecommenderConfig.auto)")
    workers: int | None = Field(None, ge=1, description="Ray Train data-parallel workers (torch models)")
    threads: int | None = Field(None, ge=1, description="torch threads per Train worker")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="parquet time split")
    registry: str | None = None
    tenant: str | None = Field(None, description="train on this tenant's sessions only (format parquet: its "
                               "rows; other formats hold one tenant's data) and register the model in its "
                               "namespace of the registry (default: the shared default)")
    promote: bool = False
    artifact_dir: str | None = None
    storage: str | None = None
    num_cpus: int = Field(2, ge=1, description="CPUs of a local Ray cluster (no RAY_ADDRESS)")
    ray_temp_dir: str | None = None
    smoke_test: bool = Field(False, description="tiny data, one epoch")

def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: train on this rank's share of sessions; rank 0 checkpoints the weights."""
    import os

    import ray.train
    import ray.train.torch
    import torch

    from models.session_rec.training import GRU4RecTrainer, SASRecTrainer, allreduce_grads, steps_per_epoch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # worker entrypoint
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    items, offsets = config["items"], config["offsets"]
    shards = [pack([items[offsets[s]:offsets[s + 1]] for s in range(r, len(offsets) - 1, world)])
              for r in range(world)]
    params = config["params"]
    batch = params["batch_size"]
    max_steps = min(steps_per_epoch(config["model"], i, o, batch) for i, o in shards) if world > 1 else None
    cls = GRU4RecTrainer if config["model"] == "gru4rec" else SASRecTrainer
    trainer = cls(config["n_items"], config["counts"], params, seed=config["seed"], device=device)
    sync = allreduce_grads if world > 1 else None
    my_items, my_offsets = shards[rank]
    seconds = events = 0.0
    budget = config.get("time_budget_s")
    for epoch in range(params["n_epochs"]):
        stats = trainer.train_epoch(my_items, my_offsets, sync=sync, max_steps=max_steps)
        seconds += stats["seconds"]
        events += stats["events"]
        last = epoch + 1 == params["n_epochs"]
        if budget and not last:  # stop when the next epoch would overrun the budget (all ranks agree)
            stop = torch.tensor([float(seconds * (epoch + 2) / (epoch + 1) > budget)])
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            last = bool(stop.item())
        metrics = {"epoch": epoch + 1, "loss": stats["loss"], "train_seconds": seconds,
                   "events_per_s": events * world / max(seconds, 1e-9),
                   "epoch_events_per_s": stats["events_per_s"] * world}
        logger.info("%s epoch %d/%d: loss %.4f, %.0f events/s, %.0f s", config["model"], epoch + 1,
                       params["n_epochs"], stats["loss"], metrics["epoch_events_per_s"], seconds)
        if not last:
            ray.train.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                torch.save({k: v.cpu() for k, v in trainer.net.state_dict().items()}, os.path.join(tmp, "net.pt"))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        break


def train_torch(model_type: str, cfg: RecommenderConfig, params: dict[str, Any], data: EncodedData,
                storage: str, time_budget_s: float | None = None,
                threads: int | None = None, own_cluster: bool = False) -> tuple[Any, dict[str, Any]]:
    """Run the TorchTrainer and return (scorer, last reported metrics).

    With ``time_budget_s`` training stops after the epoch past which the next one would
    overrun the budget; the metrics' ``epoch`` then says how many of ``n_epochs`` were done.
    ``threads``: torch threads per worker (default: the cluster's CPUs over the workers).
    The sessions reach the workers in the loop config, so the run goes without Train's
    dataset manager; on a local Ray this job started itself (``own_cluster``) also without
    the placement-group cleaner (``pipelines.train_callbacks`` says why).
    """
    import ray
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    drop = callback_types("datasets", *(("placement_group_cleaner",) if own_cluster else ()))
    trainer_cls = without_default_callbacks(TorchTrainer, drop)

    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    cpus = int(ray.cluster_resources().get("CPU", 1))
    items, offsets = pack(data.train)
    loop_config = {"model": model_type, "params": params, "items": items, "offsets": offsets,
                   "n_items": len(data.items), "counts": item_counts(data.train, len(data.items)),  # type: ignore[arg-type]
                   "seed": cfg.seed, "threads": threads or max(1, cpus // cfg.workers), "time_budget_s": time_budget_s}
    trainer = trainer_cls(train_loop_per_worker, train_loop_config=loop_config,
                           scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu),
                           run_config=RunConfig(name=f"recommender-{model_type}-{int(time.time())}",
                                                storage_path=storage))
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"{model_type} training failed: {result.error}")
    assert result.checkpoint is not None, "training produced no checkpoint"
    cls = model_class(model_type)
    net = cls.build(len(data.items), params)  # type: ignore[arg-type]
    with result.checkpoint.as_directory() as d:
        net.load_state_dict(torch.load(Path(d) / "net.pt", map_location="cpu", weights_only=True))
    return cls(net, params), dict(result.metrics or {})


def fit_any(model_type: str, cfg: RecommenderConfig, params: dict[str, Any], data: EncodedData, storage: str,
            opts: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """Fit one model (or each part of a hybrid); returns (model, training metrics)."""
    if model_type in BASELINES:
        return fit_baseline(model_type, data, params), {}
    if model_type == "hybrid":
        from models.session_rec.hybrid import HybridModel

        parts, metrics = [], {}
        for i, part in enumerate(cfg.hybrid.parts):
            reuse = (opts.parts_from or [])[i:i + 1]
            if reuse and reuse[0] != "-":  # a part already trained on this same --train data
                art = load_artifact(reuse[0])
                if art.meta["model_type"] != part or art.items.ids != data.items.ids:  # type: ignore[attr-defined]
                    raise ValueError(f"{reuse[0]}: not a {part} artifact over this training catalogue")
                parts.append(art.model)
                metrics.update({f"{part}_{k}": v for k, v in art.meta.get("training", {}).items()
                                if isinstance(v, int | float) and not isinstance(v, bool)})
                if "events_per_s" in art.meta.get("training", {}):
                    metrics["events_per_s"] = art.meta["training"]["events_per_s"]
                continue
            part_params = getattr(cfg, part).model_dump() if part != "pop" else {}
            if opts.epochs is not None and "n_epochs" in part_params:
                part_params["n_epochs"] = opts.epochs
            if opts.smoke_test and "n_epochs" in part_params:
                part_params["n_epochs"] = 1
            model, m = fit_any(part, cfg, part_params, data, storage, opts)
            parts.append(model)
            metrics.update({f"{part}_{k}": v for k, v in m.items()})
            if "events_per_s" in m:
                metrics["events_per_s"] = m["events_per_s"]
        return HybridModel(parts, cfg.hybrid.weights, cfg.hybrid.temperatures), metrics
    started = raycluster.connect(own_local=True, num_cpus=opts.num_cpus, temp_dir=opts.ray_temp_dir)
    try:
        budget = opts.time_budget_min * 60 if opts.time_budget_min else None
        return train_torch(model_type, cfg, params, data, storage, time_budget_s=budget,
                           threads=opts.threads, own_cluster=started)
    finally:
        if started:
            import ray

            ray.shutdown()


def train_and_register(opts: TrainConfig) -> dict[str, Any]:
    """Fit, evaluate on the test split (full catalogue), save the artifact and, with a registry, register it."""
    cfg = load_config(opts.config, model=opts.model, workers=opts.workers)
    params = cfg.model_params()
    if opts.epochs is not None and "n_epochs" in params:
        params["n_epochs"] = opts.epochs
    if opts.smoke_test and "n_epochs" in params:
        params["n_epochs"] = 1
    logger.info("resolved config: %s", cfg.model_dump_json())
    limits = SMOKE if opts.smoke_test else {}
    categories = read_item_categories(fs.resolve(opts.item_categories)) if opts.item_categories else None
    train, test = fs.resolve(opts.train), fs.resolve(opts.test) if opts.test else None
    if opts.tenant is not None and opts.format == "parquet":
        tmp = Path(tempfile.mkdtemp(prefix="tdm-tenant-"))
        train = tenant_rows(train, opts.tenant, tmp / "train")
        test = tenant_rows(test, opts.tenant, tmp / "test") if test else None
    data = load_dataset(train, test, opts.format,
                        test_fraction=opts.test_fraction, catalogue=sorted(categories) if categories else None,
                        **limits)
    item_category = category_index(data.items.ids, categories)[0] if categories else None  # type: ignore[attr-defined]
    storage = opts.storage or raycluster.train_storage(opts.registry, "recommender")  # reachable from every node
    t0 = time.perf_counter()
    auto_report: dict[str, Any] | None = None
    part_names = list(cfg.hybrid.parts) if cfg.model == "hybrid" else None
    try:
        if cfg.model == "auto":
            from pipelines.auto_recommender import fit_auto

            res = fit_auto(cfg, data.train, len(data.items), storage,  # type: ignore[arg-type]
                           lambda: raycluster.connect(own_local=True, num_cpus=opts.num_cpus,
                                                      temp_dir=opts.ray_temp_dir),
                           threads=opts.threads, smoke_test=opts.smoke_test, time_budget_min=opts.time_budget_min,
                           item_category=item_category)
            model, train_metrics, auto_report, part_names = res.model, {}, res.report, res.parts
        else:
            model, train_metrics = fit_any(cfg.model, cfg, params, data, storage, opts)
    finally:
        if not opts.storage:
            fs.delete(storage)  # the weights are loaded; the run's checkpoints are not kept
    train_seconds = time.perf_counter() - t0
    metrics, slices = evaluate_with_slices(model, data, cfg.tie, cfg.eval_batch_size, part_names, item_category)
    events_per_s = train_metrics.get("events_per_s") or data.n_train_events / max(train_seconds, 1e-9)
    report: dict[str, Any] = {"model": cfg.model, "protocol": data.protocol, "tie": cfg.tie,
                              **{k: round(v, 6) for k, v in metrics.items()},
                              "train_seconds": round(train_seconds, 3), "train_events_per_s": round(events_per_s, 1),
                              "workers": cfg.workers, "n_items": len(data.items)}  # type: ignore[arg-type]
    report["slices"] = slices
    if auto_report is not None:
        report["auto"] = auto_report
    if "epoch" in train_metrics:  # torch models: epochs actually trained (fewer than n_epochs under a time budget)
        report["epochs_done"] = int(train_metrics["epoch"])
        report["epochs_planned"] = int(params.get("n_epochs", 0))
    training = {"config": {**cfg.model_dump(), cfg.model: params} if cfg.model != "pop" else cfg.model_dump(),
                "train_seconds": train_seconds, "events_per_s": events_per_s, "smoke_test": opts.smoke_test,
                **{f"last_{k}": v for k, v in train_metrics.items() if isinstance(v, int | float)}}
    out_dir = Path(opts.artifact_dir or tempfile.mkdtemp(prefix="tdm-rec-"))
    save_artifact(out_dir, model, data.items, item_counts(data.train, len(data.items)),  # type: ignore[arg-type]
                  training=training, metrics=metrics, data_window=data.window)
    report["artifact_dir"] = str(out_dir)
    report["report"] = str(write_recommender_report({cfg.model: metrics}, out_dir / MODEL_REPORT, title="Recommender",
                                                    subtitle=f"{cfg.model}, {data.protocol}, full catalogue"))
    if opts.registry:
        registry = Registry(tenant_uri(opts.registry, opts.tenant))
        mv = registry.register(REGISTRY_NAME, out_dir, {"model_type": model.model_type, "metrics": metrics,
                                                       "data_window": data.window, "tenant": opts.tenant})
        report["registry"] = registry.uri
        champion = registry.champion(REGISTRY_NAME)
        if champion is None:
            registry.set_champion(REGISTRY_NAME, mv.version, f"first model: train_recommender {cfg.model} "
                                  f"recall@20={metrics.get('recall@20', 0):.4f}")
            report["promoted"] = True
        elif opts.promote:  # the same gates as the refresh loop, both models on this run's test pairs
            decision = apply_gates(registry, REGISTRY_NAME, mv.version, champion,
                                   recommender_gates(registry, mv.version, champion, data.raw_pairs))
            report["promoted"], report["gates"] = decision["promoted"], decision["gates"]
            if not decision["promoted"]:
                report["refused"] = decision["reason"]
                logger.warning("not promoted: %s; the champion stays %s", decision["reason"], champion)
        report["version"] = mv.version
        report["registry_report"] = f"{mv.uri}/{MODEL_REPORT}"  # copied into the registry with the artifact
    return report
