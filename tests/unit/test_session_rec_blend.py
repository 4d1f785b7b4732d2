"""CandidateTable gives HybridModel's exact conservative ranks for any weights, without re-scoring."""

from __future__ import annotations

import numpy as np
import torch

from models.evaluation.ranking import ranking_metrics, ranks_from_scores
from models.session_rec.base import PopModel
from models.session_rec.blend import CandidateTable, full_ranks
from models.session_rec.hybrid import HybridModel
from models.session_rec.knn import VSKNN
from models.session_rec.network import GRU4RecNet, GRU4RecScorer
from models.session_rec.repeat import RepeatModel


class Fixed:
    """A kNN-like part with fixed scores per row (rows looked up by the prefix's first item)."""

    model_type = "vsknn"

    def __init__(self, table: np.ndarray):
        self.table, self.n_items = table, table.shape[1]

    def score(self, prefixes):  # noqa: ANN001, ANN201
        return self.table[[int(p[0]) for p in prefixes]]


def test_ranks_by_hand() -> None:
    # two parts over 4 items, one row; part A = [.6, .3, .1, 0], part B = [0, .5, .1, .4]; target item 1.
    # top 2: A {0, 1} (k-th value .3), B {1, 3} (k-th value .4)
    a = Fixed(np.array([[6.0, 3.0, 1.0, 0.0]]))
    b = Fixed(np.array([[0.0, 5.0, 1.0, 4.0]]))
    table = CandidateTable.build([a, b], [np.array([0])], np.array([1]), k=2)
    # w = (.75, .25): mix .45 .35 .10 .10 -> rank 2, settled by the table: .35 > bound .75 * .3 + .25 * .4
    ranks, need_full = table.ranks([0.75, 0.25])
    assert ranks.tolist() == [2.0] and need_full.size == 0
    # w = (0, 1): the target is B's best (.5 > .4): rank 1
    assert table.ranks([0.0, 1.0])[0].tolist() == [1.0]
    # w = (1, 0): the target's .3 is A's k-th value, so an item outside the top 2 might tie it:
    # the row goes to the full ranking, which finds rank 2
    ranks, need_full = table.ranks([1.0, 0.0])
    assert need_full.tolist() == [0]
    assert full_ranks([a, b], [1.0, 0.0], None, [np.array([0])], np.array([1])).tolist() == [2.0]
    # with k = 3 the row settles from the table
    table3 = CandidateTable.build([a, b], [np.array([0])], np.array([1]), k=3)
    assert table3.ranks([1.0, 0.0])[0].tolist() == [2.0]
    # ties count against the target (conservative); with k = n_items every item is a candidate
    c = Fixed(np.array([[1.0, 1.0, 1.0, 1.0]]))
    tie = CandidateTable.build([c, c], [np.array([0])], np.array([2]), k=4)
    assert tie.ranks([0.5, 0.5])[0].tolist() == [4.0]


def test_matches_the_hybrid_over_random_weights() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    n = 40
    sessions = [rng.integers(0, n, rng.integers(2, 6)) for _ in range(300)]
    parts = [GRU4RecScorer(GRU4RecNet(n, [8]), {"layers": [8]}), VSKNN.fit(sessions, n),
             PopModel.fit(sessions, n), RepeatModel(n, tau=1.0)]
    prefixes = [rng.integers(0, n, rng.integers(1, 5)) for _ in range(120)]
    targets = rng.integers(0, n, 120)
    targets[:30] = [p[-1] for p in prefixes[:30]]  # repeats
    targets[5] = -1  # outside the catalogue: always a miss
    table = CandidateTable.build(parts, prefixes, targets, k=6, batch_size=50, temperatures=(1.0, 0.3))
    for trial in range(12):
        w = rng.dirichlet(np.ones(4)) * (trial % 3 + 1)
        w[rng.integers(0, 4)] = 0.0
        temps = [0.3 if trial % 2 else 1.0, 1.0, 1.0, 1.0]
        ranks, need_full = table.ranks(list(w), temps)
        if need_full.size:
            ranks[need_full] = full_ranks(parts, list(w), temps, [prefixes[i] for i in need_full], targets[need_full])
        truth = ranks_from_scores(HybridModel(parts, list(w), temps).score(prefixes), targets)
        truth[truth > 20] = n + 1
        assert np.array_equal(ranks, truth), trial
    m = ranking_metrics(np.array([1.0, 2.0, 41.0, 4.0]))
    assert m["recall@20"] == 0.75 and np.isclose(m["mrr@20"], (1 + 0.5 + 0.25) / 4)
