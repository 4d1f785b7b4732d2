"""Per-tenant A/B experiment configs, versioned JSON stored with the model registry.

Layout under the registry URI (local directory or ``s3://``, the same filesystem as the models)::

    <root>/_experiments/<tenant>/r000007.json    # immutable revisions (the audit trail)
    <root>/_experiments/<tenant>/current.json    # the live revision: a full copy, replaced in one write

Each file is ``{"revision", "config", "reason", "by", "written_at"}`` with ``config`` an
``models.experiments.config.ExperimentConfig`` (or null once the experiment is ended). A
writer writes the next revision file first and then ``current.json``: a local write is a
temporary file, fsync and ``os.replace``; an object store replaces a key in one PUT. A
reader (the serving replicas' poller, the refresh loop's guardrail check) reads only
``current.json``, so it sees the old revision or the new one, never half of one.

Concurrent writers (the guardrail check under the refresh lease, and a person with the
kill switch) are serialised on a local store by creating the revision file exclusively;
on an object store the last ``current.json`` wins, and both writes stay in the history.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from models.experiments.config import ExperimentConfig, KillSwitch
from store import keys
from store.registry import Registry, RegistryError

logger = logging.getLogger(__name__)

DIR = "_experiments"
CURRENT = "current.json"
MODELS = ("recommender", "propensity")


class ExperimentStoreError(RuntimeError):
    """A store operation cannot be done; the message names the tenant and why."""


@dataclass(frozen=True)
class StoredExperiment:
    """One revision of a tenant's experiment (``config`` None: the experiment was ended)."""

    tenant: str
    revision: int
    config: ExperimentConfig | None
    reason: str = ""
    by: str = ""
    written_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.config is not None and not self.config.kill_switch.engaged

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "revision": self.revision, "reason": self.reason, "by": self.by,
                "written_at": self.written_at,
                "config": None if self.config is None else self.config.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> StoredExperiment:
        from models.experiments.config import load_config

        try:
            cfg = None if data.get("config") is None else load_config(data["config"], source)
            return cls(tenant=str(data["tenant"]), revision=int(data["revision"]), config=cfg,
                       reason=str(data.get("reason", "")), by=str(data.get("by", "")),
                       written_at=float(data.get("written_at", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ExperimentStoreError(f"{source}: not a stored experiment: {exc}") from exc


class ExperimentStore:
    """Read and write tenants' experiment configs next to the models of ``registry_uri``."""

    def __init__(self, registry_uri: str):
        self.registry = Registry(registry_uri)
        self.uri = self.registry.uri

    def _p(self, tenant: str, name: str = "") -> str:
        return "/".join(p for p in (self.registry.root, DIR, keys._check("tenant", tenant), name) if p)

    # -- reads -------------------------------------------------------------------------
    def current(self, tenant: str) -> StoredExperiment | None:
        """The tenant's live revision, or None when it never had an experiment."""
        path = self._p(tenant, CURRENT)
        try:
            data = self.registry._read_json(path)
        except FileNotFoundError:
            return None
        return StoredExperiment.from_dict(data, f"{self.uri}/{DIR}/{tenant}/{CURRENT}")

    def tenants(self) -> list[str]:
        """Tenants that have (or had) an experiment."""
        sel = pafs.FileSelector(f"{self.registry.root}/{DIR}", allow_not_found=True)
        return sorted(e.base_name for e in self.registry.fs.get_file_info(sel) if e.type == pafs.FileType.Directory)

    def history(self, tenant: str) -> list[StoredExperiment]:
        """Every revision of the tenant's experiments, oldest first."""
        sel = pafs.FileSelector(self._p(tenant), allow_not_found=True)
        names = sorted(e.base_name for e in self.registry.fs.get_file_info(sel)
                       if e.type == pafs.FileType.File and e.base_name.startswith("r") and e.base_name.endswith(".json"))
        return [StoredExperiment.from_dict(self.registry._read_json(self._p(tenant, n)), n) for n in names]

    def running(self) -> list[StoredExperiment]:
        """The live revision of every tenant whose experiment runs (not ended, kill switch off)."""
        out = []
        for tenant in self.tenants():
            try:
                cur = self.current(tenant)
            except ExperimentStoreError as exc:  # one bad file never hides the other tenants
                logger.error("%s", exc)
                continue
            if cur is not None and cur.running:
                out.append(cur)
        return out

    # -- writes ------------------------------------------------------------------------
    def put(self, config: ExperimentConfig | None, tenant: str | None = None, *, reason: str, by: str,
            expect_revision: int | None = None) -> StoredExperiment:
        """Store ``config`` (None ends the tenant's experiment) as the tenant's next live revision.

        ``expect_revision``: refuse (``ExperimentStoreError``) unless the live revision is still
        this one (0: none yet), so a read-modify-write never overwrites a change it did not see."""
        tenant = tenant or (config.tenant if config is not None else None)
        if tenant is None:
            raise ExperimentStoreError("put: name the tenant when ending an experiment")
        if config is not None and config.tenant != tenant:
            raise ExperimentStoreError(f"put: the config is for tenant {config.tenant!r}, not {tenant!r}")
        for _ in range(5):
            cur = self.current(tenant)
            rev = cur.revision if cur is not None else 0
            if expect_revision is not None and rev != expect_revision:
                raise ExperimentStoreError(f"tenant {tenant}: the experiment changed meanwhile (revision {rev}, "
                                           f"expected {expect_revision}); read it again")
            stored = StoredExperiment(tenant, rev + 1, config, reason[:500], by[:100], time.time())
            payload = json.dumps(stored.to_dict(), indent=2, sort_keys=True).encode()
            if self._create(self._p(tenant, f"r{rev + 1:06d}.json"), payload):
                self._replace(self._p(tenant, CURRENT), payload)
                logger.info("tenant %s: experiment revision %d (%s) by %s: %s", tenant, rev + 1,
                            "ended" if config is None else config.experiment_id, by, reason)
                return stored
        raise ExperimentStoreError(f"tenant {tenant}: could not write a new revision (concurrent writers)")

    def kill(self, tenant: str, reason: str, by: str = "kill-switch") -> StoredExperiment:
        """Send all of the tenant's traffic to control (``config.rolled_back``), recording why.

        Idempotent: an experiment already rolled back keeps its first reason."""
        cur, cfg = self._live(tenant)
        if cfg.kill_switch.engaged:
            return cur
        return self.put(cfg.rolled_back(reason), reason=reason, by=by, expect_revision=cur.revision)

    def resume(self, tenant: str, reason: str, by: str = "kill-switch") -> StoredExperiment:
        """Disengage the kill switch: the same experiment (id, salt, shares) runs again."""
        cur, cfg = self._live(tenant)
        if not cfg.kill_switch.engaged:
            return cur
        data = cfg.model_dump()
        data["kill_switch"] = KillSwitch.model_validate({}).model_dump()
        return self.put(ExperimentConfig.model_validate(data), reason=reason, by=by, expect_revision=cur.revision)

    def end(self, tenant: str, reason: str, by: str = "cli") -> StoredExperiment:
        """Stop the experiment: no more assignment, every request is served as without one."""
        cur, _ = self._live(tenant)
        return self.put(None, tenant, reason=reason, by=by, expect_revision=cur.revision)

    def _live(self, tenant: str) -> tuple[StoredExperiment, ExperimentConfig]:
        cur = self.current(tenant)
        if cur is None or cur.config is None:
            raise ExperimentStoreError(f"tenant {tenant}: no experiment at {self.uri}")
        return cur, cur.config

    # -- file writes --------------------------------------------------------------------
    def _create(self, path: str, data: bytes) -> bool:
        """Write a new file; False when it exists already (another writer took this revision)."""
        fs = self.registry.fs
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if isinstance(fs, pafs.LocalFileSystem):
            import os

            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        if fs.get_file_info(path).type == pafs.FileType.File:
            return False
        with fs.open_output_stream(path) as f:
            f.write(data)
        return True

    def _replace(self, path: str, data: bytes) -> None:
        self.registry._write_json(path, json.loads(data))


def pinned_models(registry_uris: str | Sequence[str], config: ExperimentConfig) -> dict[str, dict[str, str]]:
    """For each ``version`` variant, which model(s) its ``model_version`` pins: ``{variant: {model: version}}``.

    A version names a recommender or a propensity model in one of the registries (the tenant's own
    namespace first, then the shared one; the other model stays the champion). Raises
    ``ExperimentStoreError`` naming the variant when the version is in none."""
    uris = [registry_uris] if isinstance(registry_uris, str) else list(registry_uris)
    versions: dict[str, set[str]] = {}
    for model in MODELS:
        versions[model] = set()
        for uri in uris:
            if "://" not in uri and not os.path.isdir(uri):
                continue
            try:
                versions[model].update(Registry(uri).versions(model))
            except (OSError, RegistryError):
                logger.warning("cannot list %s versions at %s", model, uri)
    out: dict[str, dict[str, str]] = {}
    for v in config.variants:
        if v.policy != "version":
            continue
        assert v.model_version is not None
        pins = {model: v.model_version for model in MODELS if v.model_version in versions[model]}
        if not pins:
            raise ExperimentStoreError(f"variant {v.name!r}: model_version {v.model_version!r} is neither a "
                                       f"recommender nor a propensity version at {', '.join(uris)}")
        out[v.name] = pins
    return out
