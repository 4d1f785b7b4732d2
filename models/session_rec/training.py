"""Torch training loops (no Ray): one epoch of GRU4Rec or SASRec over packed sessions.

The Ray Train job calls these inside ``train_loop_per_worker``; ``sync`` (when given)
averages gradients across data-parallel workers before each optimiser step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from models.session_rec.batching import NegativeSampler, session_parallel
from models.session_rec.network import GRU4RecNet, IndexedAdagradM, bpr_max_loss, xe_loss

logger = logging.getLogger(__name__)

GradSync = Callable[[torch.nn.Module], None]


class GRU4RecTrainer:
    """Holds the net, optimiser and sampler for one worker."""

    def __init__(self, n_items: int, counts: np.ndarray, config: dict[str, Any], seed: int = 42,
                 device: torch.device | None = None):
        torch.manual_seed(seed)
        self.cfg = config
        self.device = device or torch.device("cpu")
        self.net = GRU4RecNet(n_items, config["layers"], config["dropout_p_embed"],
                              config["dropout_p_hidden"]).to(self.device)
        self.opt = IndexedAdagradM(self.net.parameters(), config["learning_rate"], config["momentum"])
        gen = torch.Generator().manual_seed(seed)
        self.sampler = (NegativeSampler(counts, config["n_sample"], config["sample_alpha"], generator=gen,
                                        device=self.device) if config["n_sample"] > 0 else None)
        self.log_p0 = torch.log(torch.tensor(np.maximum(counts, 1.0), dtype=torch.float32, device=self.device))

    def set_counts(self, counts: np.ndarray) -> None:
        """New item counts for the negative sampler and logQ (training goes on over more sessions)."""
        cfg = self.cfg
        if self.sampler is not None:
            self.sampler = NegativeSampler(counts, cfg["n_sample"], cfg["sample_alpha"], generator=self.sampler.gen,
                                           device=self.device)
        self.log_p0 = torch.log(torch.tensor(np.maximum(counts, 1.0), dtype=torch.float32, device=self.device))

    def train_epoch(self, items: np.ndarray, offsets: np.ndarray, sync: GradSync | None = None,
                    max_steps: int | None = None) -> dict[str, float]:
        """One pass (or ``max_steps`` steps, so data-parallel workers stay in lock-step)."""
        cfg, net, dev = self.cfg, self.net, self.device
        net.train()
        hidden = net.init_hidden(min(cfg["batch_size"], max(len(offsets) - 1, 1)), dev)
        total, events, steps = 0.0, 0, 0
        t0 = time.perf_counter()
        for st in session_parallel(items, offsets, cfg["batch_size"]):
            if max_steps is not None and steps >= max_steps:
                break
            if st.keep is not None:
                keep = torch.from_numpy(st.keep).to(dev)
                hidden = [h[keep] for h in hidden]
            if st.reset is not None:
                for h in hidden:
                    h[torch.from_numpy(st.reset).to(dev)] = 0.0
            hidden = [h.detach() for h in hidden]
            x = torch.from_numpy(st.inp).to(dev)
            y = torch.from_numpy(st.out).to(dev)
            m = len(y)
            if self.sampler is not None:
                neg = self.sampler.sample()
                yy = torch.cat([y, neg])
            else:
                yy = y
            scores = net(x, hidden, yy)
            if cfg["loss"] == "cross-entropy":
                logq = None
                if cfg["logq"] > 0:
                    logq = cfg["logq"] * torch.cat([self.log_p0[y], self.log_p0[yy[m:]] * cfg["sample_alpha"]])
                loss = xe_loss(scores, m, logq)
            else:
                loss = bpr_max_loss(scores, m, cfg["bpreg"], cfg["elu_param"])
            loss = loss / cfg["batch_size"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if sync is not None:
                sync(net)
            self.opt.step()
            lv = float(loss.detach())
            if not np.isfinite(lv):
                raise FloatingPointError(f"GRU4Rec loss is {lv} at step {steps}; lower learning_rate")
            total += lv * m
            events += m
            steps += 1
        dt = time.perf_counter() - t0
        return {"loss": total / max(events, 1), "events": float(events), "seconds": dt,
                "events_per_s": events / dt if dt > 0 else 0.0}


def allreduce_grads(net: torch.nn.Module) -> None:
    """Average gradients over the default process group; sparse grads are densified first."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in net.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse:
            p.grad = p.grad.to_dense()
        dist.all_reduce(p.grad)
        p.grad.div_(world)


