"""pipelines.precompute on the shared cluster: recs and popular published atomically, batch = online."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.session_rec.artifact import pop_artifact
from models.session_rec.predictor import SessionRecPredictor
from pipelines import precompute
from store import keys, publish
from store.registry import Registry, load_predictor

pytestmark = pytest.mark.integration

SESSIONS = [["i1", "i2", "i3"], ["i2", "i4"], ["i1", "i5"], ["i3"], ["i6", "i1", "i2"]]


def _features(root: Path, bad_row: bool = False) -> Path:
    (root / "sequences").mkdir(parents=True)
    (root / "items").mkdir(parents=True)
    seq = pd.DataFrame({"session_id": [f"s{i}" for i in range(len(SESSIONS))], "tenant": [None, "acme", None,
                                                                                         None, "acme"],
                        "items": SESSIONS})
    seq.to_parquet(root / "sequences" / "part-0.parquet")
    if bad_row:
        pd.DataFrame({"session_id": ["bad"], "tenant": [None], "items": [None]},
                     ).astype({"items": object}).to_parquet(root / "sequences" / "part-1.parquet")
    pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "views_7d": [50, 40, 30, 10],
                  "purchases_7d": [0, 3, 0, 0]}).to_parquet(root / "items" / "part-0.parquet")
    return root


@pytest.fixture()
def registry(tmp_path: Path) -> str:
    uri = str(tmp_path / "registry")
    art = pop_artifact(tmp_path / "pop", SESSIONS + [["i1"]])
    reg = Registry(uri)
    reg.set_champion("recommender", reg.register("recommender", art, {"model_type": "pop"}).version, "test")
    return uri


@pytest.mark.parametrize("engine", ["local", "ray_data"])
def test_precompute_publishes_recs_equal_to_online_and_popular(ray_cluster: object, redis_client: object,
                                                               redis_server: str, registry: str,
                                                               tmp_path: Path, engine: str) -> None:
    features = _features(tmp_path / "features")
    cfg = precompute.PrecomputeConfig(features=str(features), registry=registry, redis=redis_server, top_k=3,
                                      engine=engine, model_cache_dir=str(tmp_path / "cache"))
    report = precompute.run(cfg)
    assert report["score"] == "skipped"  # no sessions/ table and no propensity champion
    assert report["recs"]["rows"] == {"default": 3, "acme": 2}
    online = load_predictor(SessionRecPredictor, registry, cache_dir=str(tmp_path / "cache"))
    for tenant, sids in (("default", ["s0", "s2", "s3"]), ("acme", ["s1", "s4"])):
        version = redis_client.get(keys.pointer_key("recs", tenant)).decode()
        assert keys.model_version_of(version) == online.version
        for sid in sids:
            raw = redis_client.get(keys.entity_key("recs", version, sid, tenant))
            batch = [(i, s) for i, s in json.loads(raw)]
            assert batch == online.recommend(SESSIONS[int(sid[1:])], k=3)
        meta = json.loads(redis_client.get(keys.meta_key("recs", version, tenant)))
        assert meta["rows"] == len(sids)
        assert 0 < redis_client.ttl(keys.entity_key("recs", version, sids[0], tenant)) <= cfg.ttl_s
    # a tenant's rows live only under its own namespace
    assert redis_client.get(keys.entity_key("recs", version, "s0", "acme")) is None
    pop_version = redis_client.get(keys.pointer_key("popular", "default")).decode()
    popular = json.loads(redis_client.get(keys.entity_key("popular", pop_version, keys.POPULAR_ENTITY)))
    assert [p[0] for p in popular] == ["i2", "i1", "i3", "i4"]  # purchases weigh more than views


def test_failed_run_leaves_the_old_pointer_and_no_partial_namespace(ray_cluster: object, redis_client: object,
                                                                    redis_server: str, registry: str,
                                                                    tmp_path: Path) -> None:
    good = precompute.PrecomputeConfig(features=str(_features(tmp_path / "good")), registry=registry,
                                       redis=redis_server, tables=["recs"])
    precompute.run(good)
    before = redis_client.get(keys.pointer_key("recs", "default"))
    keys_before = set(redis_client.keys("tandem:default:recs:*"))
    bad = precompute.PrecomputeConfig(features=str(_features(tmp_path / "bad", bad_row=True)), registry=registry,
                                      redis=redis_server, tables=["recs"])
    with pytest.raises(Exception, match="items"):
        precompute.run(bad)
    assert redis_client.get(keys.pointer_key("recs", "default")) == before
    assert set(redis_client.keys("tandem:default:recs:*")) == keys_before


def test_tenants_with_their_own_models_are_scored_by_them(ray_cluster: object, redis_client: object,
                                                          redis_server: str, registry: str, tmp_path: Path) -> None:
    """acme has its own recommender over its own catalogue: its rows never get shared items."""
    from store.registry import tenant_uri

    own = Registry(tenant_uri(registry, "acme"))
    acme_sessions = [["a1", "a2"], ["a2", "a3"], ["a1"]]
    own.set_champion("recommender", own.register("recommender", pop_artifact(tmp_path / "pop-acme", acme_sessions),
                                                 {"model_type": "pop"}).version, "test")
    features = _features(tmp_path / "features")
    cfg = precompute.PrecomputeConfig(features=str(features), registry=registry, redis=redis_server, top_k=3,
                                      tables=["recs"])
    report = precompute.run(cfg)
    assert set(report["recs"]["rows"]) == {"default", "acme"}
    assert report["recs"]["own_models"]["acme"]["registry"] == tenant_uri(registry, "acme")
    assert set(report["recs"]["own_models"]) == {"acme"}  # default: the shared model
    for tenant, sids, catalogue in (("acme", ["s1", "s4"], {"a1", "a2", "a3"}),
                                    ("default", ["s0", "s2", "s3"], {f"i{i}" for i in range(1, 7)})):
        version = redis_client.get(keys.pointer_key("recs", tenant)).decode()
        for sid in sids:
            items = {i for i, _ in json.loads(redis_client.get(keys.entity_key("recs", version, sid, tenant)))}
            assert items and items <= catalogue, (tenant, sid, items)


def test_per_tenant_training_precompute_and_popular_stay_in_their_catalogue(
        ray_cluster: object, redis_client: object, redis_server: str, tmp_path: Path) -> None:
    """jobs.train_recommender --tenant trains each tenant on its own sessions into its namespace;
    precompute then scores each tenant's rows with its own model, and its popular table (the items
    table is not split by tenant) comes from its own model: no tenant is shown another's items."""
    from pipelines.train_recommender import TrainConfig, train_and_register
    from store.registry import tenant_uri

    rng = __import__("random").Random(3)
    rows = []
    for i in range(120):
        tenant = "acme" if i % 2 else "bolt"
        prefix = "a" if tenant == "acme" else "b"
        rows.append({"session_id": f"s{i}", "tenant": tenant, "last_time": pd.Timestamp("2026-11-01", tz="UTC")
                     + pd.Timedelta(minutes=i), "items": [f"{prefix}{rng.randint(1, 6)}" for _ in range(3)]})
    features = tmp_path / "features"
    (features / "sequences").mkdir(parents=True)
    (features / "items").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(features / "sequences" / "part-0.parquet")
    pd.DataFrame({"item_id": ["zz1", "zz2"], "views_7d": [100, 50], "purchases_7d": [5, 1]}).to_parquet(
        features / "items" / "part-0.parquet")     # not split by tenant: must not reach either tenant
    registry = str(tmp_path / "registry")
    for tenant in ("acme", "bolt"):
        report = train_and_register(TrainConfig(train=str(features / "sequences"), format="parquet", model="pop",
                                                registry=registry, tenant=tenant, promote=True))
        assert report["registry"] == tenant_uri(registry, tenant)
    assert Registry(registry).champion("recommender") is None              # nothing in the shared default
    out = precompute.run(precompute.PrecomputeConfig(features=str(features), registry=registry,
                                                     redis=redis_server, top_k=5, tables=["recs", "popular"]))
    assert set(out["recs"]["rows"]) == {"acme", "bolt"} == set(out["recs"]["own_models"])
    for tenant, prefix in (("acme", "a"), ("bolt", "b")):
        version = redis_client.get(keys.pointer_key("recs", tenant)).decode()
        recs = [k for k in redis_client.scan_iter(f"tandem:{tenant}:recs:{version}:s*")]
        assert recs
        for key in recs:
            assert all(i.startswith(prefix) for i, _ in json.loads(redis_client.get(key))), key
        pop_version = redis_client.get(keys.pointer_key("popular", tenant)).decode()
        popular = json.loads(redis_client.get(keys.entity_key("popular", pop_version, keys.POPULAR_ENTITY, tenant)))
        assert popular and all(i.startswith(prefix) for i, _ in popular), (tenant, popular)


