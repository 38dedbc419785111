"""Datasets: load, standardise with training-set statistics, and split off a fixed test set."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from covshift.errors import DataError

from .idx import find_idx, read_idx

# The split and the synthetic data use their own fixed seed, not the run's seed,
# so every run on a dataset is tested on exactly the same held-out examples.
_DATA_SEED = 0
_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """Standardised features and integer labels, already split into train and test."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    # (channels, height, width) of image data, whose rows are its pixels flattened in
    # that order; None for data without a grid (a CNN cannot take it).
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device) -> Dataset:
        return Dataset(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.n_classes,
            self.image_shape,
        )


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a dataset by its config name."""
    if name == "digits":
        return _digits()
    if name == "moons":
        return _moons()
    if name == "spirals":
        return _spirals()
    if name == "mnist1d":
        return _mnist1d()
    if name == "mnist":
        if not data_dir:
            raise DataError("dataset 'mnist' needs data_dir, the directory of its IDX files")
        return load_mnist(Path(data_dir))
    raise DataError(f"unknown dataset {name!r}")


def standardise(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """Scale every feature to mean 0, std 1 using training statistics only (no test leakage)."""
    x_train = x_train.astype(np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels (e.g. digit borders) stay 0 instead of dividing by 0
    n_classes = int(max(y_train.max(), y_test.max())) + 1

    def features(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x.astype(np.float64) - mean) / std).astype(np.float32))

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))

    return Dataset(
        name,
        features(x_train),
        labels(y_train),
        features(x_test),
        labels(y_test),
        n_classes,
        image_shape,
    )


def _split(
    name: str, x: np.ndarray, y: np.ndarray, image_shape: tuple[int, int, int] | None = None
) -> Dataset:
    order = np.random.default_rng(_DATA_SEED).permutation(len(x))
    n_test = math.ceil(len(x) * _TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return standardise(name, x[train], y[train], x[test], y[test], image_shape)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # bunch.data holds each 8x8 image row by row, one grey channel.
    return _split("digits", bunch.data, bunch.target, image_shape=(1, 8, 8))


def _moons() -> Dataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.2, random_state=_DATA_SEED)
    return _split("moons", x, y)


def _spirals(n_per_class: int = 700, n_arms: int = 3) -> Dataset:
    rng = np.random.default_rng(_DATA_SEED)
    radius = np.tile(np.linspace(0.05, 1.0, n_per_class), n_arms)
    arm = np.repeat(np.arange(n_arms), n_per_class)
    angle = 4.0 * radius + arm * 2 * np.pi / n_arms + rng.normal(0, 0.2, radius.shape)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    return _split("spirals", x, arm)


MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")


def _mnist1d() -> Dataset:
    data = _cached(f"mnist1d-{version('mnist1d')}", MNIST1D_ARRAYS, _generate_mnist1d)
    return standardise("mnist1d", data["x"], data["y"], data["x_test"], data["y_test"])


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D as the mnist1d package generates it with its default arguments (5,000
    sequences, its own seed): ~0.7 s, after ~1 s importing the package (and matplotlib)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # mnist1d seeds NumPy's global generator; put the caller's state back afterwards.
    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    return {name: np.asarray(data[name]) for name in MNIST1D_ARRAYS}


def cache_dir() -> Path | None:
    """Where generated datasets are kept between runs: $XDG_CACHE_HOME/covshift, else
    ~/.cache/covshift; None where there is no home to keep them in."""
    base = os.environ.get("XDG_CACHE_HOME")
    try:
        return Path(base or Path.home() / ".cache") / "covshift"
    except RuntimeError:  # no HOME and no password entry
        return None


def _cached(
    key: str, names: tuple[str, ...], generate: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays kept in the cache under `key`, generated (and kept) when they are not
    there. A damaged or unreadable file is generated again and replaced; where the cache
    cannot be written the arrays are generated every time, never an error."""
    folder = cache_dir()
    if folder is None:
        return generate()
    path = folder / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # absent or damaged: generate it again
    data = generate()
    _keep(path, data)
    return data


def _keep(path: Path, data: dict[str, np.ndarray]) -> None:
    """Write the arrays whole, then rename: a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, allow_pickle=False, **data)
        os.replace(name, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(name)


MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_mnist(directory: Path) -> Dataset:
    """Load MNIST (or any IDX dataset in MNIST's layout) from the four standard files."""
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist")
    arrays = {key: read_idx(find_idx(directory, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"MNIST {split} files need 3-D images and 1-D labels, "
                f"got {images.shape} and {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataError(f"MNIST {split} has {len(images)} images but {len(labels)} labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError("MNIST train and test images differ in size")
    height, width = arrays["x_train"].shape[1:]
    return standardise(
        "mnist",
        arrays["x_train"].reshape(len(arrays["x_train"]), -1),
        arrays["y_train"],
        arrays["x_test"].reshape(len(arrays["x_test"]), -1),
        arrays["y_test"],
        image_shape=(1, int(height), int(width)),
    )
