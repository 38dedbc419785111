"""Read IDX files (the MNIST distribution format), plain or gzipped, with clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from covshift.errors import DataError

# IDX type byte -> big-endian NumPy dtype (the format's own table).
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray[Any, np.dtype[Any]]:
    """Return the array stored in one IDX file; raise DataError on anything malformed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is not a valid gzip file: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise DataError(f"{path} has unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} has a truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes but its header {shape} needs {expected}"
        )
    array: np.ndarray[Any, np.dtype[Any]] = np.frombuffer(raw, dtype=dtype, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(directory: Path, stem: str) -> Path:
    """Find `stem` in directory in its usual spellings ('-idx3-ubyte' or '.idx3-ubyte', .gz)."""
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in ("", ".gz"):
            path = directory / f"{name}{suffix}"
            if path.is_file():
                return path
    raise DataError(f"MNIST file {stem}[.gz] not found in {directory}")
