"""``--model auto``'s neural search in one Ray Train worker (TorchTrainer), for models.session_rec.auto.

The worker runs, within the CPU seconds the auto budget leaves it (the worker's own CPU time), ``models.session_rec.neural_search.search_neural`` (probe the candidates, train
the best with per-epoch validation, fine-tune on the held-out sessions) and checkpoints both
networks - the carve one (the blend is chosen with it) and the fine-tuned one (the model) - with
the search's record. The sessions travel in the loop config, as in ``pipelines.train_recommender``.
One worker: the search validates after every epoch, which data-parallel ranks would each repeat.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.session_rec.auto import Carve
from models.session_rec.batching import pack
from models.session_rec.config import PartSpec
from models.session_rec.neural_search import NeuralOutcome

logger = logging.getLogger(__name__)

META = "outcome.json"


def _unpack(items: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [items[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def auto_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: the neural search; checkpoints carve.pt, final.pt and the outcome's record."""
    import ray.train
    import ray.train.torch
    import torch

    from models.session_rec.neural_search import search_neural

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # worker entrypoint
    torch.set_num_threads(config["threads"])
    specs = [PartSpec.model_validate(s) for s in config["specs"]]
    out = search_neural(specs, _unpack(*config["train"]), _unpack(*config["holdout"]),
                        _unpack(*config["prefixes"]), config["targets"], config["n_items"], config["seed"],
                        time.process_time() + config["allowance_s"], patience=config["patience"],
                        device=ray.train.torch.get_device(), clock=time.process_time)
    with tempfile.TemporaryDirectory() as tmp:
        record: dict[str, Any] = {"found": out is not None}
        if out is not None:
            torch.save(out.carve.net.state_dict(), Path(tmp) / "carve.pt")  # type: ignore[attr-defined]
            torch.save(out.final.net.state_dict(), Path(tmp) / "final.pt")  # type: ignore[attr-defined]
            record.update(name=out.name, model_type=out.model_type, params=out.params, epochs=out.epochs,
                          curve=out.curve, probes=out.probes, seconds=out.seconds)
        (Path(tmp) / META).write_text(json.dumps(record), encoding="utf-8")
        ray.train.report({"found": float(out is not None)}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def neural_runner(storage: str, threads: int | None = None, use_gpu: bool | None = None, patience: int = 2,
                  epoch_pairs: int = 5000, own_cluster: bool = False) -> Any:
    """A ``models.session_rec.auto.NeuralRunner`` that runs the search through a TorchTrainer."""

    def run(specs: Sequence[PartSpec], cv: Carve, n_items: int, seed: int, allowance_s: float) -> NeuralOutcome | None:
        import ray
        import torch
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        from models.session_rec.artifact import model_class
        from pipelines.train_callbacks import callback_types, without_default_callbacks

        drop = callback_types("datasets", *(("placement_group_cleaner",) if own_cluster else ()))
        trainer_cls = without_default_callbacks(TorchTrainer, drop)
        gpu = use_gpu if use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        loop_config = {"specs": [s.model_dump() for s in specs], "train": pack(cv.train),
                       "holdout": pack(cv.holdout), "prefixes": pack(cv.prefixes[:epoch_pairs]),
                       "targets": cv.targets[:epoch_pairs], "n_items": n_items, "seed": seed,
                       "allowance_s": allowance_s, "patience": patience,
                       "threads": threads or max(1, cpus)}
        trainer = trainer_cls(auto_loop_per_worker, train_loop_config=loop_config,
                              scaling_config=ScalingConfig(num_workers=1, use_gpu=gpu),
                              run_config=RunConfig(name=f"recommender-auto-{int(time.time())}", storage_path=storage))
        result = trainer.fit()
        if result.error is not None:
            raise RuntimeError(f"auto neural search failed: {result.error}")
        assert result.checkpoint is not None, "the neural search produced no checkpoint"
        with result.checkpoint.as_directory() as d:
            record = json.loads((Path(d) / META).read_text(encoding="utf-8"))
            if not record["found"]:
                return None
            cls = model_class(record["model_type"])
            scorers = []
            for name in ("carve.pt", "final.pt"):
                net = cls.build(n_items, record["params"])
                net.load_state_dict(torch.load(Path(d) / name, map_location="cpu", weights_only=True))
                scorers.append(cls(net, record["params"]))
        return NeuralOutcome(record["name"], record["model_type"], record["params"], scorers[0], scorers[1],
                             record["epochs"], record["curve"], record["probes"], record["seconds"])

    return run


def fit_auto(cfg: Any, sessions: list[np.ndarray], n_items: int, storage: str, connect: Callable[[], bool], *,
             threads: int | None = None, smoke_test: bool = False, time_budget_min: float | None = None,
             item_category: np.ndarray | None = None) -> Any:
    """Run ``models.session_rec.auto.run_auto`` with the neural search in a TorchTrainer; returns its AutoResult.

    ``cfg``: the RecommenderConfig (its ``auto`` section, ``seed`` and ``use_gpu``). A smoke test trains
    each network one epoch on small validation samples. ``connect`` joins or starts Ray (True when it
    started it: it is shut down at the end); only called when there is a network to train."""
    from models.session_rec.auto import run_auto

    auto = cfg.auto
    if time_budget_min is not None:
        auto = auto.model_copy(update={"time_budget_min": time_budget_min})
    if smoke_test:
        auto = auto.model_copy(update={
            "valid_pairs": min(auto.valid_pairs, 200), "epoch_valid_pairs": min(auto.epoch_valid_pairs, 100),
            "neural": [s.model_copy(update={"params": {**s.params, "n_epochs": 1}}) for s in auto.neural]})
    if not auto.neural:
        return run_auto(sessions, n_items, auto, seed=cfg.seed, item_category=item_category)
    started = connect()
    try:
        runner = neural_runner(storage, threads, cfg.use_gpu, auto.patience, auto.epoch_valid_pairs,
                               own_cluster=started)
        return run_auto(sessions, n_items, auto, seed=cfg.seed, neural=runner, item_category=item_category)
    finally:
        if started:
            import ray

            ray.shutdown()
