"""Recommenders pass the same promotion gates as propensity models: a worse one never becomes champion."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from jobs import train_recommender
from models.session_rec.data import raw_next_item_pairs
from models.session_rec.predictor import REGISTRY_NAME
from pipelines.promotion import recommender_gates
from store.registry import Registry

pytestmark = pytest.mark.unit


def _sessions(path: Path, n: int, seed: int) -> str:
    """Sessions that walk a ring of 60 items (i -> i+1 -> i+2 ...): sequence-aware models win."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for _ in range(n):
            start, length = int(rng.integers(60)), int(rng.integers(3, 7))
            f.write(" ".join(f"i{(start + j) % 60}" for j in range(length)) + "\n")
    return str(path)


def _train(tmp: Path, model: str, registry: str, promote: bool) -> dict:
    buf = io.StringIO()
    args = ["--train", _sessions(tmp / "train.txt", 600, 1), "--test", _sessions(tmp / "test.txt", 150, 2),
            "--format", "session-lines", "--model", model, "--registry", registry, "--json",
            "--artifact-dir", str(tmp / f"art-{model}-{len(list(tmp.iterdir()))}")]
    with redirect_stdout(buf):
        train_recommender.main(args + (["--promote"] if promote else []))
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def test_a_worse_recommender_is_refused_and_says_why(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    first = _train(tmp_path, "vsknn", registry, promote=False)
    assert first["promoted"] is True  # the first model of a registry
    worse = _train(tmp_path, "pop", registry, promote=True)
    assert worse["promoted"] is False and "recall_at_k" in worse["refused"]
    gate = next(g for g in worse["gates"] if g["name"] == "recall_at_k")
    assert gate["numbers"]["candidate"] < gate["numbers"]["champion"] - 0.01
    reg = Registry(registry)
    assert reg.champion(REGISTRY_NAME) == first["version"]
    better = _train(tmp_path, "vsknn", registry, promote=True)  # as good (same data): within tolerance
    assert better["promoted"] is True and reg.champion(REGISTRY_NAME) == better["version"]


def test_gates_need_pairs_and_catch_a_collapsed_model(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    pop = _train(tmp_path, "pop", registry, promote=False)
    reg = Registry(registry)
    empty = recommender_gates(reg, pop["version"], None, ([], []))
    assert [g.passed for g in empty] == [False]
    pairs = raw_next_item_pairs([["i1", "i2", "i3"], ["i7", "i8"], ["i30", "i31", "i32"]])
    assert pairs == ([["i1"], ["i1", "i2"], ["i7"], ["i30"], ["i30", "i31"]], ["i2", "i3", "i8", "i31", "i32"])
    gates = {g.name: g for g in recommender_gates(reg, pop["version"], None, pairs)}
    assert not gates["not_collapsed"].passed and "same top-1" in gates["not_collapsed"].detail
