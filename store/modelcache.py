"""One local, content-addressed cache of registry model versions, shared by serve and precompute.

Every model load used to copy the version into a fresh system temp dir that nobody removed:
a leak of one full model per hot swap and per precompute run. ``ModelCache`` keeps one copy
per *content* under one directory::

    <root>/<key>/...            the version's files (complete: renamed into place last)
    <root>/.tmp-<key>-<pid>-*    a copy in progress (removed on failure, or on the next start)

``key`` is the version's ``content_sha256`` (written into ``meta.json`` by the registry) or,
for versions registered before that, a hash of (registry, name, version, registered_at):
versions are immutable, so either names the same bytes. An entry's mtime is touched on each
use; after every new entry the cache keeps at most ``versions`` entries per model (registry and
name: the live one and the previous, by default) and evicts the least recently used ones beyond
``cap_bytes``, but never an entry used within ``min_age_s`` (a process on this node may be loading
it). So the cache's size follows the models in use, not the number of promotions.
Predictors read their files into memory when built, so evicting a loaded model is safe.

Root: ``TANDEM_MODEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/tandem/models`` (``~/.cache``);
cap: ``TANDEM_MODEL_CACHE_BYTES`` (default 2 GiB); versions per model:
``TANDEM_MODEL_CACHE_VERSIONS`` (default 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_CAP_BYTES = 2 * 1024**3
DEFAULT_VERSIONS = 2
DEFAULT_MIN_AGE_S = 60.0
META = "meta.json"
ORIGIN = ".origin"  # "<registry uri>\n<name>": the model an entry belongs to
_TMP = ".tmp-"


def default_root() -> Path:
    env = os.environ.get("TANDEM_MODEL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tandem" / "models"


def content_key(registry_uri: str, name: str, version: str, meta: dict[str, Any]) -> str:
    digest = meta.get("content_sha256")
    if isinstance(digest, str) and len(digest) >= 32:
        return digest[:40]
    ident = f"{registry_uri}|{name}|{version}|{meta.get('registered_at', '')}"
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:  # removed meanwhile
            pass
    return total


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this node (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelCache:
    """Content-addressed copies of registry versions under one directory, with a size cap."""

    def __init__(self, root: str | os.PathLike[str] | None = None, cap_bytes: int | None = None,
                 min_age_s: float = DEFAULT_MIN_AGE_S, versions: int | None = None):
        self.root = Path(root) if root else default_root()
        env_cap = os.environ.get("TANDEM_MODEL_CACHE_BYTES")
        self.cap_bytes = int(cap_bytes if cap_bytes is not None else (env_cap or DEFAULT_CAP_BYTES))
        env_versions = os.environ.get("TANDEM_MODEL_CACHE_VERSIONS")
        self.versions = max(1, int(versions if versions is not None else (env_versions or DEFAULT_VERSIONS)))
        self.min_age_s = min_age_s

    # -- use -----------------------------------------------------------------
    def fetch(self, registry: Any, name: str, version: str | None = None) -> tuple[Path, str]:
        """The local directory of ``name``'s ``version`` (the champion when None) and that version."""
        mv = registry.get(name, version)
        key = content_key(registry.uri, name, mv.version, mv.meta)
        entry = self.root / key
        if (entry / META).exists():
            os.utime(entry)
            return entry, mv.version
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{_TMP}{key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            registry.copy_version(name, mv.version, tmp)
            (tmp / ORIGIN).write_text(f"{registry.uri}\n{name}")
            try:
                tmp.rename(entry)
            except OSError:  # another process on this node fetched it first
                if not (entry / META).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("model cache: %s/%s -> %s", name, mv.version, entry)
        self.enforce_versions(keep={key})
        self.enforce_cap(keep={key})
        return entry, mv.version

    # -- housekeeping ----------------------------------------------------------
    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(_TMP)]

    def size_bytes(self) -> int:
        return dir_bytes(self.root) if self.root.is_dir() else 0

    def clean(self) -> int:
        """On start: remove copies left by dead processes and incomplete entries, then apply the cap.

        Returns the number of directories removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for p in self.root.iterdir():
            if not p.is_dir():
                continue
            if p.name.startswith(_TMP):
                try:
                    pid = int(p.name.rsplit("-", 2)[-2])
                except (ValueError, IndexError):
                    pid = -1
                if pid != os.getpid() and not pid_alive(pid):
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
            elif not (p / META).exists():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed + self.enforce_versions() + self.enforce_cap()

    def enforce_versions(self, keep: set[str] | None = None) -> int:
        """Keep the ``versions`` most recently used entries of each model; returns how many were evicted."""
        keep = keep or set()
        by_model: dict[str, list[tuple[float, Path]]] = {}
        for p in self.entries():
            try:
                origin = (p / ORIGIN).read_text() if (p / ORIGIN).exists() else ""
                by_model.setdefault(origin, []).append((p.stat().st_mtime, p))
            except OSError:
                continue
        evicted = 0
        now = time.time()
        for origin, group in by_model.items():
            if not origin:  # entries from before origins were written: the byte cap handles them
                continue
            for mtime, p in sorted(group, key=lambda t: t[0], reverse=True)[self.versions:]:
                if p.name in keep or now - mtime < self.min_age_s:
                    continue
                shutil.rmtree(p, ignore_errors=True)
                evicted += 1
                logger.info("model cache: evicted %s (more than %d versions of %s)", p.name, self.versions,
                            origin.replace("\n", " "))
        return evicted

    def enforce_cap(self, keep: set[str] | None = None) -> int:
        """Evict least recently used entries until the cache fits ``cap_bytes``; returns how many."""
        keep = keep or set()
        sized = []
        for p in self.entries():
            try:
                sized.append((p.stat().st_mtime, p, dir_bytes(p)))
            except OSError:
                continue
        total = sum(s for _, _, s in sized)
        evicted = 0
        now = time.time()
        for mtime, p, size in sorted(sized, key=lambda t: t[0]):
            if total <= self.cap_bytes:
                break
            if p.name in keep or now - mtime < self.min_age_s:
                continue
            shutil.rmtree(p, ignore_errors=True)
            total -= size
            evicted += 1
            logger.info("model cache: evicted %s (%d bytes) to stay under %d bytes", p.name, size, self.cap_bytes)
        if total > self.cap_bytes:
            logger.warning("model cache %s holds %d bytes, over its cap of %d: every entry is in use", self.root,
                           total, self.cap_bytes)
        return evicted
