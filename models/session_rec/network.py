"""GRU4Rec (Hidasi & Czapp 2023) with a shared (constrained) item embedding.

The maths follows the official PyTorch code: the input embedding of an item is its
output embedding ``Wy``; scores are ``h @ Wy[y].T + By[y]``; training uses session-parallel
mini-batches whose targets double as negatives, plus ``n_sample`` items drawn from
popularity**sample_alpha. Losses: cross-entropy over that set (with optional logQ
correction) and BPR-max (with ELU on scores and the softmax-weighted score regulariser).
The optimiser is Adagrad with momentum that touches only the rows a step used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


def init_uniform(t: torch.Tensor, dim1_scale: int = 1) -> None:
    sigma = math.sqrt(6.0 / (t.size(0) + t.size(1) / dim1_scale))
    with torch.no_grad():
        t.uniform_(-sigma, sigma)


class GRU4RecNet(nn.Module):
    """GRU layers over the shared embedding; returns scores against chosen or all items."""

    def __init__(self, n_items: int, layers: Sequence[int] = (100,), dropout_p_embed: float = 0.0,
                 dropout_p_hidden: float = 0.0):
        super().__init__()
        self.n_items, self.layers = n_items, list(layers)
        self.gru = nn.ModuleList(nn.GRUCell(self.layers[i - 1] if i else self.layers[-1], h)
                                 for i, h in enumerate(self.layers))
        self.drop_embed = nn.Dropout(dropout_p_embed)
        self.drop_hidden = nn.Dropout(dropout_p_hidden)
        self.Wy = nn.Embedding(n_items, self.layers[-1], sparse=True)
        self.By = nn.Embedding(n_items, 1, sparse=True)
        for g in self.gru:
            assert isinstance(g, nn.GRUCell)
            init_uniform(g.weight_ih, 3)
            init_uniform(g.weight_hh, 3)
            nn.init.zeros_(g.bias_ih)
            nn.init.zeros_(g.bias_hh)
        init_uniform(self.Wy.weight)
        nn.init.zeros_(self.By.weight)

    def init_hidden(self, batch: int, device: torch.device | None = None) -> list[torch.Tensor]:
        return [torch.zeros(batch, h, device=device) for h in self.layers]

    def step(self, x: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Advance ``hidden`` in place by one item per lane; returns the top layer output."""
        e = self.drop_embed(self.Wy(x))
        for i, cell in enumerate(self.gru):
            e = self.drop_hidden(cell(e, hidden[i]))
            hidden[i] = e
        result: torch.Tensor = e
        return result

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.step(x, hidden)
        if y is None:
            return h @ self.Wy.weight.T + self.By.weight.T
        result: torch.Tensor = h @ self.Wy(y).T + self.By(y).T
        return result


