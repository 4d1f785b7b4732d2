"""SessionRecPredictor over a popularity artifact: contract, cold start, batch parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.session_rec.artifact import load_artifact, pop_artifact
from models.session_rec.predictor import SessionRecPredictor, top_k, top_k_row
from store.registry import Registry, load_predictor

SESSIONS = [["a", "b", "c"], ["b", "c"], ["c", "d"], ["c"], ["b"]]  # counts: c=4, b=3, a=1, d=1


@pytest.fixture()
def pop_dir(tmp_path: Path) -> Path:
    return pop_artifact(tmp_path / "pop", SESSIONS)


def test_pop_recommend_orders_by_count_and_excludes_seen(pop_dir: Path) -> None:
    pred = SessionRecPredictor.from_artifact(str(pop_dir))
    assert pred.model_type == "pop"
    recs = pred.recommend(["c"], k=2)
    assert [i for i, _ in recs] == ["b", "a"]  # c excluded; a and d tie, a has the lower index
    assert recs[0][1] > recs[1][1]
    assert [i for i, _ in pred.recommend(["c"], k=2, exclude_seen=False)] == ["c", "b"]


def test_unknown_and_empty_prefix_fall_back_to_popularity(pop_dir: Path) -> None:
    pred = SessionRecPredictor(str(pop_dir))
    assert [i for i, _ in pred.recommend([], k=3)] == ["c", "b", "a"]
    assert [i for i, _ in pred.recommend(["zzz", "yyy"], k=3)] == ["c", "b", "a"]
    assert len(pred.recommend(["a"], k=100)) == 3  # catalogue minus the seen item


def test_batch_call_matches_recommend(pop_dir: Path) -> None:
    pred = SessionRecPredictor(str(pop_dir))
    batch = pd.DataFrame({"session_id": ["s1", "s2"], "items": [["a"], ["b", "x"]]})
    out = pred(batch)
    assert list(out.columns) == ["session_id", "recs", "rec_scores"]
    for row, items in enumerate(batch["items"]):
        single = pred.recommend(list(items), k=20)
        assert out["recs"].iloc[row] == [i for i, _ in single]
        assert np.allclose(out["rec_scores"].iloc[row], [s for _, s in single])


def test_bad_input_names_row_and_field(pop_dir: Path) -> None:
    pred = SessionRecPredictor(str(pop_dir))
    with pytest.raises(ValueError, match="row 1.*'items'"):
        pred(pd.DataFrame({"session_id": ["s1", "s2"], "items": [["a"], "b"]}))
    with pytest.raises(ValueError, match="missing column 'items'"):
        pred(pd.DataFrame({"session_id": ["s1"]}))
    with pytest.raises(TypeError):
        pred.recommend("a")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="model.json"):
        SessionRecPredictor(str(pop_dir.parent))


def test_from_registry_loads_champion(pop_dir: Path, tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "reg"))
    mv = reg.register("recommender", pop_dir, {"model_type": "pop"})
    reg.set_champion("recommender", mv.version, "test")
    pred = load_predictor(SessionRecPredictor, str(tmp_path / "reg"), cache_dir=str(tmp_path / "cache"))
    assert pred.version == mv.version
    assert pred.recommend([], k=1)[0][0] == "c"


def test_artifact_roundtrip_keeps_items_and_counts(pop_dir: Path) -> None:
    art = load_artifact(pop_dir)
    assert art.items.ids == ["a", "b", "c", "d"]
    assert art.popularity.tolist() == [1, 3, 4, 1]


def test_top_k_breaks_ties_by_index() -> None:
    idx, vals = top_k(np.array([[1.0, 3.0, 3.0, 0.0]]), 3)
    assert idx.tolist() == [[1, 2, 0]]
    assert vals.tolist() == [[3.0, 3.0, 1.0]]


def test_top_k_matches_a_full_stable_sort_with_ties_and_masks() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, size=(40, 50)).astype(np.float32)  # many ties, also at the cut
    scores[:, :10][rng.random((40, 10)) < 0.5] = -np.inf
    scores[0] = -np.inf  # a row that is all masked
    idx, vals = top_k(scores, 20)
    ref = np.lexsort((np.broadcast_to(np.arange(50), scores.shape), -scores), axis=1)[:, :20]
    assert idx.tolist() == ref.tolist()
    assert np.array_equal(vals, np.take_along_axis(scores, ref, axis=1))


@pytest.mark.parametrize("groups", [4, 16, 64, 512])
@pytest.mark.parametrize("k", [1, 5, 20, 60])
def test_top_k_row_matches_top_k(k: int, groups: int) -> None:
    rng = np.random.default_rng(3)
    n = 1003  # not a multiple of the group count: a tail
    rows = [rng.integers(0, 6, size=n).astype(np.float32),  # ties everywhere, also at the cut
            rng.standard_normal(n).astype(np.float32),
            np.full(n, -np.inf, dtype=np.float32),
            rng.standard_normal(n).astype(np.float32),
            rng.standard_normal(n).astype(np.float32)]
    rows[1][rng.random(n) < 0.98] = -np.inf  # fewer finite scores than k
    rows[3][7] = rows[3][30] = rows[3][1001] = rows[3].max()  # a tie at the top, one in the tail
    rows[4][:] = np.sort(rows[4])  # the best items all in the tail
    for row in rows:
        idx, vals = top_k_row(row.copy(), k, groups=groups)
        ref_idx, ref_vals = top_k(row[None], k)
        assert idx.tolist() == ref_idx[0].tolist()
        assert np.array_equal(vals, ref_vals[0])


def test_predictor_pickles(pop_dir: Path) -> None:
    import pickle

    pred = pickle.loads(pickle.dumps(SessionRecPredictor(str(pop_dir))))
    assert [i for i, _ in pred.recommend(["c"], k=2)] == ["b", "a"]


def test_recommend_matches_the_batch_path(tmp_path: Path) -> None:
    import torch

    from models.session_rec.artifact import save_artifact
    from models.session_rec.items import ItemMap
    from models.session_rec.network import GRU4RecNet, GRU4RecScorer

    torch.manual_seed(0)
    ids = [f"i{j}" for j in range(30)]
    save_artifact(tmp_path / "g", GRU4RecScorer(GRU4RecNet(30, [8]), {"layers": [8]}), ItemMap(ids), np.ones(30))
    pred = SessionRecPredictor(str(tmp_path / "g"))
    for items in (["i3"], ["i1", "i7", "i1"], ["zzz", "i2"], []):
        for exclude in (True, False):
            one = pred.recommend(items, k=5, exclude_seen=exclude)
            assert one == pred.recommend_many([items], k=5, exclude_seen=exclude)[0]
            assert len(one) == 5 and not (exclude and {i for i, _ in one} & set(items))


def test_call_defaults_come_from_the_constructor(pop_dir: Path) -> None:
    pred = SessionRecPredictor(str(pop_dir), k=1, exclude_seen=False)
    out = pred(pd.DataFrame({"session_id": ["s"], "items": [["c"]]}))
    assert out["recs"].iloc[0] == ["c"]