class SASRecTrainer:
    """Adam over shuffled session batches; every next position is a training target."""

    def __init__(self, n_items: int, counts: np.ndarray, config: dict[str, Any], seed: int = 42,
                 device: torch.device | None = None):
        from models.session_rec.sasrec import SASRecScorer

        torch.manual_seed(seed)
        self.cfg = config
        self.device = device or torch.device("cpu")
        self.net = SASRecScorer.build(n_items, config).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config["learning_rate"],
                                    weight_decay=config["weight_decay"])
        self.rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        self.sampler = (NegativeSampler(counts, config["n_sample"], 0.0, generator=gen, device=self.device)
                        if config["n_sample"] > 0 else None)

    def set_counts(self, counts: np.ndarray) -> None:
        """New item counts (uniform negatives do not depend on them; kept for one trainer interface)."""

    def train_epoch(self, items: np.ndarray, offsets: np.ndarray, sync: GradSync | None = None,
                    max_steps: int | None = None) -> dict[str, float]:
        from models.session_rec.sasrec import pad_batch

        cfg, net, dev = self.cfg, self.net, self.device
        net.train()
        lengths = np.diff(offsets)
        order = np.nonzero(lengths >= 2)[0]
        self.rng.shuffle(order)
        total, events = 0.0, 0
        t0 = time.perf_counter()
        starts = list(range(0, len(order), cfg["batch_size"]))[:max_steps]
        for start in starts:
            sess = order[start:start + cfg["batch_size"]]
            seqs = [items[offsets[s]:offsets[s + 1]][-(cfg["max_len"] + 1):] for s in sess]
            tokens, lens = pad_batch([s[:-1] for s in seqs], cfg["max_len"])
            targets, _ = pad_batch([s[1:] for s in seqs], cfg["max_len"])
            tokens, targets = tokens.to(dev), targets.to(dev)
            h = net.encode(tokens)
            valid = targets > 0
            hv, tv = h[valid], targets[valid] - 1
            weights = net.item_weights()
            if self.sampler is None:
                loss = nn.functional.cross_entropy(hv @ weights.T, tv, reduction="sum")
            else:
                neg = self.sampler.sample()
                cand = torch.cat([tv, neg])
                logits = hv @ weights[cand].T
                same = tv.unsqueeze(1) == cand.unsqueeze(0)
                same[torch.arange(len(tv)), torch.arange(len(tv))] = False
                logits = logits.masked_fill(same, float("-inf"))
                loss = nn.functional.cross_entropy(logits, torch.arange(len(tv), device=dev), reduction="sum")
            n = int(valid.sum())
            self.opt.zero_grad(set_to_none=True)
            (loss / n).backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward has no annotations
            if sync is not None:
                sync(net)
            self.opt.step()
            total += float(loss.detach())
            events += n
        dt = time.perf_counter() - t0
        return {"loss": total / max(events, 1), "events": float(events), "seconds": dt,
                "events_per_s": events / dt if dt > 0 else 0.0}


def steps_per_epoch(model_type: str, items: np.ndarray, offsets: np.ndarray, batch_size: int) -> int:
    """Optimiser steps one epoch over these sessions takes."""
    if model_type == "gru4rec":
        return sum(1 for _ in session_parallel(items, offsets, batch_size))
    n = int((np.diff(offsets) >= 2).sum())
    return -(-n // batch_size)
