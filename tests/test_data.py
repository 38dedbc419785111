"""Datasets: standardised with training statistics, fixed test split, a real IDX loader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import covshift.train.data as data_module
import numpy as np
import pytest
import torch
from covshift.errors import DataError
from covshift.train.data import load_dataset, load_mnist
from covshift.train.idx import read_idx


def _write_idx(path: Path, array: np.ndarray, type_byte: int = 0x08) -> None:
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _write_mnist(
    directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = False
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        _write_idx(directory / (name + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_load_and_are_standardised_with_train_statistics(
    tmp_path: Path, gz: bool
) -> None:
    arrays = _write_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (30, 20) and data.x_test.shape == (10, 20)
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    raw = arrays["train-images-idx3-ubyte"].reshape(30, -1).astype(np.float64)
    expected = (raw - raw.mean(0)) / raw.std(0)
    np.testing.assert_allclose(data.x_train.numpy(), expected, rtol=1e-5, atol=1e-5)
    test_raw = arrays["t10k-images-idx3-ubyte"].reshape(10, -1).astype(np.float64)
    np.testing.assert_allclose(
        data.x_test.numpy(), (test_raw - raw.mean(0)) / raw.std(0), rtol=1e-5, atol=1e-5
    )


def test_read_idx_keeps_other_types(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    _write_idx(tmp_path / "x.idx", array.astype(">i4"), type_byte=0x0C)
    assert read_idx(tmp_path / "x.idx").tolist() == array.tolist()


def test_missing_files_and_directories_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*not found"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02\x08\x01", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "unknown IDX data type"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "holds 3 data bytes"),
    ],
)
def test_malformed_idx_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataError, match="30 images but 29 labels"):
        load_mnist(tmp_path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a valid gzip"):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize(
    ("name", "features", "classes"), [("digits", 64, 10), ("moons", 2, 2), ("spirals", 2, 3)]
)
def test_builtin_datasets_are_standardised_and_split_the_same_way_every_time(
    name: str, features: int, classes: int
) -> None:
    data = load_dataset(name)
    again = load_dataset(name)
    assert data.n_features == features and data.n_classes == classes
    n = len(data.y_train) + len(data.y_test)
    assert len(data.y_test) == pytest.approx(0.2 * n, abs=1)
    train = data.x_train.double()
    assert train.mean(0).abs().max() < 1e-6
    varying = train.std(0, unbiased=False) > 0
    assert ((train.std(0, unbiased=False)[varying] - 1).abs() < 1e-5).all()
    assert (data.x_test == again.x_test).all() and (data.y_train == again.y_train).all()
    assert set(data.y_train.tolist()) == set(range(classes))


@pytest.mark.slow
def test_mnist1d_is_generated_offline_and_leaves_numpy_global_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: it is generated
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    data = load_dataset("mnist1d")
    assert np.random.rand() == expected
    assert data.n_features == 40 and data.n_classes == 10
    assert len(data.y_train) == 4000 and len(data.y_test) == 1000


@pytest.mark.slow
def test_mnist1d_is_kept_in_the_cache_and_a_damaged_copy_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    generated = data_module._generate_mnist1d()
    first = load_dataset("mnist1d")
    (kept,) = (tmp_path / "covshift").glob("mnist1d-*.npz")
    assert first.x_train.shape == (4000, 40)

    # Read back from the cache, the package not asked again: the same arrays.
    def no(*args: object) -> None:
        raise AssertionError("generated although the cache holds it")

    monkeypatch.setattr(data_module, "_generate_mnist1d", no)
    again = load_dataset("mnist1d")
    assert torch.equal(again.x_train, first.x_train) and torch.equal(again.y_test, first.y_test)

    # Damaged (cut short): generated again, the same as the package makes it, and replaced.
    kept.write_bytes(kept.read_bytes()[:100])
    monkeypatch.setattr(data_module, "_generate_mnist1d", lambda: generated)
    mended = load_dataset("mnist1d")
    assert torch.equal(mended.x_train, first.x_train)
    with np.load(kept) as stored:
        assert np.array_equal(stored["x"], generated["x"])


def test_an_unwritable_cache_still_gives_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    arrays = {"x": np.arange(6.0).reshape(3, 2), "y": np.array([0, 1, 0])}
    assert data_module._cached("k", ("x", "y"), lambda: arrays) is arrays
    assert blocked.read_text() == "not a directory"


def test_unknown_dataset_and_mnist_without_a_directory() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="needs data_dir"):
        load_dataset("mnist")
