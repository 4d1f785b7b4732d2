"""One tenant's rows of a table, for the jobs that train per tenant (``--tenant``).

The registry namespaces models by tenant (``store.registry.tenant_uri``); a model trained for a
tenant must see that tenant's rows only. ``tenant_rows`` writes them to a Parquet file of their
own (the trainers read paths); a null or empty ``tenant`` means the default tenant, as everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.entrypoint import BadInput
from store import fs, keys

logger = logging.getLogger(__name__)


def tenant_rows(path: str, tenant: str, out_dir: Path) -> str:
    """A local Parquet file of the rows of ``path`` (Parquet file/dir or CSV, local or ``s3://``) whose
    ``tenant`` is ``tenant``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    keys.check_tenant(tenant)
    fmt = "csv" if path.endswith((".csv", ".txt", ".tsv")) else "parquet"
    filesystem, inner = fs.filesystem(path)
    table = pads.dataset(inner, filesystem=filesystem, format=fmt,
                         partitioning="hive" if fmt == "parquet" else None).to_table()
    if "tenant" not in table.column_names:
        raise BadInput(f"{path}: no 'tenant' column, so its rows cannot be split by tenant (--tenant {tenant})")
    column = pc.if_else(pc.equal(pc.utf8_length(pc.cast(table["tenant"], pa.string())), 0),
                        pa.scalar(None, pa.string()), pc.cast(table["tenant"], pa.string()))
    mask = pc.fill_null(pc.equal(column, tenant), tenant == keys.DEFAULT_TENANT)
    rows = table.filter(mask)
    if rows.num_rows == 0:
        raise BadInput(f"{path}: no rows of tenant {tenant!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{tenant}.parquet"
    pq.write_table(rows, out)
    logger.info("tenant %s: %d of %d rows of %s", tenant, rows.num_rows, table.num_rows, path)
    return str(out)
