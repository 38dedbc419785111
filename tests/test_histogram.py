"""Row statistics checked against NumPy and SciPy on the same values and edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from covshift.train.histogram import PERCENTILES, make_edges, nice_ceil, reduce_rows, wasserstein1
from scipy.stats import wasserstein_distance


def _oracle_row(values: np.ndarray, edges: np.ndarray) -> dict[str, object]:
    finite = values[np.isfinite(values)].astype(np.float64)
    counts, _ = np.histogram(finite, bins=edges.astype(np.float64))
    return {
        "counts": counts,
        "underflow": int((finite < edges[0]).sum()),
        "overflow": int((finite > edges[-1]).sum()),
        "nonfinite": int((~np.isfinite(values)).sum()),
        "percentiles": np.percentile(finite, PERCENTILES) if finite.size else None,
        "mean": finite.mean() if finite.size else None,
        "std": finite.std() if finite.size else None,
    }


def test_matches_numpy_histogram_percentiles_and_moments() -> None:
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(6, 60 * 100, generator=generator) * torch.tensor(
        [[0.5], [1], [2], [3], [4], [8]]
    )
    values[1, 7] = float("nan")
    values[2, :5] = float("inf")
    values[3, 9] = float("-inf")
    edges = torch.stack([make_edges(-4.0, 4.0, 64)] * 6)
    stats = reduce_rows(values, edges)
    for row in range(6):
        oracle = _oracle_row(values[row].numpy(), edges[row].numpy())
        assert stats.counts[row].tolist() == oracle["counts"].tolist()
        assert int(stats.underflow[row]) == oracle["underflow"]
        assert int(stats.overflow[row]) == oracle["overflow"]
        assert int(stats.nonfinite[row]) == oracle["nonfinite"]
        np.testing.assert_allclose(stats.percentiles[row], oracle["percentiles"], rtol=1e-12)
        np.testing.assert_allclose(float(stats.mean[row]), oracle["mean"], rtol=1e-12)
        np.testing.assert_allclose(float(stats.std[row]), oracle["std"], rtol=1e-12)
        finite = values[row][torch.isfinite(values[row])]
        assert float(stats.min[row]) == float(finite.min())
        assert float(stats.max[row]) == float(finite.max())


def test_a_row_measured_under_several_edges_is_reduced_as_if_repeated() -> None:
    """source maps result rows to value rows: a tensor behind two taps is sorted once,
    and each tap still gets its own edges' histogram, as if the row were repeated."""
    values = torch.randn(2, 600, generator=torch.Generator().manual_seed(3)) * 2
    values[1, 3] = float("nan")
    # the third: integer edges, so some values can sit exactly on an edge after rounding
    integers = torch.arange(-4, 5, dtype=torch.float32)
    edges = torch.stack([make_edges(-1.0, 1.0, 8), make_edges(-4.0, 4.0, 8), integers])
    values[0, :4] = torch.tensor([-4.0, 4.0, 0.0, 1.0])
    shared = reduce_rows(values, edges, source=[0, 1, 0])
    repeated = reduce_rows(values[[0, 1, 0]], edges)
    for field in ("counts", "underflow", "overflow", "nonfinite", "percentiles", "mean", "std"):
        assert np.array_equal(getattr(shared, field), getattr(repeated, field)), field


def test_every_value_is_counted_exactly_once() -> None:
    batch, width = 60, 100
    values = torch.randn(3, batch * width) * 3
    values[0, 0] = float("nan")
    stats = reduce_rows(values, torch.stack([make_edges(-2.0, 2.0, 32)] * 3))
    total = stats.counts.sum(1) + stats.underflow + stats.overflow + stats.nonfinite
    assert total.tolist() == [batch * width] * 3


def test_values_on_edges_follow_numpy() -> None:
    edges = make_edges(0.0, 1.0, 4)  # 0, .25, .5, .75, 1
    values = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0, -0.0001, 1.0001, 0.5]])
    stats = reduce_rows(values, edges[None])
    expected, _ = np.histogram(values.numpy()[0], bins=edges.numpy().astype(np.float64))
    assert stats.counts[0].tolist() == expected.tolist() == [1, 1, 2, 2]
    assert (int(stats.underflow[0]), int(stats.overflow[0])) == (1, 1)


def test_all_equal_values() -> None:
    values = torch.full((1, 50), 0.3)
    stats = reduce_rows(values, make_edges(-1.0, 1.0, 8)[None])
    assert stats.counts[0].sum() == 50 and int(stats.counts[0].argmax()) == 5
    assert stats.percentiles[0].tolist() == pytest.approx([0.3] * 5, rel=1e-7)
    assert float(stats.std[0]) == 0.0


def test_row_without_finite_values_gives_nan_not_garbage() -> None:
    values = torch.tensor([[float("nan"), float("inf"), float("-inf")]])
    stats = reduce_rows(values, make_edges(-1.0, 1.0, 8)[None])
    assert int(stats.nonfinite[0]) == 3 and int(stats.counts[0].sum()) == 0
    assert np.isnan(stats.percentiles[0]).all()
    assert all(np.isnan(x[0]) for x in (stats.mean, stats.std, stats.min, stats.max))


def test_wasserstein_matches_scipy_on_bin_centres() -> None:
    rng = np.random.default_rng(0)
    edges = make_edges(-3.0, 3.0, 16)
    a = torch.from_numpy(rng.normal(0, 1, 4000).astype(np.float32))[None]
    b = torch.from_numpy(rng.normal(0.7, 1.6, 4000).astype(np.float32))[None]
    full_a = reduce_rows(a, edges[None]).full_counts()
    full_b = reduce_rows(b, edges[None]).full_counts()
    width = float(edges[1] - edges[0])
    # under/overflow cells sit one bin width outside the range
    centres = np.concatenate(
        [[-3.0 - width / 2], (edges[:-1].numpy() + width / 2), [3.0 + width / 2]]
    )
    expected = wasserstein_distance(centres, centres, full_a[0], full_b[0])
    got = float(wasserstein1(full_a, full_b, torch.tensor([width]))[0])
    assert got == pytest.approx(expected, rel=1e-9)
    assert float(wasserstein1(full_a, full_a, torch.tensor([width]))[0]) == 0.0
    # several histograms against one, in one call: each as if compared alone
    both = wasserstein1(np.stack([full_a, full_b]), full_b, [width])
    assert both.shape == (2, 1)
    assert both[0, 0] == got
    assert both[1, 0] == 0.0


def test_nice_ceil_and_edges() -> None:
    assert [nice_ceil(v) for v in (0.7, 1.0, 1.2, 3.0, 7.5, 12.0)] == [
        1.0,
        1.0,
        2.0,
        5.0,
        10.0,
        20.0,
    ]
    assert nice_ceil(float("nan")) == 1.0
    edges = make_edges(-2.0, 2.0, 64)
    assert edges.dtype == torch.float32 and len(edges) == 65
    assert float(edges[0]) == -2.0 and float(edges[-1]) == 2.0
    with pytest.raises(ValueError):
        make_edges(1.0, 1.0, 4)
