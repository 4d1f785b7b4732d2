"""Session-parallel mini-batches and the negative sampler."""

from __future__ import annotations

import numpy as np
import torch

from models.session_rec.batching import NegativeSampler, pack, session_parallel


def _sessions() -> list[np.ndarray]:
    # unique items per session so every item identifies its session; one length-1 session
    lengths = [3, 2, 5, 1, 4, 2, 6]
    out, nxt = [], 0
    for n in lengths:
        out.append(np.arange(nxt, nxt + n))
        nxt += n
    return out


def test_every_consecutive_pair_once_and_lanes_continue_or_reset() -> None:
    sessions = _sessions()
    first = {int(s[0]) for s in sessions}
    expected = sorted((int(s[i]), int(s[i + 1])) for s in sessions for i in range(len(s) - 1))
    items, offsets = pack(sessions)
    got: list[tuple[int, int]] = []
    prev_out: np.ndarray | None = None
    for st in session_parallel(items, offsets, batch_size=3):
        if prev_out is not None:
            if st.keep is not None:
                prev_out = prev_out[st.keep]
            reset = set() if st.reset is None else set(st.reset.tolist())
            for lane, x in enumerate(st.inp.tolist()):
                if lane in reset:
                    assert x in first
                else:
                    assert x == prev_out[lane]  # the lane continues its session
        prev_out = st.out
        got.extend(zip(st.inp.tolist(), st.out.tolist(), strict=True))
    assert sorted(got) == expected


def test_no_steps_for_single_item_sessions() -> None:
    items, offsets = pack([np.array([1]), np.array([2])])
    assert list(session_parallel(items, offsets, 4)) == []


def test_sampler_follows_popularity() -> None:
    sampler = NegativeSampler(np.array([0.0, 1.0, 9.0]), n_sample=1000, alpha=1.0,
                              generator=torch.Generator().manual_seed(0))
    draws = torch.cat([sampler.sample() for _ in range(20)]).numpy()
    assert set(np.unique(draws)) <= {1, 2}
    assert 0.85 < (draws == 2).mean() < 0.95
