"""How a frame job crosses to the measuring process: its tensors laid end to end in memory
both processes share, the rest of it pickled.

Pickled one by one, a job's tensors (some 50 to 90: taps, parameters, buffers) cost
Python work each, and a pipe copies their bytes twice through the kernel, waking the
reader for each buffer-full. Here the pickler only numbers the tensors; one torch.cat
per dtype then copies them into a shared anonymous mapping made before the fork, and
the measuring process finds each by its offset there. A job too large for the mapping
carries its tensors' bytes in the pickle instead.
"""

from __future__ import annotations

import io
import mmap
import pickle
from typing import Any

import torch

from .hooks import tensor_key

# Virtual size of the shared mapping: a page takes memory only once a job has written to
# it. The default run's jobs take about 1 MB; a CNN's at a large batch, tens of MB.
SHARED_BYTES = 256 << 20
_ALIGN = 64  # each dtype's run of values starts on a cache line

# (dtype, shape, the byte where its values start)
_Place = tuple[torch.dtype, torch.Size, int]


class SharedTensors:
    """Memory a parent and the processes it forks afterwards both see, for handing over
    tensors by value; one job's tensors at a time."""

    def __init__(self, size: int = SHARED_BYTES) -> None:
        self.size = size
        self.bytes = torch.frombuffer(mmap.mmap(-1, size), dtype=torch.uint8)


def pack(job: object, shared: SharedTensors) -> bytes:
    """The job pickled with its tensors numbered, their values copied into `shared` (or,
    when they do not fit, into the pickle)."""
    skeleton = io.BytesIO()
    numbering = _Numbering(skeleton)
    numbering.dump(job)
    tensors = numbering.tensors
    # Each dtype's tensors end to end, in one run of its own starting on a cache line.
    by_dtype: dict[torch.dtype, list[int]] = {}
    for number, tensor in enumerate(tensors):
        by_dtype.setdefault(tensor.dtype, []).append(number)
    places: list[_Place] = [(torch.uint8, torch.Size(), 0)] * len(tensors)
    runs = []  # (dtype, first byte, last byte + 1, numbers)
    end = 0
    for dtype, numbers in by_dtype.items():
        start = end = -(-end // _ALIGN) * _ALIGN
        for number in numbers:
            places[number] = (dtype, tensors[number].shape, end)
            end += tensors[number].numel() * dtype.itemsize
        runs.append((dtype, start, end, numbers))
    fits = end <= shared.size
    space = shared.bytes[:end] if fits else torch.empty(end, dtype=torch.uint8)
    for dtype, start, stop, numbers in runs:
        torch.cat([tensors[n].reshape(-1) for n in numbers], out=space[start:stop].view(dtype))
    carried = None if fits else bytearray(space.numpy())
    return pickle.dumps((skeleton.getvalue(), places, carried), pickle.HIGHEST_PROTOCOL)


def unpack(payload: bytes, shared: SharedTensors) -> Any:
    """The job of a pack(). Its tensors are copies, each with memory of its own as the
    trainer's were (some torch calls take a tensor's memory from its start: a generator's
    set_state), and the shared memory is free for the next job."""
    skeleton, places, carried = pickle.loads(payload)
    space = shared.bytes if carried is None else torch.frombuffer(carried, dtype=torch.uint8)
    tensors = [
        space[start : start + shape.numel() * dtype.itemsize].view(dtype).view(shape).clone()
        for dtype, shape, start in places
    ]
    return _Unnumbering(io.BytesIO(skeleton), tensors).load()


class _Numbering(pickle.Pickler):
    """Pickles each tensor as its number in `tensors`. Tensors over the same memory
    (plain's act_input is its linear_out) get one number, so the measuring still sorts
    them once."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tensors: list[torch.Tensor] = []
        self._numbers: dict[tuple[object, ...], int] = {}

    def persistent_id(self, obj: object) -> int | None:
        if not isinstance(obj, torch.Tensor):
            return None
        key = tensor_key(obj)
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = len(self.tensors)
            self.tensors.append(obj.detach())
        return number


class _Unnumbering(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, tensors: list[torch.Tensor]) -> None:
        super().__init__(file)
        self._tensors = tensors

    def persistent_load(self, pid: Any) -> torch.Tensor:
        tensor: torch.Tensor = self._tensors[pid]
        return tensor
