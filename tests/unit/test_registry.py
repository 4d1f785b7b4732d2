from __future__ import annotations

import json
from pathlib import Path

import pytest

from store.registry import Registry, RegistryError


def _artifact(tmp_path: Path, name: str, content: str) -> Path:
    d = tmp_path / name
    (d / "sub").mkdir(parents=True)
    (d / "model.txt").write_text(content)
    (d / "sub" / "extra.json").write_text(json.dumps({"k": content}))
    return d


def test_register_copies_files_and_lists_only_complete_versions(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "reg"))
    mv = reg.register("propensity", _artifact(tmp_path, "a", "one"), {"metrics": {"pr_auc": 0.3}})
    assert reg.versions("propensity") == [mv.version]
    assert (tmp_path / "reg" / "propensity" / mv.version / "sub" / "extra.json").exists()
    # a directory without meta.json (an interrupted copy) is not a version
    (tmp_path / "reg" / "propensity" / "v-half").mkdir()
    assert reg.versions("propensity") == [mv.version]
    assert reg.get("propensity", mv.version).meta["metrics"] == {"pr_auc": 0.3}


def test_champion_promote_and_rollback(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "reg"))
    assert reg.champion("propensity") is None
    with pytest.raises(RegistryError, match="no champion"):
        reg.get("propensity")
    v1 = reg.register("propensity", _artifact(tmp_path, "a", "one"), {}).version
    v2 = reg.register("propensity", _artifact(tmp_path, "b", "two"), {}).version
    reg.set_champion("propensity", v1, "first")
    reg.set_champion("propensity", v2, "better")
    assert reg.champion("propensity") == v2
    assert reg.rollback("propensity") == v1
    assert reg.champion("propensity") == v1
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback("propensity")


def test_set_champion_rejects_unknown_version(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "reg"))
    with pytest.raises(RegistryError, match="not registered"):
        reg.set_champion("propensity", "v-nope")


def test_fetch_returns_local_copy_of_champion(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "reg"))
    v = reg.register("recommender", _artifact(tmp_path, "a", "weights"), {}).version
    reg.set_champion("recommender", v)
    local = reg.fetch("recommender", None, tmp_path / "cache")
    assert (local / "model.txt").read_text() == "weights"
    assert reg.fetch("recommender", None, tmp_path / "cache") == local  # cached


def test_register_missing_dir_is_clear(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        Registry(str(tmp_path / "reg")).register("x", tmp_path / "nope", {})
