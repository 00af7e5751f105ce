from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE, batch_slices, describe_in_batches
from hardnet_export.errors import InputError


def _mean_rows(batch: np.ndarray) -> np.ndarray:
    flat = batch.reshape(len(batch), -1).astype(np.float32)
    return np.repeat(flat.mean(1, keepdims=True), DESCRIPTOR_SIZE, axis=1)


@pytest.mark.parametrize("layout", [(32, 32), (1, 32, 32)])
def test_batches_equal_one_call_and_report_progress(layout: tuple[int, ...]) -> None:
    patches = np.random.default_rng(0).integers(0, 256, (10, *layout), dtype=np.uint8)
    done: list[int] = []
    out = describe_in_batches(_mean_rows, patches, 3, progress=done.append)
    np.testing.assert_array_equal(out, _mean_rows(patches))
    assert done == [3, 3, 3, 1] and out.dtype == np.float32
    assert describe_in_batches(_mean_rows, patches[:0]).shape == (0, DESCRIPTOR_SIZE)


def test_bad_input_and_bad_describers() -> None:
    patches = np.zeros((4, 32, 32), np.uint8)
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        describe_in_batches(_mean_rows, patches, 0)
    with pytest.raises(
        InputError, match=r"\(N, 32, 32\) or \(N, 1, 32, 32\), got \(4, 2, 32, 32\)"
    ):
        describe_in_batches(_mean_rows, np.zeros((4, 2, 32, 32), np.uint8))
    with pytest.raises(InputError, match="one row per patch"):
        describe_in_batches(lambda b: _mean_rows(b)[:1], patches, 2)


@pytest.mark.parametrize(
    ("n", "max_batch", "spans"),
    [
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 1024, [(0, 3)]),
        (5, None, [(0, 5)]),
        (5, 0, [(0, 5)]),
        (0, 4, []),
        (0, None, []),
    ],
)
def test_batch_slices_cover_every_index_once_in_order(
    n: int, max_batch: int | None, spans: list[tuple[int, int]]
) -> None:
    assert [(s.start, s.stop) for s in batch_slices(n, max_batch)] == spans
