"""SASRec (Kang & McAuley 2018): a causal self-attention encoder over the session.

Sequences are right-padded (index 0 = padding, item i is token i + 1), so with a causal
mask real positions never attend to padding. The output embedding is tied to the input
embedding; the score of item i after a prefix is ``h_last @ E[i + 1]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, hidden: int = 64, n_layers: int = 2, n_heads: int = 2, max_len: int = 50,
                 dropout: float = 0.2):
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, n_heads, dim_feedforward=hidden, dropout=dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        nn.init.normal_(self.item_emb.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self._masks: dict[int, torch.Tensor] = {}

    def _mask(self, length: int, device: torch.device) -> torch.Tensor:
        if length not in self._masks:
            self._masks[length] = nn.Transformer.generate_square_subsequent_mask(length)
        return self._masks[length].to(device)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded tokens -> (B, L, hidden) causal states."""
        length = tokens.shape[1]
        pos = torch.arange(length, device=tokens.device)
        x = self.item_emb(tokens) * (self.item_emb.embedding_dim ** 0.5) + self.pos_emb(pos)
        x = self.drop(x)
        x = self.encoder(x, mask=self._mask(length, tokens.device), is_causal=True)
        result: torch.Tensor = self.norm(x)
        return result

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight[1:]


def pad_batch(seqs: Sequence[np.ndarray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens (item + 1) of the last ``max_len`` items, and the lengths."""
    cut = [np.asarray(s[-max_len:], dtype=np.int64) for s in seqs]
    lengths = np.fromiter((len(s) for s in cut), dtype=np.int64, count=len(cut))
    out = np.zeros((len(cut), max(int(lengths.max()), 1) if len(cut) else 1), dtype=np.int64)
    for i, s in enumerate(cut):
        out[i, :len(s)] = s + 1
    return torch.from_numpy(out), torch.from_numpy(lengths)


class SASRecScorer:
    """Inference wrapper meeting the SessionModel contract."""

    model_type: ClassVar[str] = "sasrec"
    WEIGHTS = "sasrec.pt"

    def __init__(self, net: SASRecNet, config: dict[str, Any]):
        self.net = net.eval()
        self.config = config
        self.n_items = net.n_items

    @torch.no_grad()
    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        tokens, lengths = pad_batch(prefixes, self.net.max_len)
        h = self.net.encode(tokens)
        last = h[torch.arange(len(prefixes)), (lengths - 1).clamp(min=0)]
        return (last @ self.net.item_weights().T).numpy()

    def config_dict(self) -> dict[str, Any]:
        return self.config

    def save(self, directory: Path) -> None:
        torch.save(self.net.state_dict(), directory / self.WEIGHTS)

    @classmethod
    def build(cls, n_items: int, config: dict[str, Any]) -> SASRecNet:
        return SASRecNet(n_items, config.get("hidden", 64), config.get("n_layers", 2), config.get("n_heads", 2),
                         config.get("max_len", 50), config.get("dropout", 0.2))

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any], n_items: int) -> SASRecScorer:
        net = cls.build(n_items, config)
        net.load_state_dict(torch.load(directory / cls.WEIGHTS, map_location="cpu", weights_only=True))
        return cls(net, config)
