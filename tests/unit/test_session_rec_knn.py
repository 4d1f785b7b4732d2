"""Item-kNN and V-SKNN on hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.items import ItemMap
from models.session_rec.knn import BACKOFF, VSKNN, ItemKNN

SESSIONS = [np.array([0, 1]), np.array([1, 2]), np.array([3, 4])]


def test_vsknn_scores_by_hand() -> None:
    m = VSKNN.fit(SESSIONS, 5, k=10, sample_size=10, idf_weighting=1.0)
    s = m.score([np.array([1])])[0]
    # neighbours: sessions 0 and 1, sim = 1 (weight 1/1 over 1 distinct item), decay 1
    idf = {0: math.log(3 / 1), 1: math.log(3 / 2), 2: math.log(3 / 1)}
    assert s[0] == pytest.approx(1 + idf[0], rel=1e-5)
    assert s[1] == pytest.approx(2 * (1 + idf[1]), rel=1e-5)
    assert s[2] == pytest.approx(1 + idf[2], rel=1e-5)
    assert s[3] < 1e-5 and s[4] < 1e-5  # popularity back-off only


def test_vsknn_recency_decay_and_position_weight() -> None:
    m = VSKNN.fit(SESSIONS, 5, k=10, sample_size=10, idf_weighting=0.0)
    s = m.score([np.array([3, 1])])[0]
    # item 1 at position 2/2 -> weight 1, step 1; item 3 at 1/2 -> weight .5, step 2; 2 distinct items
    # sessions 0,1 share item 1: sim .5, decay 1; session 2 shares item 3: sim .25, decay 1/2
    assert s[0] == pytest.approx(0.5, abs=1e-5)
    assert s[4] == pytest.approx(0.125, abs=1e-5)


def test_vsknn_keeps_most_recent_sample() -> None:
    m = VSKNN.fit(SESSIONS, 5, k=10, sample_size=1, idf_weighting=0.0)
    s = m.score([np.array([1])])[0]
    assert s[2] > 0.5 and s[0] < 1e-5  # only session 1 (the most recent sharing item 1)


def test_itemknn_cooccurrence() -> None:
    m = ItemKNN.fit(SESSIONS, 5, alpha=0.5, lmbd=0.0)
    s = m.score([np.array([0, 1])])[0]  # last item 1 co-occurs with 0 and 2 once; n_1 = 2, n_0 = n_2 = 1
    assert s[0] == pytest.approx(1 / math.sqrt(2), rel=1e-4)
    assert s[2] == pytest.approx(1 / math.sqrt(2), rel=1e-4)
    assert s[1] <= BACKOFF and s[3] <= BACKOFF


@pytest.mark.parametrize("cls", [VSKNN, ItemKNN])
def test_knn_artifact_roundtrip(cls: type, tmp_path: Path) -> None:
    m = cls.fit(SESSIONS, 5)
    save_artifact(tmp_path, m, ItemMap(list("abcde")), np.ones(5))
    art = load_artifact(tmp_path)
    prefixes = [np.array([1]), np.array([3, 4])]
    assert np.allclose(art.model.score(prefixes), m.score(prefixes))
