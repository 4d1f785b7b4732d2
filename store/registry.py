"""A small model registry over a local directory or ``s3://`` (pyarrow filesystems).

Layout under the registry URI::

    <root>/<model_name>/<version>/...          # the artifact files, copied verbatim
    <root>/<model_name>/<version>/meta.json     # metrics, data window, config, code version
    <root>/<model_name>/champion.json           # {"version": ..., "history": [...]}
    <root>/tenants/<tenant>/<model_name>/...     # a tenant's own models, the same layout

Models are namespaced by tenant: ``tenant_uri(root, tenant)`` is a registry of its own under
``tenants/``, and the root holds the shared default, which the ``default`` tenant owns. A
tenant without its own champion of a model is served the shared default's
(``resolve``); a tenant with its own is never served anyone else's.

A version directory is complete before it becomes visible: files are copied to a
staging name first and the version is listed only once ``meta.json`` is written
last. The champion pointer is replaced in one write, and its history makes
``rollback`` possible. Serving and precompute always resolve the champion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import pyarrow.fs as pafs

from models.provenance import code_version
from store import fs as store_fs
from store.modelcache import ModelCache

logger = logging.getLogger(__name__)

META = "meta.json"
CHAMPION = "champion.json"
TENANTS_DIR = "tenants"


class RegistryError(RuntimeError):
    """A registry operation failed; the message says which model and version."""


@dataclass
class ModelVersion:
    name: str
    version: str
    uri: str
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Versioned artifacts plus a champion pointer per model name."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        # store.fs: one S3 client per bucket and process; s3:// URIs are never squashed into paths
        self.fs, self.root = store_fs.filesystem(_absolute(self.uri))

    # -- paths -------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def version_uri(self, name: str, version: str) -> str:
        return f"{self.uri}/{name}/{version}"

    # -- writes ------------------------------------------------------------
    def register(self, name: str, artifact_dir: str | os.PathLike[str], meta: dict[str, Any]) -> ModelVersion:
        """Copy ``artifact_dir`` into a new version of ``name`` and return it."""
        src = Path(artifact_dir)
        if name == TENANTS_DIR:
            raise RegistryError(f"{TENANTS_DIR!r} is reserved for tenant namespaces; name the model otherwise")
        if not src.is_dir():
            raise RegistryError(f"artifact directory {src} does not exist")
        version = time.strftime("v%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        dest = self._p(name, version)
        self.fs.create_dir(dest, recursive=True)
        digest = hashlib.sha256()
        for path in sorted(src.rglob("*")):
            if path.is_file():
                rel = path.relative_to(src).as_posix()
                if rel == META:
                    continue
                digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
                self.fs.create_dir(os.path.dirname(f"{dest}/{rel}"), recursive=True)
                pafs.copy_files(str(path), f"{dest}/{rel}", destination_filesystem=self.fs)
        full_meta = {"name": name, "version": version, "registered_at": time.time(),
                     "code_version": meta.get("code_version") or code_version(),
                     "content_sha256": digest.hexdigest(), **meta}
        self._write_json(f"{dest}/{META}", full_meta)  # written last: marks the version complete
        logger.info("registered %s/%s at %s", name, version, self.version_uri(name, version))
        return ModelVersion(name, version, self.version_uri(name, version), full_meta)

    def set_champion(self, name: str, version: str, reason: str = "") -> None:
        if version not in self.versions(name):
            raise RegistryError(f"{name}: version {version!r} is not registered at {self.uri}")
        state = self._champion_state(name)
        history = state.get("history", [])
        if state.get("version"):
            history.append({"version": state["version"], "replaced_at": time.time()})
        self._write_json(self._p(name, CHAMPION), {"version": version, "since": time.time(),
                                                    "reason": reason, "history": history})
        logger.info("champion of %s is now %s (%s)", name, version, reason)

    def rollback(self, name: str) -> str:
        """Restore the previous champion; return its version."""
        state = self._champion_state(name)
        history = state.get("history", [])
        if not history:
            raise RegistryError(f"{name}: no previous champion to roll back to")
        previous = history.pop()["version"]
        self._write_json(self._p(name, CHAMPION), {"version": previous, "since": time.time(),
                                                    "reason": f"rollback from {state.get('version')}",
                                                    "history": history, "rolled_back": state.get("version")})
        logger.info("rolled %s back from %s to %s", name, state.get("version"), previous)
        result: str = previous
        return result

    # -- reads -------------------------------------------------------------
    def versions(self, name: str) -> list[str]:
        """Complete versions (those with ``meta.json``), oldest first."""
        base = self._p(name)
        info = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        out = []
        for entry in info:
            if entry.type == pafs.FileType.Directory:
                meta = self.fs.get_file_info(f"{entry.path}/{META}")
                if meta.type == pafs.FileType.File:
                    out.append(entry.base_name)
        return sorted(out)

    def champion(self, name: str) -> str | None:
        return self._champion_state(name).get("version")

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """A version (the champion when ``version`` is None) with its metadata."""
        version = version or self.champion(name)
        if version is None:
            raise RegistryError(f"{name}: no champion at {self.uri}; register and promote a model first")
        try:
            meta = self._read_json(self._p(name, version, META))
        except FileNotFoundError as exc:
            raise RegistryError(f"{name}: version {version!r} not found at {self.uri}") from exc
        return ModelVersion(name, version, self.version_uri(name, version), meta)

    def fetch(self, name: str, version: str | None, dest: str | os.PathLike[str]) -> Path:
        """Copy a version's files to the local directory ``dest`` and return it."""
        mv = self.get(name, version)
        target = Path(dest) / name / mv.version
        if (target / META).exists():
            return target
        tmp = target.with_name(target.name + f".tmp{uuid.uuid4().hex[:6]}")
        self.copy_version(name, mv.version, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process fetched it first
            pass
        return target

    def copy_version(self, name: str, version: str, dest: str | os.PathLike[str]) -> None:
        """Copy one version's files into the local directory ``dest`` (created)."""
        Path(dest).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self._p(name, version), str(dest), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())

    def state(self, name: str) -> dict[str, Any]:
        return self._champion_state(name)

    # -- helpers -----------------------------------------------------------
    def _champion_state(self, name: str) -> dict[str, Any]:
        try:
            return self._read_json(self._p(name, CHAMPION))
        except FileNotFoundError:
            return {}

    def _read_json(self, path: str) -> dict[str, Any]:
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(path)
        with self.fs.open_input_stream(path) as f:
            result: dict[str, Any] = json.loads(f.read().decode())
            return result

    def _write_json(self, path: str, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{path}.tmp{uuid.uuid4().hex[:6]}"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            os.replace(tmp, path)  # atomic on POSIX
        else:  # object stores replace a key in one PUT
            with self.fs.open_output_stream(path) as f:
                f.write(data)


def tenant_uri(uri: str, tenant: str | None) -> str:
    """The registry of ``tenant``'s own models (the shared root for None or the default tenant)."""
    from store.keys import DEFAULT_TENANT, check_tenant

    if tenant is None or tenant == DEFAULT_TENANT:
        return uri
    return f"{uri.rstrip('/')}/{TENANTS_DIR}/{check_tenant(tenant)}"



def pin_lookup(uri: str, tenant: str, own_registry: str | None = None) -> list[str]:
    """Where an A/B variant's pinned version for ``tenant`` is looked up, in order: the tenant's own
    registry (its ``registry_uri`` in the app's tenant config), its namespace in the shared registry
    at ``uri``, the shared registry. Serving and ``jobs.experiment create`` use the same order."""
    return list(dict.fromkeys(u for u in (own_registry, tenant_uri(uri, tenant), uri) if u))

def resolve(uri: str, name: str, tenant: str | None, version: str | None = None) -> tuple[str, str | None]:
    """(registry URI, version) that serve model ``name`` to ``tenant``.

    A tenant with its own models of ``name`` gets its own: the pinned ``version`` when its
    namespace holds it, else its champion (a pin of a shared version never reaches it). A tenant
    without them gets the shared default at ``uri``, with ``version`` as pinned."""
    own = tenant_uri(uri, tenant)
    if own != uri and ("://" in own or Path(own).expanduser().is_dir()):  # no empty dirs for a lookup
        reg = Registry(own)
        if version is not None and version in reg.versions(name):
            return own, version
        if reg.champion(name) is not None:
            if version is not None:
                logger.info("tenant %s has its own %s models: the pinned %s (shared) is not used for it",
                            tenant, name, version)
            return own, None
    return uri, version


def _absolute(uri: str) -> str:
    if store_fs.is_remote(uri):
        return store_fs.normalize(uri)
    path = Path(uri).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class _Loadable(Protocol):
    registry_name: ClassVar[str]

    def __init__(self, artifact_dir: str, version: str | None = ...) -> None: ...


P = TypeVar("P", bound=_Loadable)


def load_predictor(cls: type[P], registry_uri: str, version: str | None = None, cache_dir: str | None = None) -> P:
    """The champion (or ``version``) of ``cls.registry_name`` loaded as ``cls`` (a predictor class).

    The files come from the node's content-addressed model cache (``store.modelcache``; root
    ``cache_dir`` or its default, shared by serve and precompute), one copy per version however
    often it is loaded. The version is resolved once, so the predictor's ``version`` is the one
    fetched even if the champion moves meanwhile."""
    local, resolved = ModelCache(cache_dir).fetch(Registry(registry_uri), cls.registry_name, version)
    return cls(str(local), version=resolved)


MODEL_NAMES = ("propensity", "recommender")


def artifact_meta(name: str, artifact_dir: Path) -> dict[str, Any]:
    """Load the artifact (proving it is servable) and return the metadata the registry keeps."""
    if not artifact_dir.is_dir():
        raise FileNotFoundError(f"artifact directory {artifact_dir} does not exist")
    if name == "propensity":
        from models.propensity.artifact import load_meta
        from models.propensity.predictor import PropensityPredictor

        art = load_meta(artifact_dir)
        try:
            PropensityPredictor(str(artifact_dir))
        except Exception as exc:  # a corrupt model file, whatever the library raises
            raise RegistryError(f"{artifact_dir}: the {art.kind} model does not load: {exc}") from exc
        return {"metrics": art.metrics, "data_window": art.data_window, "config": art.config,
                "kind": art.kind, "code_version": art.code_version}
    from models.session_rec.artifact import load_artifact

    try:
        rec = load_artifact(artifact_dir)
    except FileNotFoundError:
        raise
    except Exception as exc:  # bad meta, item map or weights
        raise RegistryError(f"{artifact_dir}: not a loadable recommender artifact: {exc}") from exc
    return {"metrics": rec.meta.get("metrics", {}), "data_window": rec.meta.get("data_window", {}),
            "kind": rec.meta["model_type"]}


def register_artifact(registry_uri: str, name: str, artifact_dir: str) -> dict[str, Any]:
    """Register ``artifact_dir`` under ``name`` after loading it (a broken or foreign directory is
    refused with its path and the registry is left unchanged); champion when there is none yet."""
    meta = artifact_meta(name, Path(artifact_dir))
    reg = Registry(registry_uri)
    mv = reg.register(name, artifact_dir, meta)
    first = reg.champion(name) is None
    if first:
        reg.set_champion(name, mv.version, "first model of this registry")
    return {"name": name, "version": mv.version, "uri": mv.uri, "champion": first,
            "current_champion": reg.champion(name)}
