"""The weighted hybrid mixes per-part distributions and round-trips as an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.base import PopModel
from models.session_rec.hybrid import HybridModel, as_distribution
from models.session_rec.items import ItemMap
from models.session_rec.knn import VSKNN
from models.session_rec.network import GRU4RecNet, GRU4RecScorer

SESSIONS = [np.array([0, 1]), np.array([1, 2]), np.array([3, 4]), np.array([2, 3])]


def test_distributions_sum_to_one() -> None:
    logits = np.array([[0.0, np.log(3.0)]])
    assert np.allclose(as_distribution("gru4rec", logits), [[0.25, 0.75]])
    assert np.allclose(as_distribution("vsknn", np.array([[1.0, 3.0, 0.0]])), [[0.25, 0.75, 0.0]])


def test_hybrid_is_the_weighted_mix(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gru = GRU4RecScorer(GRU4RecNet(5, [4]), {"layers": [4]})
    knn = VSKNN.fit(SESSIONS, 5)
    hyb = HybridModel([gru, knn], [0.3, 0.7])
    prefixes = [np.array([1]), np.array([2, 3])]
    expected = 0.3 * as_distribution("gru4rec", gru.score(prefixes)) + 0.7 * as_distribution(
        "vsknn", knn.score(prefixes))
    assert np.allclose(hyb.score(prefixes), expected, atol=1e-6)
    save_artifact(tmp_path, hyb, ItemMap(list("abcde")), np.ones(5))
    art = load_artifact(tmp_path)
    assert art.meta["model_type"] == "hybrid"
    assert np.allclose(art.model.score(prefixes), hyb.score(prefixes), atol=1e-6)


def test_hybrid_rejects_mismatched_parts() -> None:
    with pytest.raises(ValueError, match="catalogue"):
        HybridModel([PopModel(np.ones(3)), PopModel(np.ones(4))], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"):
        HybridModel([PopModel(np.ones(3))], [0.5, 0.5])
