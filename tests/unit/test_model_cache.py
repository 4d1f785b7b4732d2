"""The content-addressed model cache: one copy per version, a size cap, cleaned on start."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from store.modelcache import ModelCache
from store.registry import Registry

pytestmark = pytest.mark.unit


def _register(reg: Registry, tmp: Path, name: str, size: int) -> str:
    art = tmp / f"art-{len(list(tmp.iterdir()))}"
    art.mkdir()
    (art / "weights.bin").write_bytes(os.urandom(size))
    return reg.register(name, art, {"model_type": "test"}).version


def test_one_copy_per_version_however_often_it_is_loaded(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"))
    v = _register(reg, tmp_path, "recommender", 1000)
    reg.set_champion("recommender", v)
    cache = ModelCache(tmp_path / "cache", cap_bytes=10**6)
    first, version = cache.fetch(reg, "recommender")
    for _ in range(5):
        again, _ = cache.fetch(reg, "recommender", v)
        assert again == first
    assert version == v and (first / "weights.bin").stat().st_size == 1000
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]


def test_cap_evicts_least_recently_used_but_not_recent_entries(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"))
    versions = [_register(reg, tmp_path, "propensity", 4000) for _ in range(4)]
    cache = ModelCache(tmp_path / "cache", cap_bytes=9000, min_age_s=0)
    paths = []
    for v in versions:
        paths.append(cache.fetch(reg, "propensity", v)[0])
        time.sleep(0.02)  # distinct mtimes
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert cache.size_bytes() <= 9000 + 4 * 2000  # two weights plus their meta.json
    young = ModelCache(tmp_path / "cache", cap_bytes=1, min_age_s=3600)
    assert young.enforce_cap() == 0  # entries used within min_age_s are never evicted


def test_clean_on_start_removes_dead_copies_and_incomplete_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / ".tmp-abc-999999999-x1").mkdir(parents=True)  # a copy by a dead process
    (root / ".tmp-abc-999999999-x1" / "weights.bin").write_bytes(b"x" * 10)
    (root / f".tmp-def-{os.getpid()}-x2").mkdir()  # our own copy in progress
    (root / "incomplete").mkdir()  # no meta.json
    cache = ModelCache(root)
    assert cache.clean() == 2
    assert sorted(p.name for p in root.iterdir()) == [f".tmp-def-{os.getpid()}-x2"]


def test_each_model_keeps_its_latest_versions_however_many_are_promoted(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"))
    cache = ModelCache(tmp_path / "cache", min_age_s=0)  # default: 2 versions a model
    other = _register(reg, tmp_path, "propensity", 100)
    cache.fetch(reg, "propensity", other)
    kept = []
    for _ in range(5):  # five promotions of the recommender
        v = _register(reg, tmp_path, "recommender", 100)
        kept.append(cache.fetch(reg, "recommender", v)[0])
        time.sleep(0.02)
    assert [p.exists() for p in kept] == [False, False, False, True, True]
    assert len(cache.entries()) == 3  # the recommender's last two and the propensity model
    recent = ModelCache(tmp_path / "cache", min_age_s=3600, versions=1)
    assert recent.enforce_versions() == 0  # an entry used within min_age_s is never evicted
