"""One filesystem layer for local paths and object storage (``s3://`` and any pyarrow.fs URI).

Every job reads and writes its durable data through these helpers, so that a URI stays a URI
end to end: ``normalize`` keeps ``s3://bucket/key`` as it is (a ``Path`` would turn it into
``./s3:/bucket/key``) and rejects such mangled forms with a clear error; local paths become
absolute paths.

``Publication`` publishes versioned outputs atomically without rename:

- a run writes its files under a new version prefix, invisible to readers;
- ``commit`` makes it current by writing ONE small pointer object LAST. On object storage that
  is ``OUT/_CURRENT`` (``{"version": ..., "history": [...]}``) next to ``OUT/_versions/<v>/``;
  on a local path ``OUT`` stays a symlink to ``.OUT.versions/<v>`` switched by one atomic
  rename (the pointer file there only keeps the history);
- readers call ``resolve(uri)``, which follows the pointer (for ``OUT`` or a path under it,
  such as ``OUT/sessions``) to the current version and pins it for the rest of their read;
- a crashed run leaves an orphan prefix that no pointer names; ``gc`` (called by the next
  run, or ``python -m jobs.gc``) removes orphans older than the run that calls it and all but
  the newest committed versions.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import shutil
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

logger = logging.getLogger(__name__)

POINTER = "_CURRENT"
VERSIONS = "_versions"
# a URI squashed by pathlib.Path: s3:/bucket, ./s3:/bucket, /cwd/s3:/bucket
_MANGLED = re.compile(r"(?:^|/)(s3|s3a|gs|gcs|abfs|abfss|hdfs|viewfs):(?:/|$)")
_RUN_ID = re.compile(r"^(\d{8}T\d{6})-[0-9a-f]{6}$")


class StoreError(RuntimeError):
    """A store operation failed; the message names the URI."""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for an object-store (or any non-local) URI such as ``s3://bucket/key``."""
    s = str(uri)
    return "://" in s and not s.startswith("file://")


def normalize(uri: str | os.PathLike[str]) -> str:
    """``s3://bucket/key`` without a trailing slash or doubled slashes; local paths absolute.

    Raises ``ValueError`` for a URI that a ``Path`` has squashed (``s3:/bucket``, ``./s3:/b``)."""
    s = os.fspath(uri)
    if not s:
        raise ValueError("empty path or URI")
    m = None if is_remote(s) else _MANGLED.search(s)
    if m:
        raise ValueError(f"{s!r} looks like a {m.group(1)}:// URI that lost a slash (was it passed through "
                         f"pathlib.Path?); write it as {m.group(1)}://...")
    if s.startswith("file://"):
        s = s[len("file://"):]
    if is_remote(s):
        scheme, rest = s.split("://", 1)
        rest = re.sub("/+", "/", rest).strip("/")
        if not rest:
            raise ValueError(f"{s!r}: no bucket in the URI")
        return f"{scheme.lower()}://{rest}"
    return str(Path(s).expanduser().absolute())


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended (``/`` separated for every backend)."""
    base = normalize(uri)
    tail = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return f"{base}/{tail}" if tail else base


def parent(uri: str) -> str:
    u = normalize(uri)
    if is_remote(u):
        scheme, rest = u.split("://", 1)
        if "/" not in rest:
            raise ValueError(f"{u}: a bucket has no parent")
        return f"{scheme}://{rest.rsplit('/', 1)[0]}"
    return str(Path(u).parent)


def basename(uri: str) -> str:
    return normalize(uri).rstrip("/").rsplit("/", 1)[-1]


@lru_cache(maxsize=32)
def _remote_fs(scheme: str, bucket: str, endpoint: str | None) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")  # endpoint and keys from the AWS_* environment
    return fs


_LOCAL = pafs.LocalFileSystem()


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path inside it (one S3 client per bucket and process)."""
    u = normalize(uri)
    if not is_remote(u):
        return _LOCAL, u
    scheme, rest = u.split("://", 1)
    return _remote_fs(scheme, rest.split("/", 1)[0], os.environ.get("AWS_ENDPOINT_URL_S3")), rest


def _uri(like: str, path: str) -> str:
    """A filesystem path back as a URI of ``like``'s scheme."""
    return f"{like.split('://', 1)[0]}://{path}" if is_remote(like) else path


def info(uri: str) -> pafs.FileInfo:
    fs, p = filesystem(uri)
    return fs.get_file_info(p)


def exists(uri: str) -> bool:
    return bool(info(uri).type != pafs.FileType.NotFound)


def is_file(uri: str) -> bool:
    return bool(info(uri).type == pafs.FileType.File)


def is_dir(uri: str) -> bool:
    return bool(info(uri).type == pafs.FileType.Directory)


