"""Cold-start slices: masks and per-ranker figures, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.session_rec.slices import slice_masks, slice_report


def test_masks_by_hand() -> None:
    prefixes = [np.array([0]), np.array([0, 1]), np.array([2]), np.array([3, 2])]
    targets = np.array([1, 0, -1, 4])
    counts = np.array([5.0, 2.0, 1.0, 1.0, 0.0])  # item 4 is in the catalogue with no training event
    m = slice_masks(prefixes, targets, counts)
    assert m["prefix_len_1"].tolist() == [True, False, True, False]
    assert m["target_unseen"].tolist() == [False, False, True, True]
    assert m["target_in_prefix"].tolist() == [False, True, False, False]


def test_report_by_hand() -> None:
    masks = {"prefix_len_1": np.array([True, False, True, False]),
             "target_unseen": np.array([False, False, True, True])}
    ranks = {"model": np.array([1.0, 4.0, 11.0, 30.0]),
             "pop": np.array([25.0, np.nan, 2.0, np.nan])}  # pop ranked the one-click rows only
    rep = slice_report(ranks, masks, dropped_unseen=2)
    one = rep["prefix_len_1"]
    assert one["n"] == 2 and one["share"] == round(2 / 6, 6)
    assert one["model"] == {"recall@20": 1.0, "mrr@20": round((1 + 1 / 11) / 2, 6), "recall@10": 0.5,
                            "mrr@10": 0.5}
    assert one["pop"]["recall@20"] == 0.5 and one["pop"]["mrr@20"] == 0.25
    unseen = rep["target_unseen"]
    # 2 scored (ranks 11 and 30) + 2 dropped misses
    assert unseen["n"] == 4 and unseen["dropped_as_misses"] == 2
    assert unseen["model"]["recall@20"] == 0.25 and unseen["model"]["mrr@20"] == round(1 / 11 / 4, 6)
    assert "pop" not in unseen  # not ranked on every row of the slice
    with pytest.raises(ValueError, match="3 ranks for 4 pairs"):
        slice_report({"x": np.ones(3)}, masks)


def test_cold_start_slices_rank_fallbacks_on_the_cold_pairs_only() -> None:
    from models.session_rec.base import PopModel
    from models.session_rec.data import EncodedData
    from models.session_rec.items import ItemMap

    train = [np.array([0, 1]), np.array([0, 1, 1]), np.array([2, 0])]
    # pairs: [0] -> 1 (one click), [2, 0] -> 1 (target in the training data, not in prefix), [1] -> 3 (item 3 new)
    data = EncodedData(ItemMap(list("abcd")), train, [np.array([0]), np.array([2, 0]), np.array([1])],
                       np.array([1, 1, 3]), "a", {}, unseen_targets_dropped=1)
    pop = PopModel.fit(train, 4)  # counts 0: 3, 1: 3, 2: 1, 3: 0 -> item 1 ties item 0: conservative rank 2
    from models.session_rec.slices import cold_start_slices

    rep = cold_start_slices(np.array([1.0, 1.0, 30.0]), data, {"pop": pop})
    one = rep["prefix_len_1"]
    assert one["n"] == 2 and one["model"]["recall@20"] == 0.5 and one["pop"]["mrr@20"] == round((0.5 + 0.25) / 2, 6)
    unseen = rep["target_unseen"]
    assert unseen["n"] == 2 and unseen["dropped_as_misses"] == 1 and unseen["model"]["recall@20"] == 0.0
    assert rep["target_in_prefix"] == {"n": 0, "share": 0.0}
