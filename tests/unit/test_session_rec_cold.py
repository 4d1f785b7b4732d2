"""Category fallback: P(category | session) * P(item | category), new items included; the item table reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.session_rec.artifact import load_artifact, save_artifact
from models.session_rec.cold import CategoryModel, category_index
from models.session_rec.data import DataError, load_dataset, read_item_categories
from models.session_rec.items import ItemMap

# items 0, 1 in category 0; items 2, 3 in category 1; item 4 (category 1) has no training event
CATS = np.array([0, 0, 1, 1, 1])
SESSIONS = [np.array([0, 1]), np.array([0, 2]), np.array([2, 3]), np.array([3, 3])]


def test_scores_by_hand() -> None:
    m = CategoryModel.fit(SESSIONS, CATS, alpha=1.0, tau=1.0, eps=0.0)
    # counts: item0 2, item1 1, item2 2, item3 3, item4 0; transitions 0->0, 0->1, 1->1, 1->1
    assert m.counts.tolist() == [2, 1, 2, 3, 0]
    assert m.transitions.toarray().tolist() == [[1, 1], [0, 2]]
    # P(i | c) = (count + 1) / (category total + size): category 0: 3/5, 2/5; category 1: 3/8, 4/8, 1/8
    assert np.allclose(m.p_item, [3 / 5, 2 / 5, 3 / 8, 4 / 8, 1 / 8])
    # prefix [1] (category 0): the next category is 0 or 1 with 1/2 each
    assert np.allclose(m.category_scores(np.array([1])), [0.5, 0.5])
    assert np.allclose(m.score([np.array([1])])[0], [0.3, 0.2, 3 / 16, 4 / 16, 1 / 16])
    # prefix [2, 0]: category 0 votes 1 (last), category 1 votes e^-1; 1 -> 1 always
    w1 = np.exp(-1.0)
    assert np.allclose(m.category_scores(np.array([2, 0])), [0.5 / (1 + w1), (0.5 + w1) / (1 + w1)])
    # the new item 4 is ranked (its category's smoothing share), which popularity cannot do
    assert m.score([np.array([3])])[0, 4] > 0


def test_smoothing_and_unseen_transitions() -> None:
    m = CategoryModel.fit([np.array([0, 1])], CATS, alpha=0.5, tau=1.0, eps=0.2)
    # category 1 never starts a training transition: a prefix in it votes for itself; eps mixes the popularity
    p = m.category_scores(np.array([3]))
    pop = m.p_category
    assert np.allclose(p, 0.8 * np.array([0.0, 1.0]) + 0.2 * pop)
    assert np.isclose(m.category_scores(np.zeros(0, dtype=np.int64)).sum(), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        CategoryModel.fit(SESSIONS, CATS, alpha=0.0)


def test_round_trip(tmp_path: Path) -> None:
    m = CategoryModel.fit(SESSIONS, CATS, alpha=0.5, tau=2.0, eps=0.05)
    save_artifact(tmp_path, m, ItemMap(list("abcde")), m.counts)
    back = load_artifact(tmp_path).model
    assert back.config_dict() == {"alpha": 0.5, "tau": 2.0, "eps": 0.05}
    assert np.allclose(back.score([np.array([0, 2])]), m.score([np.array([0, 2])]))


def test_item_table_and_catalogue(tmp_path: Path) -> None:
    table = tmp_path / "cats.csv"
    table.write_text("itemId;categoryId\na;1\nb;1\nc;2\nz;2\n", encoding="utf-8")
    cats = read_item_categories(table)
    assert cats == {"a": "1", "b": "1", "c": "2", "z": "2"}
    idx, missing = category_index(["a", "c", "q"], cats)
    assert idx.tolist() == [0, 1, 2] and missing == 1
    tr, te = tmp_path / "tr.txt", tmp_path / "te.txt"
    tr.write_text("a b\nb c\n", encoding="utf-8")
    te.write_text("a z q b\n", encoding="utf-8")
    closed = load_dataset(tr, te, "session-lines")
    # z and q are unknown: dropped; pairs (a -> b); z had a known item before it, q too: 2 unseen targets lost
    assert closed.test_targets.tolist() == [1] and closed.unseen_targets_dropped == 2
    opened = load_dataset(tr, te, "session-lines", catalogue=sorted(cats))
    assert opened.items.ids == ["a", "b", "c", "z"]  # type: ignore[attr-defined]
    assert opened.test_targets.tolist() == [3, 1] and opened.unseen_targets_dropped == 1  # only q is lost


@pytest.mark.parametrize(("text", "message"), [
    ("item;cat\na;1\n", "row 1: header must name 'itemId' and 'categoryId'"),
    ("itemId,categoryId\na,1\nb\n", "row 3: expected 2 fields"),
    ("itemId;categoryId\na;\n", "row 2: field 'categoryId' is empty"),
    ("itemId;categoryId\na;1\na;2\n", "row 3: item 'a' has two categories"),
])
def test_item_table_errors_name_the_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_item_categories(path)