def test_a_failed_commit_for_the_second_tenant_keeps_the_first_live(ray_cluster: object, redis_client: object,
                                                                   redis_server: str, registry: str,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenant acme commits, then default's commit fails: acme's new table stays live and whole,
    default keeps its previous table, and default's half-published namespace is deleted."""
    features = str(_features(tmp_path / "features"))
    cfg = precompute.PrecomputeConfig(features=features, registry=registry, redis=redis_server, tables=["recs"])
    precompute.run(cfg)
    before = {t: redis_client.get(keys.pointer_key("recs", t)) for t in ("acme", "default")}
    real_commit = publish.commit

    def failing(client: object, table: str, version: str, tenant: str, *args: object, **kw: object) -> object:
        if tenant == "default":  # sorted: acme commits first
            raise ConnectionError("connection reset while committing")
        return real_commit(client, table, version, tenant, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(publish, "commit", failing)
    report = precompute.run(cfg)
    assert report["failed"] == {"recs/default": "ConnectionError: connection reset while committing"}
    assert report["recs"]["rows"] == {"acme": 2}
    acme = redis_client.get(keys.pointer_key("recs", "acme"))
    assert acme != before["acme"] and keys.model_version_of(acme.decode()) == keys.model_version_of(
        before["acme"].decode())
    assert redis_client.get(keys.entity_key("recs", acme.decode(), "s1", "acme")) is not None
    assert redis_client.get(keys.pointer_key("recs", "default")) == before["default"]
    new_default = keys.namespace("recs", report["recs"]["namespace"], "default")
    assert list(redis_client.scan_iter(match=new_default + ":*")) == []
    assert redis_client.get(keys.entity_key("recs", before["default"].decode(), "s0")) is not None


def test_an_invalid_tenant_id_is_counted_and_never_blocks_the_others(ray_cluster: object, redis_client: object,
                                                                     redis_server: str, registry: str,
                                                                     tmp_path: Path) -> None:
    features = _features(tmp_path / "features")
    pd.DataFrame({"session_id": ["x1", "x2"], "tenant": ["bad tenant:*", "acme"], "items": [["i1"], ["i2"]]},
                 ).to_parquet(features / "sequences" / "part-9.parquet")
    cfg = precompute.PrecomputeConfig(features=str(features), registry=registry, redis=redis_server, tables=["recs"])
    report = precompute.run(cfg)
    assert report["recs"]["rows"] == {"acme": 3, "default": 3}
    assert report["recs"]["invalid_tenant_rows"] == 1
    assert not [k for k in redis_client.scan_iter(match="tandem:bad*")]
