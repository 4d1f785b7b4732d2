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


def test_models_are_namespaced_by_tenant_with_a_shared_default(tmp_path: Path) -> None:
    from store.registry import resolve, tenant_uri

    root = str(tmp_path / "reg")
    shared = Registry(root)
    mv_shared = shared.register("recommender", _artifact(tmp_path, "s", "shared"), {})
    shared.set_champion("recommender", mv_shared.version)
    acme = Registry(tenant_uri(root, "acme"))
    mv_acme = acme.register("recommender", _artifact(tmp_path, "a", "acme"), {})
    assert tenant_uri(root, "default") == tenant_uri(root, None) == root
    assert acme.champion("recommender") is None
    own = tenant_uri(root, "acme")
    assert resolve(root, "recommender", "acme") == (root, None)          # no own champion yet: shared
    assert resolve(root, "recommender", "acme", mv_acme.version) == (own, mv_acme.version)  # pinned own
    acme.set_champion("recommender", mv_acme.version)
    assert resolve(root, "recommender", "acme") == (own, None)
    # a pin of a shared version is for tenants on the shared default, never for one with its own
    assert resolve(root, "recommender", "acme", mv_shared.version) == (own, None)
    assert resolve(root, "recommender", "bolt", mv_shared.version) == (root, mv_shared.version)
    assert resolve(root, "recommender", "default") == (root, None)
    assert not (tmp_path / "reg" / "tenants" / "bolt").exists()          # a lookup creates nothing
    assert shared.versions("recommender") == [mv_shared.version]         # namespaces do not mix
    assert acme.versions("recommender") == [mv_acme.version]
    with pytest.raises(ValueError, match="tenant"):
        tenant_uri(root, "../etc")
    with pytest.raises(RegistryError, match="reserved"):
        shared.register("tenants", _artifact(tmp_path, "t", "x"), {})
