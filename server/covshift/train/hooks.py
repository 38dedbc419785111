"""Forward hooks as a context manager: registered on entry, always removed on exit.

Every measurement of a model's insides (the probes, the population statistics, the
cumulative averages) goes through `hooked`, so no code path can leave a hook behind:
not an exception in the forward pass, not a generator closed early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# A forward hook that only observes: it must return None (anything else replaces the output).
Hook = Callable[[nn.Module, tuple[torch.Tensor, ...], Any], None]


def tensor_key(tensor: torch.Tensor) -> tuple[object, ...]:
    """Equal for two tensors that are views of the same values the same way: one tensor
    captured under several taps (plain's act_input is its linear_out) is measured once."""
    return (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype)


@contextmanager
def hooked(hooks: Iterable[tuple[nn.Module, Hook]]) -> Iterator[None]:
    """Register each (module, hook) for the forward passes run inside the block."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
