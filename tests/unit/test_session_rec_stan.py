"""V-STAN on hand-computed cases and against a loop-by-loop reference of its formula."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.config import load_config
from models.session_rec.hybrid import HybridModel
from models.session_rec.items import ItemMap
from models.session_rec.knn import BACKOFF, VSKNN
from models.session_rec.stan import VSTAN

SESSIONS = [np.array([0, 1]), np.array([1, 2]), np.array([3, 4])]
E = math.exp(-1 / 2.05)  # item-neighbourhood decay one position away (lambda_inh default)


def test_vstan_scores_by_hand() -> None:
    m = VSTAN.fit(SESSIONS, 5, lambda_idf=None)
    s = m.score([np.array([1])])[0]
    sim = 1 / math.sqrt(2)  # cosine of {1} with {0, 1} and with {1, 2}
    assert s[0] == pytest.approx(sim * E, rel=1e-5)  # one position before the shared item
    assert s[1] == pytest.approx(2 * sim, rel=1e-5)  # the shared item itself, in both neighbours
    assert s[2] == pytest.approx(sim * E, rel=1e-5)
    assert s[3] <= BACKOFF and s[4] <= BACKOFF


def test_vstan_position_weights_in_prefix_and_prediction() -> None:
    m = VSTAN.fit(SESSIONS, 5, lambda_idf=None)
    s = m.score([np.array([3, 1])])[0]
    w3 = math.exp(-1 / 1.02)  # item 3 is one step older than the last item
    norm = math.sqrt(1 + w3 * w3)
    # session 2 = [3, 4] matches only via the older item: its similarity and its ipw both carry w3
    assert s[4] == pytest.approx(w3 / (norm * math.sqrt(2)) * E * w3, rel=1e-5)
    assert s[0] == pytest.approx(1 / (norm * math.sqrt(2)) * E, rel=1e-5)


def test_vstan_idf_and_neighbour_recency() -> None:
    plain = VSTAN.fit(SESSIONS, 5, lambda_idf=None).score([np.array([1])])[0]
    idf = VSTAN.fit(SESSIONS, 5, lambda_idf=5.0).score([np.array([1])])[0]
    assert idf[0] == pytest.approx(plain[0] * (1 + 5 * math.log(3 / 1)), rel=1e-5)
    assert idf[1] == pytest.approx(plain[1] * (1 + 5 * math.log(3 / 2)), rel=1e-5)
    # equal similarity; with recency decay and k=1 only the later session (1 = [1, 2]) is a neighbour
    recent = VSTAN.fit(SESSIONS, 5, k=1, lambda_snh=1.0, lambda_idf=None).score([np.array([1])])[0]
    assert recent[2] == pytest.approx(math.exp(-(3 - 1) / 1.0) / math.sqrt(2) * E, rel=1e-5)
    assert recent[0] <= BACKOFF


def _reference(sessions: list[np.ndarray], prefix: list[int], n_items: int, k: int, sample: int,
               spw: float, snh: float, inh: float, ipw: float, lidf: float) -> np.ndarray:
    """session-rec's vstan, written as loops over dicts (timestamps = session index)."""
    n_sess = len(sessions)
    events = np.bincount(np.concatenate(sessions), minlength=n_items)
    pos_map = {item: math.exp((p - len(prefix)) / spw) for p, item in enumerate(prefix, start=1)}
    cur = set(prefix)
    cand = sorted({j for j, s in enumerate(sessions) if cur & set(s.tolist())})[-sample:]
    norm = math.sqrt(sum(pos_map[i] ** 2 for i in cur))
    sims = []
    for j in cand:
        nb = set(sessions[j].tolist())
        sim = sum(pos_map[i] for i in cur & nb) / (norm * math.sqrt(len(nb)))
        sims.append((sim * math.exp(-(n_sess - j) / snh), j))
    out = np.zeros(n_items)
    for sim, j in sorted(sims, reverse=True)[:k]:
        seq = sessions[j].tolist()
        q_star = max(q for q, i in enumerate(seq, start=1) if i in cur)
        last = {i: q for q, i in enumerate(seq, start=1)}
        p_star = max(p for p, i in enumerate(prefix, start=1) if i in last)
        for i, q in last.items():
            sc = sim * math.exp(-abs(q - q_star) / inh)
            sc += sc * math.log(n_sess / events[i]) * lidf
            out[i] += sc * math.exp((p_star - len(prefix)) / ipw)
    return out


def test_vstan_matches_loop_reference_on_random_sessions() -> None:
    rng = np.random.default_rng(3)
    n_items = 30
    sessions = [rng.integers(0, n_items, size=rng.integers(1, 8)) for _ in range(120)]
    params = {"k": 15, "sample_size": 60, "lambda_spw": 1.5, "lambda_snh": 40.0, "lambda_inh": 2.0,
              "lambda_ipw": 1.3, "lambda_idf": 2.0}
    m = VSTAN.fit(sessions, n_items, **params)
    for prefix in ([3], [3, 7, 3], [1, 2, 5, 9, 1, 4]):
        got = m.score([np.array(prefix)])[0] - m._back
        ref = _reference(sessions, prefix, n_items, params["k"], params["sample_size"], params["lambda_spw"],
                         params["lambda_snh"], params["lambda_inh"], params["lambda_ipw"], params["lambda_idf"])
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-6), prefix


def test_vstan_artifact_roundtrip_and_hybrid_part(tmp_path: Path) -> None:
    m = VSTAN.fit(SESSIONS, 5, k=50)
    hyb = HybridModel([m, VSKNN.fit(SESSIONS, 5)], [0.5, 0.5])
    save_artifact(tmp_path, hyb, ItemMap(list("abcde")), np.ones(5))
    art = load_artifact(tmp_path)
    prefixes = [np.array([1]), np.array([3, 4]), np.array([0, 1, 2])]
    assert art.model.parts[0].config_dict()["k"] == 50
    assert np.allclose(art.model.score(prefixes), hyb.score(prefixes), atol=1e-7)


def test_vstan_config_is_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: vstan\nvstan:\n  k: 200\n  lambda_snh: null\n", encoding="utf-8")
    assert load_config(cfg).model_params()["k"] == 200
    cfg.write_text("model: vstan\nvstan:\n  lambda_inh: -1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vstan.lambda_inh"):
        load_config(cfg)
