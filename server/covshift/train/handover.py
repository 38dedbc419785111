"""How a frame job crosses to the measuring process: its tensors laid end to end in memory
both processes share, the rest of it pickled.

Pickled one by one, a job's tensors (some 50 to 90: taps, parameters, buffers) cost
Python work each, and a pipe copies their bytes twice through the kernel, waking the
reader for each buffer-full. Here the pickler only numbers the tensors; one torch.cat
per dtype then copies them into a shared anonymous mapping made before the fork, and
the measuring process finds each by its offset there. A job too large for the mapping
carries its tensors' bytes in the pickle instead.

The pickler numbers a tensor through its own dispatch table (copyreg's way of pickling
one type differently), which it consults for tensors only. A persistent_id would be a
Python call for each of the job's ~230 objects, most of them dicts, strings and numbers.
"""

from __future__ import annotations

import copyreg
import io
import math
import mmap
import pickle
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .hooks import tensor_key

# Virtual size of the shared mapping: a page takes memory only once a job has written to
# it. The default run's jobs take about 1 MB; a CNN's at a large batch, tens of MB.
SHARED_BYTES = 256 << 20
_ALIGN = 64  # each dtype's run of values starts on a cache line

# (dtype, shape, the byte where its values start); the shape a plain tuple, which pickles
# without a call (a torch.Size pickles through its own reduction, a Python call each)
_Place = tuple[torch.dtype, tuple[int, ...], int]


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
    places: list[_Place] = [(torch.uint8, (), 0)] * len(tensors)
    runs = []  # (dtype, first byte, last byte + 1, numbers)
    end = 0
    for dtype, numbers in by_dtype.items():
        start = end = -(-end // _ALIGN) * _ALIGN
        for number in numbers:
            places[number] = (dtype, tuple(tensors[number].shape), end)
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
        space[start : start + math.prod(shape) * dtype.itemsize].view(dtype).view(shape).clone()
        for dtype, shape, start in places
    ]
    return _Unnumbering(io.BytesIO(skeleton), tensors).load()


def _numbered(number: int) -> torch.Tensor:
    """Stands in a pickle for the tensor handed over as `number`; the pickle names it and
    _Unnumbering puts its own list's look-up in its place."""
    raise pickle.UnpicklingError("a numbered tensor is read by handover.unpack only")


class _Numbering(pickle.Pickler):
    """Pickles each tensor (or parameter) as its number in `tensors`. Tensors over the
    same memory (plain's act_input is its linear_out) get one number, so the measuring
    still sorts them once. A tensor of another subclass is pickled by value, as pickle
    would."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tensors: list[torch.Tensor] = []
        tensors = self.tensors
        numbers: dict[tuple[object, ...], int] = {}

        def number(tensor: torch.Tensor) -> tuple[Callable[[int], torch.Tensor], tuple[int]]:
            key = tensor_key(tensor)
            found = numbers.get(key)
            if found is None:
                found = numbers[key] = len(tensors)
                tensors.append(tensor.detach())
            return _numbered, (found,)

        self.dispatch_table = copyreg.dispatch_table | {torch.Tensor: number, nn.Parameter: number}


class _Unnumbering(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, tensors: list[torch.Tensor]) -> None:
        super().__init__(file)
        self._tensors = tensors

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == _numbered.__name__:
            return self._tensors.__getitem__
        return super().find_class(module, name)
