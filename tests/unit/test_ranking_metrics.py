"""Ranking metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.ranking import RankMetrics, evaluate, next_item_pairs, ranks_from_scores


def test_tie_rules_on_a_tied_target() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])  # target 0 ties with item 2, item 1 is above
    assert ranks_from_scores(scores, np.array([0]), "conservative").tolist() == [3.0]
    assert ranks_from_scores(scores, np.array([0]), "standard").tolist() == [2.0]
    assert ranks_from_scores(scores, np.array([0]), "median").tolist() == [2.5]


def test_all_equal_scores_are_a_miss_under_conservative() -> None:
    scores = np.zeros((1, 50))
    assert ranks_from_scores(scores, np.array([7])).tolist() == [50.0]


def test_masked_or_unknown_target_is_a_miss() -> None:
    scores = np.array([[-np.inf, 1.0, 2.0], [1.0, 2.0, 3.0]])
    ranks = ranks_from_scores(scores, np.array([0, -1]))
    assert ranks.tolist() == [np.inf, np.inf]
    m = RankMetrics(cutoffs=(20,))  # a cutoff above the catalogue size: still a miss
    m.add_ranks(ranks)
    assert m.result()["recall@20"] == 0.0 and m.result()["mrr@20"] == 0.0


def test_recall_and_mrr_by_hand() -> None:
    m = RankMetrics(cutoffs=(1, 2, 5))
    m.add_ranks(np.array([1.0, 2.0, 3.0, 10.0]))
    r = m.result()
    assert r["n"] == 4
    assert r["recall@1"] == pytest.approx(0.25)
    assert r["recall@2"] == pytest.approx(0.5)
    assert r["recall@5"] == pytest.approx(0.75)
    assert r["mrr@1"] == pytest.approx(0.25)
    assert r["mrr@2"] == pytest.approx((1 + 0.5) / 4)
    assert r["mrr@5"] == pytest.approx((1 + 0.5 + 1 / 3) / 4)


def test_next_item_pairs_every_position() -> None:
    prefixes, targets = next_item_pairs([np.array([1, 2, 3]), np.array([4]), np.array([5, 5])])
    assert [p.tolist() for p in prefixes] == [[1], [1, 2], [5]]
    assert targets.tolist() == [2, 3, 5]


def test_evaluate_batches_and_excludes_seen() -> None:
    def score_fn(batch: list[np.ndarray]) -> np.ndarray:
        out = np.tile(np.array([4.0, 3.0, 2.0, 1.0]), (len(batch), 1))
        return out

    prefixes = [np.array([0]), np.array([1]), np.array([0, 1])]
    targets = np.array([0, 2, 3])
    plain = evaluate(score_fn, prefixes, targets, cutoffs=(1, 3), batch_size=2)
    assert plain["recall@1"] == pytest.approx(1 / 3)  # ranks 1, 3, 4
    assert plain["recall@3"] == pytest.approx(2 / 3)
    masked = evaluate(score_fn, prefixes, targets, cutoffs=(1, 3), batch_size=2, exclude_seen=True)
    # ranks: target 0 is seen -> miss; [1] seen: 2 ranks 2; [0,1] seen: 3 ranks 2
    assert masked["recall@1"] == pytest.approx(0.0)
    assert masked["mrr@3"] == pytest.approx((0 + 0.5 + 0.5) / 3)


def test_bad_tie_rule_rejected() -> None:
    with pytest.raises(ValueError, match="tie rule"):
        ranks_from_scores(np.zeros((1, 2)), np.array([0]), "optimistic")
