"""The repeat head scores prefix items by recency-weighted count, as a hybrid part."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.hybrid import HybridModel
from models.session_rec.items import ItemMap
from models.session_rec.knn import VSKNN
from models.session_rec.repeat import RepeatModel, repeat_scores


def test_recency_weighted_count_by_hand() -> None:
    # prefix 3, 1, 3, 2 (2 is the last item): item 2 -> e^0, item 3 -> e^-1 + e^-3, item 1 -> e^-2 (tau 1)
    items, weight = repeat_scores(np.array([3, 1, 3, 2]), tau=1.0)
    raw = {2: 1.0, 3: math.exp(-1) + math.exp(-3), 1: math.exp(-2)}
    total = sum(raw.values())
    assert items.tolist() == [1, 2, 3]
    assert np.allclose(weight, [raw[1] / total, raw[2] / total, raw[3] / total])
    # a long tau approaches plain counts: 3 occurs twice, 1 and 2 once
    _, flat = repeat_scores(np.array([3, 1, 3, 2]), tau=1e9)
    assert np.allclose(flat, [0.25, 0.25, 0.5])


def test_scores_only_prefix_items_and_empty_rows() -> None:
    model = RepeatModel(6, tau=2.0)
    scores = model.score([np.array([4, 4]), np.array([], dtype=np.int64), np.array([0, 5])])
    assert scores.shape == (3, 6)
    assert scores[0].tolist() == [0, 0, 0, 0, 1, 0]
    assert not scores[1].any()
    assert scores[2, 5] > scores[2, 0] > 0 and np.isclose(scores[2].sum(), 1.0)
    with pytest.raises(ValueError, match="outside the catalogue"):
        model.score([np.array([6])])
    with pytest.raises(ValueError, match="tau"):
        RepeatModel(3, tau=0)


def test_repeat_part_lifts_the_last_item_in_a_hybrid(tmp_path: Path) -> None:
    knn = VSKNN.fit([np.array([0, 1]), np.array([1, 2]), np.array([2, 3])], 4)
    prefix = [np.array([1])]
    hyb = HybridModel([knn, RepeatModel(4, tau=1.0)], [1.0, 0.5])
    d_knn = knn.score(prefix)[0] / knn.score(prefix)[0].sum()
    expected = d_knn + 0.5 * np.eye(4)[1]
    assert np.allclose(hyb.score(prefix)[0], expected, atol=1e-6)
    save_artifact(tmp_path, hyb, ItemMap(list("abcd")), np.ones(4))
    art = load_artifact(tmp_path)
    assert art.meta["model_config"]["parts"][1] == {"model_type": "repeat", "model_config": {"tau": 1.0}}
    assert np.allclose(art.model.score(prefix), hyb.score(prefix))
