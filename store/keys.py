"""Redis key layout shared by precompute (writer) and serving (reader). Pure functions.

Every published table lives under a versioned namespace and is made visible by
one atomic ``SET`` of its pointer key, so readers never see a half-loaded table::

    tandem:{tenant}:ptr:{table}                      -> "<version>"   (the live namespace)
    tandem:{tenant}:{table}:{version}:{entity}       -> value          (with a TTL)
    tandem:{tenant}:{table}:{version}:__meta__       -> JSON manifest  (row count, model version)
    tandem:{tenant}:sess:{session_id}                -> list of JSON events (live session state)
    tandem:{tenant}:events                           -> stream of every live event (capped by length)
    tandem:{tenant}:batch:{batch_id}                 -> "1" while a stored event batch id is remembered
    tandem:{tenant}:ptrfence:{table}                 -> fencing token of the run that last flipped it
    tandem:{tenant}:ptrprev:{table}                  -> the namespace the pointer held before
    tandem:{tenant}:nsidx:{table}                    -> sorted set: namespace -> last live or created (unix s)

``table`` is one of ``TABLES``. The tenant is part of every key, so one tenant
can never address another tenant's keys.
"""

from __future__ import annotations

import re

from models.schema import TENANT_PATTERN

PREFIX = "tandem"
DEFAULT_TENANT = "default"
TABLES = ("score", "recs", "popular")
POPULAR_ENTITY = "__all__"
META_ENTITY = "__meta__"

_SAFE = re.compile(TENANT_PATTERN)  # tenants, versions and run ids: one rule, shared with the event schema


def is_key_part(value: object) -> bool:
    """True for a string that can be a tenant, version or run id in a key."""
    return isinstance(value, str) and _SAFE.match(value) is not None


def _check(name: str, value: str) -> str:
    if not is_key_part(value):
        raise ValueError(f"{name} {value!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    return value


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant name (it is part of keys and registry paths), else ValueError."""
    return _check("tenant", tenant)


def pointer_key(table: str, tenant: str = DEFAULT_TENANT) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
    return f"{PREFIX}:{_check('tenant', tenant)}:ptr:{table}"


def pointer_fence_key(table: str, tenant: str = DEFAULT_TENANT) -> str:
    return pointer_key(table, tenant).replace(":ptr:", ":ptrfence:", 1)


def previous_key(table: str, tenant: str = DEFAULT_TENANT) -> str:
    return pointer_key(table, tenant).replace(":ptr:", ":ptrprev:", 1)


def index_key(table: str, tenant: str = DEFAULT_TENANT) -> str:
    """Sorted set of the tenant's namespaces of ``table`` (written before their rows: GC finds partial ones)."""
    return pointer_key(table, tenant).replace(":ptr:", ":nsidx:", 1)


def replica_key(app: str, replica_id: str) -> str:
    """What one Serve replica serves (JSON: generation, versions), refreshed on its health checks."""
    return f"{PREFIX}:replica:{app}:{replica_id}"


def parse_namespace_key(key: str) -> tuple[str, str, str] | None:
    """``(tenant, table, version)`` of a row or manifest key, or None for any other key."""
    parts = key.split(":", 4)
    if len(parts) < 5 or parts[0] != PREFIX or parts[2] not in TABLES:
        return None
    return parts[1], parts[2], parts[3]


def namespace(table: str, version: str, tenant: str = DEFAULT_TENANT) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
    return f"{PREFIX}:{_check('tenant', tenant)}:{table}:{_check('version', version)}"


def entity_key(table: str, version: str, entity: str, tenant: str = DEFAULT_TENANT) -> str:
    # Entity ids come from clients and data; they are not restricted, only delimited.
    return f"{namespace(table, version, tenant)}:{entity}"


def meta_key(table: str, version: str, tenant: str = DEFAULT_TENANT) -> str:
    return entity_key(table, version, META_ENTITY, tenant)


def session_key(session_id: str, tenant: str = DEFAULT_TENANT) -> str:
    return f"{PREFIX}:{_check('tenant', tenant)}:sess:{session_id}"


def events_stream_key(tenant: str = DEFAULT_TENANT) -> str:
    """The tenant's stream of live events, for batch features to read (``XREAD``/``XRANGE``)."""
    return f"{PREFIX}:{_check('tenant', tenant)}:events"


def batch_key(batch_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Marks an event batch as stored, so a retried batch with the same id is stored once."""
    return f"{PREFIX}:{_check('tenant', tenant)}:batch:{batch_id}"


def run_version(model_version: str, run_id: str) -> str:
    """The namespace version of one publish run: ``{model_version}.r{run_id}``."""
    return f"{_check('version', model_version)}.r{_check('run_id', run_id)}"


def model_version_of(ns_version: str) -> str:
    """The model version a namespace was published from (inverse of ``run_version``)."""
    head, sep, _ = ns_version.rpartition(".r")
    return head if sep else ns_version


LOG_KINDS = ("exposures", "outcomes")
"""The experiment logs the drain writes to Parquet (outcomes are read from ``events_stream_key``)."""


def log_stream(kind: str, tenant: str = DEFAULT_TENANT) -> str:
    """``tandem:{tenant}:log:exposures``: the Redis Stream of a tenant's exposures, written by the serving
    replicas and drained to Parquet (``pipelines.exposures``)."""
    if kind != "exposures":
        raise ValueError(f"no log stream {kind!r}: outcomes are read from the live-event stream")
    return f"{PREFIX}:{_check('tenant', tenant)}:log:{kind}"
