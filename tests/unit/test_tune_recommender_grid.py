"""The kNN grid flag of pipelines.tune_recommender parses typed values and rejects bad specs."""

from __future__ import annotations

import pytest

from pipelines.tune_recommender import parse_grid


def test_parse_grid_types_and_none() -> None:
    grid = parse_grid(["k=100,500", "lambda_snh=none,2000", "lambda_spw=1.02"])
    assert grid == {"k": [100, 500], "lambda_snh": [None, 2000], "lambda_spw": [1.02]}
    assert isinstance(grid["k"][0], int) and isinstance(grid["lambda_spw"][0], float)


@pytest.mark.parametrize("spec", ["k", "k=", "=1,2"])
def test_parse_grid_rejects_malformed(spec: str) -> None:
    with pytest.raises(ValueError, match="key=v1,v2"):
        parse_grid([spec])


def test_mix_ranks_match_the_full_ranking_up_to_20() -> None:
    import numpy as np

    from models.evaluation.ranking import ranks_from_scores
    from models.session_rec.hybrid import as_distribution
    from pipelines.tune_recommender import mix_ranks, top_columns

    rng = np.random.default_rng(0)
    n_rows, n = 300, 2000
    s0 = rng.normal(size=(n_rows, n)).astype(np.float32)
    s0[:, :50] = np.round(s0[:, :50])  # ties
    s1 = np.where(rng.random((n_rows, n)) < 0.03, rng.random((n_rows, n)), 0.0)  # sparse kNN scores, many zeros
    s1[::7] = 0.0  # rows where the kNN part is all zero
    targets = np.where(rng.random(n_rows) < 0.5, top_columns(s1, 30)[:, 0], rng.integers(0, n, n_rows))
    targets[3] = -1  # unknown target: a miss
    checked = 0
    for k in (25, 5):  # k = 5 < 20: ranks 6-20 need items outside both top-k lists (the full-row fallback)
        top0, top1 = top_columns(s0, k), top_columns(s1, k)
        for temperature in (1.0, 0.2):
            d0, d1 = as_distribution("gru4rec", s0, temperature), as_distribution("vstan", s1)
            for w in (0.0, 0.2, 0.5, 1.0):
                full = ranks_from_scores((w * d0 + round(1 - w, 2) * d1).astype(np.float32), targets)
                fast = mix_ranks(d0, d1, w, round(1 - w, 2), targets, top0, top1)
                assert np.array_equal(np.minimum(fast, 21), np.minimum(full, 21)), (k, temperature, w)
                checked += int((full <= 20).sum())
    assert checked > 500  # many rows really ranked in the top 20
