"""Session-parallel mini-batches (GRU4Rec) and popularity-based negative sampling.

``B`` lanes each walk one session; a lane whose session ends takes the next session
(its hidden state is zeroed); when no sessions are left, finished lanes are dropped.
Sessions are visited in the given order (the readers order them by start time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class Step:
    """One training step; apply ``keep`` (lane subset) then zero ``reset`` lanes, then step."""

    inp: np.ndarray
    out: np.ndarray
    keep: np.ndarray | None
    reset: np.ndarray | None


def pack(sessions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated items and offsets (len n+1)."""
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.concatenate(sessions).astype(np.int64) if len(sessions) else np.zeros(0, dtype=np.int64)
    return items, offsets


def session_parallel(items: np.ndarray, offsets: np.ndarray, batch_size: int) -> Iterator[Step]:
    """Yield steps over all sessions with at least 2 events."""
    lengths = np.diff(offsets)
    order = np.nonzero(lengths >= 2)[0]
    if len(order) == 0:
        return
    n_lanes = min(batch_size, len(order))
    lane_sess = order[:n_lanes].copy()
    nxt = n_lanes
    pos = offsets[lane_sess].copy()
    end = offsets[lane_sess + 1].copy()
    keep: np.ndarray | None = None
    reset: np.ndarray | None = None
    while True:
        minlen = int((end - pos).min())
        for i in range(minlen - 1):
            yield Step(items[pos + i], items[pos + i + 1], keep, reset)
            keep = reset = None
        pos = pos + minlen - 1
        finished = np.nonzero(end - pos <= 1)[0]
        n_new = min(len(finished), len(order) - nxt)
        refill, drop = finished[:n_new], finished[n_new:]
        if n_new:
            new = order[nxt:nxt + n_new]
            nxt += n_new
            pos[refill] = offsets[new]
            end[refill] = offsets[new + 1]
        if len(drop):
            mask = np.ones(len(pos), dtype=bool)
            mask[drop] = False
            if not mask.any():
                return
            keep = np.nonzero(mask)[0]
            # lanes refilled this round keep their (re-indexed) position in the kept set
            remap = np.cumsum(mask) - 1
            refill = remap[refill]
            pos, end = pos[mask], end[mask]
        reset = refill if len(refill) else None


class NegativeSampler:
    """Items drawn with probability proportional to count**alpha, generated in chunks."""

    def __init__(self, counts: np.ndarray, n_sample: int, alpha: float, chunk: int = 256,
                 generator: torch.Generator | None = None, device: torch.device | None = None):
        p = np.asarray(counts, dtype=np.float64) ** alpha
        cdf = np.cumsum(p) / p.sum()
        cdf[-1] = 1.0
        self.device = device or torch.device("cpu")
        self.cdf = torch.tensor(cdf, dtype=torch.float64, device=self.device)
        self.n_sample, self.chunk, self.gen = n_sample, chunk, generator
        self._buf = torch.empty(0, dtype=torch.int64)
        self._ptr = 0

    def sample(self) -> torch.Tensor:
        if self._ptr >= len(self._buf):
            u = torch.rand(self.chunk, self.n_sample, generator=self.gen, dtype=torch.float64).to(self.device)
            self._buf = torch.searchsorted(self.cdf, u, right=True).clamp_(max=len(self.cdf) - 1)
            self._ptr = 0
        out = self._buf[self._ptr]
        self._ptr += 1
        return out
