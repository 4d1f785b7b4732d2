"""GRU4Rec and SASRec: loss maths, prefix scoring, artifacts, and that training learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.batching import pack
from models.session_rec.config import GRU4RecConfig, SASRecConfig
from models.session_rec.items import ItemMap
from models.session_rec.network import GRU4RecNet, GRU4RecScorer, bpr_max_loss, xe_loss
from models.session_rec.predictor import SessionRecPredictor
from models.session_rec.sasrec import SASRecScorer
from models.session_rec.training import GRU4RecTrainer, SASRecTrainer


def test_xe_loss_matches_manual_softmax() -> None:
    r = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]])
    manual = -(torch.log(torch.softmax(r[0], 0)[0]) + torch.log(torch.softmax(r[1], 0)[1]))
    assert xe_loss(r, 2).item() == pytest.approx(manual.item(), rel=1e-6)
    logq = torch.tensor([1.0, 0.0, 0.0])
    assert xe_loss(r, 2, logq).item() == pytest.approx(xe_loss(r - logq, 2).item(), rel=1e-6)


def test_bpr_max_loss_by_hand() -> None:
    r = torch.tensor([[1.0, 0.0, 2.0]])
    soft = torch.softmax(torch.tensor([0.0, 2.0]), 0)  # over the negatives (columns 1, 2)
    sig = torch.sigmoid(torch.tensor([1.0 - 0.0, 1.0 - 2.0]))
    reg = 0.5 * (soft * torch.tensor([0.0, 4.0])).sum()
    expected = -torch.log((soft * sig).sum()) + reg
    assert bpr_max_loss(r, 1, bpreg=0.5, elu_param=0.0).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("layers", [[8], [8, 6]])
def test_gru4rec_batched_prefixes_match_single_runs(layers: list[int]) -> None:
    torch.manual_seed(0)
    scorer = GRU4RecScorer(GRU4RecNet(12, layers, dropout_p_embed=0.3, dropout_p_hidden=0.3), {"layers": layers})
    prefixes = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 5, 1])]
    batched = scorer.score(prefixes)
    for row, p in enumerate(prefixes):  # a single prefix takes the numpy online path
        assert np.allclose(batched[row], scorer.score([p])[0], atol=1e-5)
        assert np.allclose(scorer.hidden([p]).numpy()[0], scorer._hidden_one(p), atol=1e-6)
        out = np.full(12, np.nan, dtype=np.float32)
        assert scorer.score_one(p, out=out) is out
        assert np.array_equal(out, scorer.score([p])[0])


def test_sasrec_batched_prefixes_match_single_runs() -> None:
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=16, n_heads=2, max_len=4).model_dump()
    scorer = SASRecScorer(SASRecScorer.build(12, cfg), cfg)
    prefixes = [np.array([1, 2, 3, 4, 5, 6]), np.array([4]), np.array([5, 6])]
    batched = scorer.score(prefixes)
    for row, p in enumerate(prefixes):
        assert np.allclose(batched[row], scorer.score([p])[0], atol=1e-4)


def _cyclic_sessions(n_items: int = 10, n: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        start, length = rng.integers(n_items), rng.integers(2, 6)
        out.append((start + np.arange(length)) % n_items)  # next item is always item + 1
    return out


@pytest.mark.parametrize("model", ["gru4rec", "sasrec"])
def test_training_learns_the_successor(model: str, tmp_path: Path) -> None:
    sessions = _cyclic_sessions()
    counts = np.bincount(np.concatenate(sessions), minlength=10).astype(float)
    items, offsets = pack(sessions)
    if model == "gru4rec":
        cfg = GRU4RecConfig(layers=[16], n_sample=8, batch_size=16, dropout_p_hidden=0.0).model_dump()
        trainer: GRU4RecTrainer | SASRecTrainer = GRU4RecTrainer(10, counts, cfg)
        epochs = 5
    else:
        cfg = SASRecConfig(hidden=16, n_layers=1, dropout=0.0, learning_rate=1e-2, batch_size=32).model_dump()
        trainer = SASRecTrainer(10, counts, cfg)
        epochs = 15
    losses = [trainer.train_epoch(items, offsets)["loss"] for _ in range(epochs)]
    assert losses[-1] < losses[0]
    scorer = GRU4RecScorer(trainer.net, cfg) if model == "gru4rec" else SASRecScorer(trainer.net, cfg)
    top = scorer.score([np.array([i]) for i in range(10)]).argmax(axis=1)
    assert (top == (np.arange(10) + 1) % 10).mean() >= 0.8
    # the artifact round-trips through the predictor with string ids
    save_artifact(tmp_path, scorer, ItemMap([f"i{i}" for i in range(10)]), counts)
    assert load_artifact(tmp_path).meta["model_type"] == model
    pred = SessionRecPredictor(str(tmp_path))
    assert pred.recommend(["i3"], k=1)[0][0] == "i4"
