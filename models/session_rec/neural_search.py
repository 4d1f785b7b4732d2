"""The neural half of ``--model auto``: probe candidate networks, train the best, fine-tune on the holdout.

Pure torch (no Ray): ``pipelines.train_recommender`` runs it inside one Ray Train worker, tests
run it in process. With a carve (models.session_rec.auto.Carve: the first sessions of train,
the held-out rest and validation pairs from it):

1. every candidate trains one epoch on the carve and is scored on the epoch-validation pairs
   (recall@20 + mrr@20); candidates that would not fit the deadline are skipped;
2. the best goes on, epoch by epoch, while the next epoch fits the deadline, up to its
   ``n_epochs``, stopping after ``patience`` epochs without a validation gain; the best epoch's
   weights are kept (``carve`` scorer: what the blend is chosen with);
3. the kept network trains one pass over the held-out sessions (the newest of train), with the
   sampler over the full training counts: the ``final`` scorer, trained on all of train.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.evaluation.ranking import rank_targets, ranking_metrics
from models.session_rec.base import SessionModel, item_counts
from models.session_rec.batching import pack
from models.session_rec.config import PartSpec

logger = logging.getLogger(__name__)


def objective(m: dict[str, float]) -> float:
    """What every auto choice maximises on validation."""
    return m["recall@20"] + m["mrr@20"]


@dataclass
class NeuralOutcome:
    name: str
    model_type: str
    params: dict[str, Any]
    carve: SessionModel  # best epoch on the carve: the blend is chosen with it
    final: SessionModel  # the same network after one pass over the held-out sessions
    epochs: int
    curve: list[dict[str, float]] = field(default_factory=list)  # per epoch of the chosen candidate
    probes: dict[str, dict[str, float]] = field(default_factory=dict)  # first-epoch validation per candidate
    seconds: float = 0.0


def _trainer(spec: PartSpec, params: dict[str, Any], n_items: int, counts: np.ndarray, seed: int, device: Any) -> Any:
    from models.session_rec.training import GRU4RecTrainer, SASRecTrainer

    cls = GRU4RecTrainer if spec.model == "gru4rec" else SASRecTrainer
    return cls(n_items, counts, params, seed=seed, device=device)


def _scorer(model_type: str, net: Any, params: dict[str, Any]) -> SessionModel:
    import torch

    from models.session_rec.network import GRU4RecScorer
    from models.session_rec.sasrec import SASRecScorer

    cpu = copy.deepcopy(net).to(torch.device("cpu"))
    return GRU4RecScorer(cpu, params) if model_type == "gru4rec" else SASRecScorer(cpu, params)


def _validate(model: SessionModel, prefixes: Sequence[np.ndarray], targets: np.ndarray) -> dict[str, float]:
    m = ranking_metrics(rank_targets(model.score, prefixes, targets), (20,))
    return {"recall@20": m["recall@20"], "mrr@20": m["mrr@20"], "objective": objective(m)}


def search_neural(candidates: Sequence[PartSpec], train: Sequence[np.ndarray], holdout: Sequence[np.ndarray],
                  prefixes: Sequence[np.ndarray], targets: np.ndarray, n_items: int, seed: int, deadline: float,
                  patience: int = 2, device: Any = None, clock: Callable[[], float] = time.process_time,
                  ) -> NeuralOutcome | None:
    """Steps 1-3 of the module doc; ``deadline`` on ``clock`` (CPU seconds of this process by default).
    The first probe always runs; ``seconds`` of the outcome is the ``clock`` time the search took."""
    t_start = clock()
    counts = item_counts(train, n_items)
    items, offsets = pack(train)
    h_items, h_offsets = pack(holdout)
    holdout_share = len(h_items) / max(len(items) + len(h_items), 1)
    probes: dict[str, dict[str, float]] = {}
    trainers: dict[str, tuple[PartSpec, dict[str, Any], Any, float]] = {}
    epoch_guess: float | None = None
    for spec in candidates:
        params = spec.resolved()
        if epoch_guess is not None and clock() + epoch_guess * (1 + holdout_share) > deadline:
            logger.info("auto: no time left to probe %s", spec.name)
            continue
        trainer = _trainer(spec, params, n_items, counts, seed, device)
        t0 = clock()
        trainer.train_epoch(items, offsets)
        seconds = clock() - t0
        epoch_guess = seconds if epoch_guess is None else max(epoch_guess, seconds)
        probes[spec.name] = {**_validate(_scorer(spec.model, trainer.net, params), prefixes, targets),
                             "epoch_seconds": seconds}
        logger.info("auto probe %s: %s", spec.name, probes[spec.name])
        trainers[spec.name] = (spec, params, trainer, seconds)
        if clock() > deadline:
            break
    if not trainers:
        return None
    best_name = max(trainers, key=lambda n: probes[n]["objective"])
    spec, params, trainer, epoch_s = trainers[best_name]
    del trainers
    curve = [dict(probes[best_name], epoch=1)]
    best_state, best_obj, best_epoch, since_best = copy.deepcopy(trainer.net.state_dict()), curve[0]["objective"], 1, 0
    epoch = 1
    while epoch < params["n_epochs"] and since_best < patience:
        if clock() + epoch_s * 1.1 + epoch_s * holdout_share > deadline:
            logger.info("auto: %s stops after %d epochs (time budget)", best_name, epoch)
            break
        t0 = clock()
        stats = trainer.train_epoch(items, offsets)
        epoch_s = clock() - t0
        epoch += 1
        m = _validate(_scorer(spec.model, trainer.net, params), prefixes, targets)
        curve.append({**m, "epoch": epoch, "epoch_seconds": epoch_s, "loss": stats["loss"]})
        logger.info("auto %s epoch %d: %s", best_name, epoch, curve[-1])
        if m["objective"] > best_obj:
            best_state, best_obj, best_epoch, since_best = copy.deepcopy(trainer.net.state_dict()), m["objective"], \
                epoch, 0
        else:
            since_best += 1
    trainer.net.load_state_dict(best_state)
    carve_model = _scorer(spec.model, trainer.net, params)
    if len(h_items):
        trainer.set_counts(item_counts([*train, *holdout], n_items))
        trainer.train_epoch(h_items, h_offsets)
    final_model = _scorer(spec.model, trainer.net, params)
    return NeuralOutcome(best_name, spec.model, params, carve_model, final_model, best_epoch, curve, probes,
                         clock() - t_start)
