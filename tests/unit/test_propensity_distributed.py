"""pipelines.train_propensity: how in-memory frames reach the Train workers (no Ray started here)."""

from __future__ import annotations

import pytest

from pipelines.train_propensity import OBJECT_REF_MAX_BYTES, choose_ingest, matrix_bytes, row_blocks


def test_small_frames_go_by_object_ref_and_large_ones_through_ray_data() -> None:
    two_million = matrix_bytes(2_000_000, 30)  # the bench's size: ~0.5 GB of float64 matrix + labels
    assert two_million == 2_000_000 * 31 * 8
    assert choose_ingest("auto", two_million, object_store_bytes=8 * 1024**3) == "object_ref"
    assert choose_ingest("auto", OBJECT_REF_MAX_BYTES + 1, object_store_bytes=None) == "ray_data"
    # a small object store lowers the bound to a quarter of it
    assert choose_ingest("auto", two_million, object_store_bytes=1024**3) == "ray_data"
    # an explicit choice is kept whatever the size
    assert choose_ingest("ray_data", 10, object_store_bytes=None) == "ray_data"
    assert choose_ingest("object_ref", 10 * OBJECT_REF_MAX_BYTES, object_store_bytes=None) == "object_ref"


@pytest.mark.parametrize(("n", "parts"), [(10, 1), (10, 3), (7, 2), (2, 2), (1_000_001, 4)])
def test_row_blocks_cover_every_row_once_in_near_equal_blocks(n: int, parts: int) -> None:
    blocks = row_blocks(n, parts)
    assert len(blocks) == parts and blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1
