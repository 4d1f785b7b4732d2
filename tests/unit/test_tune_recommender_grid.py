"""The kNN grid flag of jobs.tune_recommender parses typed values and rejects bad specs."""

from __future__ import annotations

import pytest

from jobs.tune_recommender import parse_grid


def test_parse_grid_types_and_none() -> None:
    grid = parse_grid(["k=100,500", "lambda_snh=none,2000", "lambda_spw=1.02"])
    assert grid == {"k": [100, 500], "lambda_snh": [None, 2000], "lambda_spw": [1.02]}
    assert isinstance(grid["k"][0], int) and isinstance(grid["lambda_spw"][0], float)


@pytest.mark.parametrize("spec", ["k", "k=", "=1,2"])
def test_parse_grid_rejects_malformed(spec: str) -> None:
    with pytest.raises(ValueError, match="key=v1,v2"):
        parse_grid([spec])
