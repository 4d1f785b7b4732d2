"""Fit a session recommender: baselines in process, GRU4Rec/SASRec through Ray Train's TorchTrainer.

The wiring of ``python -m jobs.train_recommender`` (which evaluates, saves and registers).

Baselines (pop, itemknn, vsknn, vstan) fit in process; torch models (gru4rec, sasrec) train
through Ray Train's TorchTrainer with ``--workers`` data-parallel workers (GPU when the
cluster has one). The artifact is saved, registered as ``recommender`` when
``--registry`` is given (champion with ``--promote`` or when none exists), and ``--json``
ends the output with one JSON line of metrics.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from models.session_rec.artifact import load_artifact, model_class
from models.session_rec.base import item_counts
from models.session_rec.batching import pack
from models.session_rec.config import RecommenderConfig
from models.session_rec.data import EncodedData
from models.session_rec.evaluate import BASELINES, fit_baseline
from pipelines.raycluster import use_train_local_env
from pipelines.train_callbacks import callback_types, without_default_callbacks

logger = logging.getLogger(__name__)

SMOKE = {"max_train_sessions": 400, "max_test_pairs": 200}


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


def _ensure_ray(args: argparse.Namespace) -> bool:
    """Connect to RAY_ADDRESS when set (job submission), else start a local cluster; True if started."""
    import os

    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        use_train_local_env()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=args.ray_temp_dir)
    return True


def fit_any(model_type: str, cfg: RecommenderConfig, params: dict[str, Any], data: EncodedData, storage: str,
            args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Fit one model (or each part of a hybrid); returns (model, training metrics)."""
    if model_type in BASELINES:
        return fit_baseline(model_type, data, params), {}
    if model_type == "hybrid":
        from models.session_rec.hybrid import HybridModel

        parts, metrics = [], {}
        for i, part in enumerate(cfg.hybrid.parts):
            reuse = (args.parts_from or [])[i:i + 1]
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
            if args.epochs is not None and "n_epochs" in part_params:
                part_params["n_epochs"] = args.epochs
            if args.smoke_test and "n_epochs" in part_params:
                part_params["n_epochs"] = 1
            model, m = fit_any(part, cfg, part_params, data, storage, args)
            parts.append(model)
            metrics.update({f"{part}_{k}": v for k, v in m.items()})
            if "events_per_s" in m:
                metrics["events_per_s"] = m["events_per_s"]
        return HybridModel(parts, cfg.hybrid.weights, cfg.hybrid.temperatures), metrics
    started = _ensure_ray(args)
    try:
        budget = args.time_budget_min * 60 if args.time_budget_min else None
        return train_torch(model_type, cfg, params, data, storage, time_budget_s=budget,
                           threads=getattr(args, "threads", None), own_cluster=started)
    finally:
        if started:
            import ray

            ray.shutdown()
