"""A replica's experiments: re-read from the store off the request path, challenger models loaded
before the swap, kill switch to control without exposures, a bad revision never replaces a good one."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models.experiments.config import ExperimentConfig
from serve.experiments import Experiments
from store.experiments import ExperimentStore
from store.registry import Registry


def _cfg(pinned: str | None = None, **kw: Any) -> ExperimentConfig:
    third = ({"name": "chal", "policy": "version", "model_version": pinned, "share": 0.25} if pinned else
             {"name": "chal", "policy": "model", "share": 0.25})
    data: dict[str, Any] = {"tenant": "acme", "experiment_id": "e1", "salt": "s",
                            "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                                         {"name": "model", "policy": "model", "share": 0.25}, third]}
    data.update(kw)
    return ExperimentConfig.model_validate(data)


@pytest.fixture()
def registry(tmp_path: Path) -> tuple[str, str]:
    uri = str(tmp_path / "reg")
    art = tmp_path / "art"
    art.mkdir()
    (art / "w").write_text("x")
    return uri, Registry(uri).register("recommender", art, {}).version


def test_assignment_policies_pins_and_kill(registry: tuple[str, str]) -> None:
    uri, version = registry
    loads: list[tuple[str, str, str]] = []

    def load(tenant: str, model: str, v: str) -> object:
        loads.append((tenant, model, v))
        return f"predictor-{v}"

    async def go() -> None:
        store = ExperimentStore(uri)
        exps = Experiments(uri, load)
        assert await exps.refresh() == [] and exps.get("acme") is None
        store.put(_cfg(version), reason="start", by="t")
        assert await exps.refresh() == ["acme"]
        live = exps.get("acme")
        assert live is not None and live.running
        assert loads == [("acme", "recommender", version)]  # loaded before the swap
        assert exps.model("acme", "recommender", version) == f"predictor-{version}"
        got = [live.assign(f"sess-{i}") for i in range(4000)]
        shares = Counter(a.variant for a in got)
        assert abs(shares["control"] / 4000 - 0.5) < 0.04 and abs(shares["chal"] / 4000 - 0.25) < 0.04
        assert all(a.log and a.experiment == "e1" for a in got)
        chal = next(a for a in got if a.variant == "chal")
        assert chal.arm.policy == "version" and chal.arm.skips_precomputed("recommender")
        assert not chal.arm.skips_precomputed("propensity")
        assert live.assign("sess-7").variant == got[7].variant  # sticky
        assert await exps.refresh() == []  # same revision: nothing rebuilt, nothing reloaded
        assert len(loads) == 1

        store.kill("acme", "guardrail: conversion fell")
        assert await exps.refresh() == ["acme"]
        killed = exps.get("acme")
        assert killed is not None and not killed.running
        assert {killed.assign(f"sess-{i}").variant for i in range(500)} == {"control"}
        assert not killed.assign("sess-1").log  # no exposures while rolled back
        assert exps.models == {}  # the challenger's model is unloaded
        health = exps.health("acme")
        assert health is not None and health["state"] == "rolled_back" and "conversion" in health["reason"]

        store.end("acme", "done")
        assert await exps.refresh() == ["acme"] and exps.get("acme") is None
    asyncio.run(go())


def test_visitor_unit_uses_the_visitor_id(registry: tuple[str, str]) -> None:
    uri, _ = registry

    async def go() -> None:
        ExperimentStore(uri).put(_cfg(unit="visitor"), reason="start", by="t")
        exps = Experiments(uri, lambda *a: None)
        await exps.refresh()
        live = exps.get("acme")
        assert live is not None
        same = {live.assign(f"sess-{i}", "visitor-9").variant for i in range(50)}
        assert len(same) == 1  # one visitor, one variant, whatever the session
        assert live.assign("sess-3").variant == live.assign("x", "sess-3").variant  # no visitor id: the session
    asyncio.run(go())


def test_a_revision_that_cannot_load_keeps_the_previous_one_live(registry: tuple[str, str]) -> None:
    uri, version = registry

    calls: list[str] = []

    def broken(tenant: str, model: str, v: str) -> object:
        calls.append(v)
        raise OSError("disk full")

    async def go() -> None:
        store = ExperimentStore(uri)
        store.put(_cfg(), reason="start", by="t")
        exps = Experiments(uri, broken)
        await exps.refresh()
        first = exps.get("acme")
        store.put(_cfg(version, salt="s2"), reason="challenger", by="t")
        assert await exps.refresh() == []
        assert exps.get("acme") is first  # still the first revision
        attempts = len(calls)
        assert await exps.refresh() == [] and len(calls) == attempts  # not retried on every poll
        exps._retry["acme"] = (2, 0.0)  # the retry interval has passed
        assert await exps.refresh() == [] and len(calls) == attempts + 1
        health = exps.health("acme")
        assert health is not None and "disk full" in health["error"] and health["revision"] == 1
        store.put(_cfg(salt="s3"), reason="without the challenger", by="t")
        assert await exps.refresh() == ["acme"]
        assert exps.health("acme")["revision"] == 3 and "error" not in exps.health("acme")  # type: ignore[index]
    asyncio.run(go())


def test_requests_get_the_variant_and_its_pinned_models(registry: tuple[str, str]) -> None:
    """What a request does: assign (no I/O), then the variant's bundle (the pinned model in place of the
    champion, the champions' other models kept, cached until either side changes)."""
    from serve.engine import ModelBundle

    uri, version = registry
    champion, prop = object(), object()

    async def go() -> None:
        ExperimentStore(uri).put(_cfg(version), reason="start", by="t")
        exps = Experiments(uri, lambda tenant, model, v: f"predictor-{v}")
        assert exps.assign("acme", "s1") is None  # before the first poll: no experiment, no waiting
        await exps.refresh()
        assert exps.assign("other", "s1") is None  # a tenant without an experiment
        got = {a.variant: a for a in (exps.assign("acme", f"s{i}") for i in range(200)) if a is not None}
        assert set(got) == {"control", "model", "chal"}
        bundle = ModelBundle(tenant="acme", propensity=prop, recommender=champion,  # type: ignore[arg-type]
                             popular=[("p", 1.0)])
        chal = exps.variant_bundle(bundle, "acme", got["chal"])
        assert chal.recommender == f"predictor-{version}" and chal.propensity is prop and chal.popular == bundle.popular
        assert bundle.recommender is champion  # the champions' bundle is untouched
        assert exps.variant_bundle(bundle, "acme", got["chal"]) is chal  # cached
        swapped = ModelBundle(tenant="acme", recommender=champion)  # type: ignore[arg-type]
        assert exps.variant_bundle(swapped, "acme", got["chal"]) is not chal  # a hot swap rebuilds it
        exps._task.cancel()  # type: ignore[union-attr]
    asyncio.run(go())


def test_pinned_versions_are_looked_up_in_the_tenants_registries_first() -> None:
    from serve.loader import pinned_registries

    assert pinned_registries("acme", "/reg", "/reg-acme") == ["/reg-acme", "/reg/tenants/acme", "/reg"]
    assert pinned_registries("acme", "/reg") == ["/reg/tenants/acme", "/reg"]
    assert pinned_registries("default", "/reg") == ["/reg"]  # the default tenant's namespace is the shared root