def list_files(uri: str, suffix: str | None = None, recursive: bool = True) -> list[str]:
    """Files under ``uri`` (sorted URIs), skipping names that start with ``_`` or ``.`` below it."""
    fs, root = filesystem(uri)
    out = []
    for f in fs.get_file_info(pafs.FileSelector(root, recursive=recursive, allow_not_found=True)):
        rel = f.path[len(root):].lstrip("/")
        if f.type != pafs.FileType.File or any(p.startswith(("_", ".")) for p in rel.split("/")):
            continue
        if suffix is None or f.path.endswith(suffix):
            out.append(_uri(uri, f.path))
    return sorted(out)


def list_dirs(uri: str) -> list[str]:
    """Immediate sub-directories (prefixes) of ``uri``, sorted names."""
    fs, root = filesystem(uri)
    sel = pafs.FileSelector(root, recursive=False, allow_not_found=True)
    return sorted(f.base_name for f in fs.get_file_info(sel) if f.type == pafs.FileType.Directory)


def makedirs(uri: str) -> None:
    fs, p = filesystem(uri)
    fs.create_dir(p, recursive=True)


def read_bytes(uri: str) -> bytes:
    fs, p = filesystem(uri)
    try:
        with fs.open_input_stream(p) as f:
            return bytes(f.read())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: no such file or object") from exc
    except OSError as exc:
        if "not found" in str(exc).lower() or "nosuchkey" in str(exc).lower():
            raise FileNotFoundError(f"{uri}: no such file or object") from exc
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` at ``uri`` whole: a local file via a temp name and rename, an object in one PUT."""
    fs, p = filesystem(uri)
    if fs is _LOCAL:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{p}.tmp{uuid.uuid4().hex[:6]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
        return
    with fs.open_output_stream(p) as f:
        f.write(data)


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri).decode())


def write_json(uri: str, payload: Any) -> None:
    write_bytes(uri, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


def open_input_file(uri: str) -> Any:
    """A random-access file (Parquet footers, Arrow IPC batches by range)."""
    fs, p = filesystem(uri)
    return fs.open_input_file(p)


def open_output_stream(uri: str) -> Any:
    """A write stream; creates local parent directories (object stores have none)."""
    fs, p = filesystem(uri)
    if fs is _LOCAL:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    return fs.open_output_stream(p)


def delete(uri: str) -> None:
    """Remove a file or a whole directory / prefix; a missing one is fine."""
    fs, p = filesystem(uri)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.Directory:
        if fs is _LOCAL:
            shutil.rmtree(p, ignore_errors=True)
        else:
            fs.delete_dir(p)
    elif kind == pafs.FileType.File:
        fs.delete_file(p)


def copy_file(src: str, dst: str) -> None:
    """Copy one file: a hard link locally (falling back to a copy), a server-side copy on S3."""
    sfs, sp = filesystem(src)
    dfs, dp = filesystem(dst)
    if sfs is _LOCAL and dfs is _LOCAL:
        Path(dp).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(sp, dp)
        except OSError:
            shutil.copy2(sp, dp)
    elif sfs is dfs:
        sfs.copy_file(sp, dp)
    else:
        pafs.copy_files(sp, dp, source_filesystem=sfs, destination_filesystem=dfs)


def upload_dir(local: str | os.PathLike[str], uri: str) -> None:
    """Copy a local directory's files to ``uri`` (any backend)."""
    fs, p = filesystem(uri)
    if fs is _LOCAL:
        shutil.copytree(local, p, dirs_exist_ok=True)
        return
    pafs.copy_files(str(Path(local).absolute()), p, source_filesystem=_LOCAL, destination_filesystem=fs)


def download_dir(uri: str, local: str | os.PathLike[str]) -> Path:
    """Copy ``uri``'s files into the local directory ``local``; returns it."""
    fs, p = filesystem(uri)
    Path(local).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(p, str(Path(local).absolute()), source_filesystem=fs, destination_filesystem=_LOCAL)
    return Path(local)


def local_path(uri: str) -> Path | None:
    """The local path of ``uri``, or None for an object-store URI."""
    u = normalize(uri)
    return None if is_remote(u) else Path(u)


# -- versioned publication -------------------------------------------------------------------------
def new_run_id() -> str:
    """``YYYYmmddTHHMMSS-xxxxxx`` (UTC): sortable, and ``gc`` reads a crashed run's age from it."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run_time(run_id: str) -> float | None:
    m = _RUN_ID.match(run_id)
    if not m:
        return None
    return float(calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")))


class Publication:
    """The versions of one output at ``out`` (local or object storage) and its current pointer."""

    def __init__(self, out: str | os.PathLike[str], history: int = 10):
        self.out = normalize(out)
        self.remote = is_remote(self.out)
        self.history_len = history
        if self.remote:
            self.versions_root = join(self.out, VERSIONS)
        else:
            path = Path(self.out)
            self.versions_root = str(path.parent / f".{path.name}.versions")
        self.pointer = join(self.out if self.remote else self.versions_root, POINTER)

    def version_uri(self, version: str) -> str:
        return join(self.versions_root, version)

    # -- readers ---------------------------------------------------------------
    def current_version(self) -> str | None:
        """The current version's name, or None when nothing has been published."""
        if self.remote:
            try:
                return str(read_json(self.pointer)["version"])
            except FileNotFoundError:
                return None
        path = Path(self.out)
        if path.is_symlink():
            return Path(os.path.realpath(path)).name
        if path.exists():
            raise StoreError(f"{self.out} exists and is not a tandem publication (expected a symlink)")
        return None

    def current(self) -> str | None:
        """URI of the current version (pinned: later commits do not change what it names)."""
        v = self.current_version()
        return None if v is None else self.version_uri(v)

    def history(self) -> list[str]:
        """Committed versions before the current one, newest first."""
        try:
            return [str(v) for v in read_json(self.pointer).get("history", [])]
        except FileNotFoundError:
            return []

    # -- writers ---------------------------------------------------------------
    def begin(self, run_id: str | None = None) -> str:
        """A new, invisible version prefix for this run; returns its URI."""
        if not self.remote:
            path = Path(self.out)
            if path.exists() and not path.is_symlink():
                raise StoreError(f"{self.out} exists and is not a tandem publication (expected a symlink)")
        uri = self.version_uri(run_id or new_run_id())
        if not self.remote:
            Path(uri).mkdir(parents=True)
        return uri

    def commit(self, version_uri: str, meta: dict[str, Any] | None = None) -> None:
        """Make ``version_uri`` current: the pointer is the last thing written."""
        version = basename(version_uri)
        if normalize(version_uri) != self.version_uri(version):
            raise StoreError(f"{version_uri} is not a version of {self.out}")
        previous = self.current_version()
        history = ([previous] if previous and previous != version else []) + \
            [v for v in self.history() if v not in (version, previous)]
        payload = {"version": version, "committed_at": time.time(), "history": history[: self.history_len],
                   **(meta or {})}
        if self.remote:
            write_json(self.pointer, payload)  # one PUT: readers see the old pointer or the new one
            return
        path = Path(self.out)
        tmp = path.with_name(f".{path.name}.link-{uuid.uuid4().hex[:6]}")
        os.symlink(os.path.relpath(version_uri, path.parent), tmp)
        os.replace(tmp, path)  # the commit point on a local path
        write_json(self.pointer, payload)  # history for gc; the symlink is what readers follow

    def abort(self, version_uri: str) -> None:
        """Remove an uncommitted version (best effort; ``gc`` removes what this misses)."""
        if basename(version_uri) == self.current_version():
            raise StoreError(f"{version_uri} is current; refusing to delete it")
        try:
            delete(version_uri)
        except OSError as exc:
            logger.warning("could not remove %s (gc will): %s", version_uri, exc)

    def gc(self, keep: int = 2, before: float | None = None) -> list[str]:
        """Delete orphans (versions no pointer ever named) and committed versions past the newest ``keep``.

        Only versions whose run started before ``before`` (default: now) are touched, so a run
        in flight is never removed; the current version never is. Returns the removed names."""
        before = time.time() if before is None else before
        current = self.current_version()
        kept = set(self.history()[: max(0, keep - 1)]) | ({current} if current else set())
        removed = []
        for name in list_dirs(self.versions_root):
            started = run_time(name)
            if name in kept or name.startswith((".", "_")) or started is None or started >= before:
                continue
            delete(self.version_uri(name))
            removed.append(name)
        if removed:
            logger.info("gc %s: removed %d version(s): %s", self.out, len(removed), ", ".join(removed))
        return removed


def resolve(uri: str | os.PathLike[str], depth: int = 2) -> str:
    """``uri`` with a published output's pointer followed: ``OUT`` or a path under it (``OUT/sessions``)
    becomes the same path inside the current version. Local symlinks are resolved (pinning the
    version); a URI with no pointer above it is returned normalised."""
    u = normalize(uri)
    if not is_remote(u):
        return os.path.realpath(u)
    base, tail = u, ""
    for _ in range(depth + 1):
        try:
            version = read_json(join(base, POINTER))["version"]
        except FileNotFoundError:
            version = None
        if version is not None:
            return join(base, VERSIONS, str(version), tail)
        if base.split("://", 1)[1].count("/") == 0:
            break
        tail = f"{basename(base)}/{tail}" if tail else basename(base)
        base = parent(base)
    return u
