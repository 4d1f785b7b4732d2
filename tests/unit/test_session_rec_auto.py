"""--model auto: the carve, the greedy blend search, the neural search and the budget."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.session_rec.auto import carve, run_auto, search_blend
from models.session_rec.blend import CandidateTable
from models.session_rec.config import AutoConfig, PartSpec
from models.session_rec.hybrid import HybridModel
from models.session_rec.neural_search import search_neural

TINY_GRU = {"layers": [8], "n_epochs": 3, "batch_size": 8, "n_sample": 0, "learning_rate": 0.1}


class Rows:
    """A kNN-like part whose scores for prefix [r] are row r of a fixed table."""

    model_type = "vsknn"

    def __init__(self, table: np.ndarray):
        self.table, self.n_items = table, table.shape[1]

    def score(self, prefixes):  # noqa: ANN001, ANN201
        return self.table[[int(p[0]) for p in prefixes]]


def synthetic_sessions(n: int = 300, n_items: int = 30, seed: int = 0) -> list[np.ndarray]:
    """Sessions walking item i -> i + 1 (mod n_items), with a repeat of the last item now and then."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = [int(rng.integers(n_items))]
        for _ in range(int(rng.integers(1, 6))):
            s.append(s[-1] if rng.random() < 0.3 else (s[-1] + 1) % n_items)
        out.append(np.array(s))
    return out


def test_carve_by_hand() -> None:
    sessions = [np.array([0, 1]), np.array([1, 2]), np.array([2, 0]), np.array([0, 3, 1]), np.array([2, 1, 0])]
    cv = carve(sessions, 4, fraction=0.4, max_pairs=100, seed=0)
    assert [s.tolist() for s in cv.train] == [[0, 1], [1, 2], [2, 0]]
    # item 3 never occurs in the carved train split: dropped from [0, 3, 1] as from a test session
    assert [p.tolist() for p in cv.prefixes] == [[0], [2], [2, 1]]
    assert cv.targets.tolist() == [1, 1, 0] and cv.n_pairs_all == 3
    sample = carve(sessions, 4, fraction=0.4, max_pairs=2, seed=0)
    assert len(sample.prefixes) == 2 and sample.n_pairs_all == 3
    with pytest.raises(ValueError, match="too few"):
        carve(sessions[:1], 4, fraction=0.4, max_pairs=10, seed=0)


def test_blend_search_adds_a_complementary_part_and_skips_noise() -> None:
    # 4 rows (prefix [r]), 6 items, target of row r is item r. A ranks the targets of rows 0-1 first and
    # puts rows 2-3's targets at rank 3; B the other way round; C is flat noise (never helps).
    n = 6
    a = np.full((4, n), 0.01)
    b = np.full((4, n), 0.01)
    for r in range(4):
        good, bad = (a, b) if r < 2 else (b, a)
        good[r, r] = 1.0
        bad[r, (r + 1) % n], bad[r, (r + 2) % n], bad[r, r] = 1.0, 0.9, 0.8
    c = np.ones((4, n))
    table = CandidateTable.build([Rows(a), Rows(b), Rows(c)], [np.array([r]) for r in range(4)], np.arange(4), k=3)
    choice = search_blend(table, ["a", "b", "c"], min_gain=0.001)
    assert sorted(choice.names) == ["a", "b"]
    assert np.isclose(sum(choice.weights), 1.0)
    # alone each part has recall 1 but MRR (1 + 1 + 1/3 + 1/3) / 4; mixed, every target is ranked first
    assert choice.value == pytest.approx(2.0)
    assert choice.path[0]["singles"]["c"] < choice.path[0]["singles"]["a"]


def test_neural_search_probes_trains_and_respects_the_deadline() -> None:
    sessions = synthetic_sessions()
    cv = carve(sessions, 30, fraction=0.2, max_pairs=200, seed=0)
    specs = [PartSpec(name="small", model="gru4rec", params={**TINY_GRU, "layers": [4]}),
             PartSpec(name="tiny", model="gru4rec", params=TINY_GRU)]
    out = search_neural(specs, cv.train, cv.holdout, cv.prefixes, cv.targets, 30, seed=1, deadline=1e18, patience=5)
    assert out is not None and set(out.probes) == {"small", "tiny"}
    assert out.name == max(out.probes, key=lambda k: out.probes[k]["objective"])
    assert [c["epoch"] for c in out.curve] == [1, 2, 3]
    assert out.epochs == 1 + int(np.argmax([c["objective"] for c in out.curve]))
    # the fine-tuned network differs from the carve one (one pass over the held-out sessions)
    p = [np.array([1, 2])]
    assert not np.allclose(out.carve.score(p), out.final.score(p))
    # a clock that moves 1,000 s per reading and a deadline 1,500 s away: one probe, no further epoch
    ticks = itertools.count(0, 1000)
    late = search_neural(specs, cv.train, cv.holdout, cv.prefixes, cv.targets, 30, seed=1, deadline=1500,
                         clock=lambda: float(next(ticks)))
    assert late is not None and list(late.probes) == ["small"] and len(late.curve) == 1


def test_run_auto_end_to_end_and_without_time_for_the_network() -> None:
    sessions = synthetic_sessions(400)
    cfg = AutoConfig(valid_pairs=300, epoch_valid_pairs=100,
                     knn=[PartSpec(name="vsknn", model="vsknn"),
                          PartSpec(name="vstan", model="vstan", params={"k": 50, "sample_size": 200})],
                     neural=[PartSpec(name="gru", model="gru4rec", params=TINY_GRU)])
    res = run_auto(sessions, 30, cfg, seed=3)
    rep = res.report
    assert res.model.n_items == 30 and np.isclose(sum(res.weights), 1.0)
    assert set(res.parts) <= {"vsknn", "vstan", "gru", "repeat_tau0.5", "repeat_tau1", "repeat_tau2"}
    assert rep["neural"]["chosen"] == "gru" and rep["valid"]["recall@20"] > 0
    assert sum(1 for p in res.parts if p.startswith("repeat")) <= 1
    if len(res.parts) > 1:
        assert isinstance(res.model, HybridModel)
    # the chosen blend is never below its best single part on validation
    singles = rep["search_path"][0]["singles"]
    assert rep["search_path"][-1]["value"] >= max(singles.values()) - 1e-9
    # a 1-minute budget on a clock that moves 10 s per reading leaves no time for the network
    ticks = itertools.count(0, 10)
    quick = run_auto(sessions, 30, cfg.model_copy(update={"time_budget_min": 1.0}), seed=3,
                     clock=lambda: float(next(ticks)))
    assert "neural" not in quick.report and "gru" not in quick.parts
