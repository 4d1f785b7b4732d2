"""A tenant's rows of a table: what a per-tenant training run sees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.entrypoint import BadInput
from pipelines.tenancy import tenant_rows

pytestmark = pytest.mark.unit


def test_tenant_rows_keep_only_that_tenants_and_null_means_default(tmp_path: Path) -> None:
    src = tmp_path / "t.parquet"
    pd.DataFrame({"session_id": ["s1", "s2", "s3", "s4"], "tenant": ["acme", None, "bolt", ""],
                  "x": [1, 2, 3, 4]}).to_parquet(src)
    acme = pd.read_parquet(tenant_rows(str(src), "acme", tmp_path / "out"))
    assert acme["session_id"].tolist() == ["s1"]
    default = pd.read_parquet(tenant_rows(str(src), "default", tmp_path / "out"))
    assert default["session_id"].tolist() == ["s2", "s4"]
    with pytest.raises(BadInput, match="no rows of tenant 'cedar'"):
        tenant_rows(str(src), "cedar", tmp_path / "out")
    with pytest.raises(ValueError, match="tenant"):
        tenant_rows(str(src), "../x", tmp_path / "out")
    pd.DataFrame({"session_id": ["s1"]}).to_parquet(tmp_path / "no_tenant.parquet")
    with pytest.raises(BadInput, match="no 'tenant' column"):
        tenant_rows(str(tmp_path / "no_tenant.parquet"), "acme", tmp_path / "out")
