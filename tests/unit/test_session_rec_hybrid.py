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


def test_temperature_sharpens_a_neural_softmax() -> None:
    logits = np.array([[0.0, np.log(3.0)]])
    # softmax(logits / 0.5) = softmax([0, 2 log 3]) = [1, 9] / 10
    assert np.allclose(as_distribution("gru4rec", logits, 0.5), [[0.1, 0.9]])
    assert np.allclose(as_distribution("sasrec", logits, 1.0), as_distribution("sasrec", logits))
    with pytest.raises(ValueError, match="neural"):
        as_distribution("vstan", np.array([[1.0, 3.0]]), 0.5)
    with pytest.raises(ValueError, match="> 0"):
        as_distribution("gru4rec", logits, 0.0)


def test_hybrid_temperature_changes_the_mix_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gru = GRU4RecScorer(GRU4RecNet(5, [4]), {"layers": [4]})
    knn = VSKNN.fit(SESSIONS, 5)
    prefixes = [np.array([1]), np.array([2, 3])]
    plain = HybridModel([gru, knn], [0.3, 0.7])
    assert np.array_equal(HybridModel([gru, knn], [0.3, 0.7], [1.0, 1.0]).score(prefixes), plain.score(prefixes))
    assert "temperatures" not in plain.config_dict()  # default: same artifact config as before temperatures
    hot = HybridModel([gru, knn], [0.3, 0.7], [0.25, 1.0])
    expected = 0.3 * as_distribution("gru4rec", gru.score(prefixes) / 0.25) + 0.7 * as_distribution(
        "vsknn", knn.score(prefixes))
    assert np.allclose(hot.score(prefixes), expected, atol=1e-6)
    assert not np.allclose(hot.score(prefixes), plain.score(prefixes), atol=1e-4)
    save_artifact(tmp_path, hot, ItemMap(list("abcde")), np.ones(5))
    art = load_artifact(tmp_path)
    assert art.model.temperatures == [0.25, 1.0]
    assert np.allclose(art.model.score(prefixes), hot.score(prefixes), atol=1e-6)


def test_hybrid_temperature_validation() -> None:
    knn = VSKNN.fit(SESSIONS, 5)
    gru = GRU4RecScorer(GRU4RecNet(5, [4]), {"layers": [4]})
    with pytest.raises(ValueError, match="temperatures"):
        HybridModel([gru, knn], [0.3, 0.7], [0.5])
    with pytest.raises(ValueError, match="non-neural"):
        HybridModel([gru, knn], [0.3, 0.7], [1.0, 0.5])
    with pytest.raises(ValueError, match="non-neural"):
        HybridModel([gru, knn], [0.3, 0.7], [-1.0, 1.0])


def test_hybrid_config_temperatures_are_typed() -> None:
    from models.session_rec.config import load_config

    cfg = load_config(None, model="hybrid", hybrid={"parts": ["gru4rec", "vstan"], "weights": [0.3, 0.7],
                                                    "temperatures": [0.2, 1.0]})
    assert cfg.hybrid.temperatures == [0.2, 1.0]
    assert load_config(None, model="hybrid").hybrid.temperatures is None
    for bad in ([0.2], [1.0, 0.5], [0.0, 1.0]):
        with pytest.raises(ValueError, match="temperature"):
            load_config(None, model="hybrid", hybrid={"parts": ["gru4rec", "vstan"], "weights": [0.3, 0.7],
                                                      "temperatures": bad})


def test_hybrid_test_ranks_match_separate_evaluations() -> None:
    from models.session_rec.data import EncodedData
    from models.session_rec.evaluate import hybrid_test_ranks, test_ranks
    from models.session_rec.repeat import RepeatModel

    torch.manual_seed(0)
    gru = GRU4RecScorer(GRU4RecNet(5, [4]), {"layers": [4]})
    hyb = HybridModel([gru, VSKNN.fit(SESSIONS, 5), RepeatModel(5, 1.0)], [0.5, 0.3, 0.2], [0.5, 1.0, 1.0])
    data = EncodedData(ItemMap(list("abcde")), SESSIONS, [np.array([1]), np.array([2, 3]), np.array([], dtype=np.int64),
                                                          np.array([4, 0])], np.array([2, 4, 1, 0]), "a", {})
    ranks, parts = hybrid_test_ranks(hyb, data, batch_size=3)
    assert np.array_equal(ranks, test_ranks(hyb, data))
    for part, r in zip(hyb.parts, parts, strict=True):
        assert np.array_equal(r, test_ranks(part, data))
    assert ranks[2] == 6  # the empty prefix is a miss
