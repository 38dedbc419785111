"""A job handed to the measuring process: what unpack gives is what pack was given, by
value, through the shared memory or (too large for it) through the pickle."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from covshift.train.handover import SharedTensors, pack, unpack
from torch import nn


@dataclass(frozen=True)
class _Job:
    taps: list[dict[str, torch.Tensor]]
    state: dict[str, object]
    step: int


def _job() -> _Job:
    generator = torch.Generator().manual_seed(0)
    out = torch.randn(60, 100, generator=generator)
    return _Job(
        # one tensor behind two taps, as plain's act_input is its linear_out
        taps=[{"linear_out": out, "act_input": out, "act_output": out.sigmoid()}],
        state={
            "weight": torch.randn(100, 64, generator=generator).t(),  # not contiguous
            "bias": nn.Parameter(torch.randn(10_000, generator=generator)),  # as a model holds it
            "num_batches_tracked": torch.tensor(7),  # int64, no dimensions
            "generator": generator.get_state(),  # uint8
            "empty": torch.empty(0, 3),
            "mask": torch.rand(5, generator=generator) > 0.5,  # bool
            "momentum": 0.1,
            "last_r": None,
        },
        step=40,
    )


def _assert_same(got: _Job, want: _Job) -> None:
    assert got.step == want.step
    pairs = [*zip(got.taps[0].values(), want.taps[0].values(), strict=True)]
    pairs += [(got.state[k], v) for k, v in want.state.items() if isinstance(v, torch.Tensor)]
    for tensor, expected in pairs:
        assert isinstance(tensor, torch.Tensor)
        assert tensor.dtype == expected.dtype
        assert tensor.shape == expected.shape
        assert torch.equal(tensor, expected)
    assert (got.state["momentum"], got.state["last_r"]) == (0.1, None)
    # a generator takes its state from the start of the tensor's memory
    generator = torch.Generator()
    generator.set_state(got.state["generator"])
    assert torch.equal(generator.get_state(), want.state["generator"])


@pytest.mark.parametrize("size", [64 << 20, 4096], ids=["shared", "too large for it"])
def test_a_job_arrives_as_it_was_packed(size: int) -> None:
    shared = SharedTensors(size)
    job = _job()
    payload = pack(job, shared)
    job.taps[0]["act_output"].zero_()  # written after the handover: the job keeps its values
    got = unpack(payload, shared)
    job.taps[0]["act_output"].copy_(_job().taps[0]["act_output"])
    _assert_same(got, job)
    # the same memory behind two taps stays one tensor, sorted once
    assert got.taps[0]["linear_out"] is got.taps[0]["act_input"]
    assert got.taps[0]["act_output"] is not got.taps[0]["linear_out"]
    # the next job may reuse the shared memory: this one's tensors are copies
    pack(_Job(taps=[{"x": torch.full((60, 100), 3.0)}], state={}, step=41), shared)
    _assert_same(got, job)


def test_the_pickle_carries_the_values_only_when_they_do_not_fit() -> None:
    job = _job()
    tensors = [*job.taps[0].values(), job.state["bias"]]
    values = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    assert len(pack(job, SharedTensors(64 << 20))) < values / 4
    assert len(pack(job, SharedTensors(4096))) > values / 2


class _Tagged(torch.Tensor):
    """A tensor subclass the handover does not number."""


def test_a_tensor_of_another_subclass_travels_by_value_in_the_pickle() -> None:
    tagged = torch.arange(10_000.0).as_subclass(_Tagged)
    shared = SharedTensors(64 << 20)
    payload = pack({"tagged": tagged, "plain": torch.ones(3)}, shared)
    assert len(payload) > tagged.numel() * tagged.element_size()
    got = unpack(payload, shared)
    assert type(got["tagged"]) is _Tagged
    assert torch.equal(got["tagged"], tagged)
    assert torch.equal(got["plain"], torch.ones(3))