def xe_loss(scores: torch.Tensor, n_targets: int, logq: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy; the target of row i is column i."""
    if logq is not None:
        scores = scores - logq
    idx = torch.arange(n_targets, device=scores.device)
    return -torch.log_softmax(scores, dim=1)[idx, idx].sum()


def bpr_max_loss(scores: torch.Tensor, n_targets: int, bpreg: float, elu_param: float) -> torch.Tensor:
    """BPR-max: -log sum_j softmax_neg(r)_j * sigmoid(r_i - r_j) + bpreg * sum_j softmax_neg(r)_j r_j^2."""
    if elu_param > 0:
        scores = nn.functional.elu(scores, elu_param)
    mask = torch.ones_like(scores)
    idx = torch.arange(n_targets, device=scores.device)
    mask[idx, idx] = 0.0
    masked = scores * mask
    e = torch.exp(masked - masked.max(dim=1, keepdim=True).values) * mask
    soft = e / e.sum(dim=1, keepdim=True)
    target = scores[idx, idx].unsqueeze(1)
    loss = -torch.log((torch.sigmoid(target - scores) * soft).sum(dim=1) + 1e-24)
    return (loss + bpreg * (scores.pow(2) * soft).sum(dim=1)).sum()


class IndexedAdagradM(torch.optim.Optimizer):
    """Adagrad with momentum; sparse gradients update only their rows (as the official code)."""

    def __init__(self, params: Any, lr: float = 0.05, momentum: float = 0.0, eps: float = 1e-6):
        super().__init__(params, {"lr": lr, "momentum": momentum, "eps": eps})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["acc"] = torch.zeros_like(p)
                if momentum > 0:
                    self.state[p]["mom"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, mom, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if grad.is_sparse:
                    grad = grad.coalesce()
                    idx, val = grad.indices()[0], grad.values()
                    # index_select, not advanced indexing: the same rows, a fraction of the time on CPU
                    acc = state["acc"].index_select(0, idx).add_(val.pow(2))
                    state["acc"].index_copy_(0, idx, acc)
                    upd = val / acc.add_(eps).sqrt_().mul_(-1.0 / lr)
                    if mom > 0:
                        m = state["mom"].index_select(0, idx).mul_(mom).add_(upd)
                        state["mom"].index_copy_(0, idx, m)
                        upd = m
                    p.index_add_(0, idx, upd)
                else:
                    state["acc"].add_(grad.pow(2))
                    denom = state["acc"].add(eps).sqrt_()
                    if mom > 0:
                        state["mom"].mul_(mom).addcdiv_(grad, denom, value=-lr)
                        p.add_(state["mom"])
                    else:
                        p.addcdiv_(grad, denom, value=-lr)


class GRU4RecScorer:
    """Inference wrapper meeting the SessionModel contract."""

    model_type: ClassVar[str] = "gru4rec"
    WEIGHTS = "gru4rec.pt"

    def __init__(self, net: GRU4RecNet, config: dict[str, Any]):
        self.net = net.eval()
        self.config = config
        self.n_items = net.n_items
        # A snapshot of the weights taken here (build the scorer after training). The output side is one
        # contiguous float32 (hidden + 1, n_items) block: item vectors with the item bias as the last row,
        # so an online request is a single streaming (1 x hidden+1) x (hidden+1 x n_items) product.
        with torch.no_grad():
            wy = net.Wy.weight.detach().cpu()
            self._wt_aug = np.ascontiguousarray(
                np.vstack([wy.T.numpy(), net.By.weight.detach().cpu().T.numpy()]), dtype=np.float32)
            self._emb = wy.numpy()  # (n_items, hidden) input embedding rows (shared with Wy: no copy on CPU)
            # per GRU layer: W_ih^T (in, 3h), W_hh^T (h, 3h), b_ih, b_hh; gate order r, z, n as torch's GRUCell
            cells = [cast(nn.GRUCell, c) for c in net.gru]
            self._cells = [(c.weight_ih.detach().cpu().numpy().T.copy(), c.weight_hh.detach().cpu().numpy().T.copy(),
                            c.bias_ih.detach().cpu().numpy().copy(), c.bias_hh.detach().cpu().numpy().copy())
                           for c in cells]
        self._wt = torch.from_numpy(self._wt_aug[:-1])  # views of the block for the batch path
        self._b = torch.from_numpy(self._wt_aug[-1:])

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        if len(prefixes) == 1 and len(prefixes[0]) and not self.net.training:
            return self.score_one(prefixes[0])[None]
        with torch.no_grad():
            return torch.addmm(self._b, self.hidden(prefixes), self._wt).numpy()

    def score_one(self, prefix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Scores ``(n_items,)`` for one non-empty prefix (eval mode), written into ``out`` when given.

        The online path, in numpy: per request it allocates nothing of catalogue size when ``out`` is
        passed, and the catalogue pass is one BLAS call (numpy's, which is faster than torch's MKL on
        AMD CPUs; the caller sets its thread count). Same scores as the batch path to float rounding.
        """
        h = self._hidden_one(prefix)
        h_aug = np.empty(len(h) + 1, dtype=np.float32)
        h_aug[:-1], h_aug[-1] = h, 1.0
        if out is None:
            return h_aug @ self._wt_aug
        return np.dot(h_aug, self._wt_aug, out=out)

    def _hidden_one(self, prefix: np.ndarray) -> np.ndarray:
        """Top-layer state after one prefix: torch's GRUCell maths in numpy (eval mode: dropout is identity).

        Layer by layer: the input projections of all steps are one small matmul, then one
        (h x 3h) product per step."""
        x = self._emb[np.asarray(prefix, dtype=np.int64)]
        h = np.zeros(0, dtype=np.float32)
        for w_ih_t, w_hh_t, b_ih, b_hh in self._cells:
            n_h = w_hh_t.shape[0]
            gi = x @ w_ih_t
            gi += b_ih
            h = np.zeros(n_h, dtype=np.float32)
            outs = np.empty((len(x), n_h), dtype=np.float32)
            for t in range(len(x)):
                gh = h @ w_hh_t
                gh += b_hh
                g = gi[t]
                rz = g[:2 * n_h] + gh[:2 * n_h]
                np.negative(rz, out=rz)
                np.exp(rz, out=rz)
                rz += 1.0
                np.reciprocal(rz, out=rz)  # sigmoid
                n = gh[2 * n_h:]
                n *= rz[:n_h]
                n += g[2 * n_h:]
                np.tanh(n, out=n)
                h = n + rz[n_h:] * (h - n)  # (1 - z) * n + z * h
                outs[t] = h
            x = outs
        return h

    @torch.no_grad()
    def hidden(self, prefixes: Sequence[np.ndarray]) -> torch.Tensor:
        """Top-layer state after each prefix (prefixes of unequal length run right-aligned lanes)."""
        n = len(prefixes)
        lengths = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=n)
        max_len = int(lengths.max()) if n else 0
        hidden = self.net.init_hidden(n)
        for t in range(max_len):
            active = np.nonzero(lengths > t)[0]
            x = torch.from_numpy(np.fromiter((prefixes[int(i)][t] for i in active), dtype=np.int64, count=len(active)))
            if len(active) == n:
                self.net.step(x, hidden)
            else:
                sub = [h[active] for h in hidden]
                self.net.step(x, sub)
                for h, s in zip(hidden, sub, strict=True):
                    h[active] = s
        return hidden[-1]

    def config_dict(self) -> dict[str, Any]:
        return self.config

    def save(self, directory: Path) -> None:
        torch.save(self.net.state_dict(), directory / self.WEIGHTS)

    @classmethod
    def build(cls, n_items: int, config: dict[str, Any]) -> GRU4RecNet:
        return GRU4RecNet(n_items, config.get("layers", [100]), config.get("dropout_p_embed", 0.0),
                          config.get("dropout_p_hidden", 0.0))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> GRU4RecScorer:
        net = cls.build(n_items, config)
        net.load_state_dict(torch.load(directory / cls.WEIGHTS, map_location="cpu", weights_only=True))
        return cls(net, config)
