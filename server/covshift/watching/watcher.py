"""covshift.watch: the user's own model measured every N steps of their loop, into a run folder.

The first forward pass only records which modules run, in order (layers.find_layers).
From then on, `step()` arms the measuring hooks at the end of the step before a frame
step and removes them at the frame step's own `step()` call, so the hooks exist for one
forward and one backward every `every` steps and never otherwise. At the frame step the
training thread only keeps what the hooks captured and copies the state the next steps
would change (snapshot.FrameStep); the folder's writer thread reduces it (reducer.Reducer).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import torch
from torch import nn

from covshift.train.models import MLP
from covshift.train.probes import Captured, capture
from covshift.wire import Json, message

from .folder import Record, RunFolder
from .layers import ExecutionOrder, WatchedModel, find_layers, ran_every_layer, recording
from .reducer import Reducer
from .snapshot import FrameStep, Scalars, current_streams, frozen_model, scalars_of

log = logging.getLogger(__name__)


def default_logdir() -> Path:
    """COVSHIFT_LOGDIR, else the server's own default, so `covshift serve` finds the run."""
    from covshift.settings import Settings

    default = Settings.model_fields["logdir"].default
    return Path(os.environ.get("COVSHIFT_LOGDIR") or default)


class Watcher:
    """Measures one model (or several trained on the same batches) every `every` steps."""

    def __init__(
        self,
        model: nn.Module | Mapping[str, nn.Module],
        *,
        name: str | None = None,
        every: int = 50,
        logdir: str | os.PathLike[str] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        layers: Sequence[nn.Module] | str | None = None,
        bins: int = 64,
        live_lr: bool = False,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if live_lr and optimizer is None:
            raise ValueError(
                "live_lr: the dashboard changes the learning rate through the "
                "optimizer; pass optimizer= as well"
            )
        if isinstance(model, nn.Module):
            self.models = {name or type(model).__name__: model}
        else:
            self.models = dict(model)
            if not self.models:
                raise ValueError("model: pass a module or a non-empty {name: module} dict")
        self.name = name or "+".join(self.models)
        self.every = every
        self.optimizer = optimizer
        self.bins = bins
        self.steps = 0  # steps taken: the index of the step whose forward runs next
        self.dropped = 0  # frames dropped because the writer was behind
        self.missed = 0  # frame steps whose forward did not pass every watched layer's hooks
        self._select = layers
        self._folder = RunFolder.new(Path(logdir) if logdir is not None else default_logdir())
        self.live_lr = live_lr
        self._folder.controlled = live_lr
        self._orders = {v: ExecutionOrder() for v in self.models}
        self._watched: dict[str, WatchedModel] | None = None
        self._reducer: Reducer | None = None  # the writer thread's, once the layers are known
        self._armed: ExitStack | None = None
        self._skipping = False  # this frame step's frame was dropped before capturing it
        self._captured: dict[str, Captured] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self._batch_size: int | None = None
        self._closed = False
        self._discovery = ExitStack()
        for variant, module in self.models.items():
            self._discovery.enter_context(recording(module, self._orders[variant]))

    @property
    def path(self) -> Path:
        """The run folder (created at the first step)."""
        return self._folder.path

    @property
    def watched(self) -> dict[str, WatchedModel]:
        """Each model's watched layers (empty before the first step)."""
        return self._watched or {}

    # ---- the training loop's calls ----

    def step(self, loss: Scalars = None, acc: Scalars = None) -> None:
        """End a training step. Call it once per step, after backward; on a frame step it
        takes the step's loss and accuracy (floats or tensors; a {name: value} dict with
        several models)."""
        if self._closed:
            raise RuntimeError("covshift.watch: step() after close()")
        if self.live_lr:
            self._take_lr()
        if len(self.models) > 1:
            for value in (loss, acc):
                if value is not None and not isinstance(value, Mapping):
                    raise TypeError("with several models, pass loss and acc as {name: value}")
        if self._watched is None:
            self._discover()
        elif self._armed is not None:
            self._disarm()
            try:
                self._take(loss, acc)
            except Exception:  # a measuring bug must not stop the user's training
                log.exception("covshift.watch: measuring step %d failed", self.steps)
        elif self._skipping:
            self._skipping = False
            self.dropped += 1
        self.steps += 1
        self._folder.state["step"] = self.steps
        if self._is_frame(self.steps):
            if self._folder.queue.full():
                # The writer is behind: drop the frame now, before any hook or copy costs
                # the next step anything. Counted at that step, if it comes.
                self._skipping = True
            else:
                self._arm()

    def _take_lr(self) -> None:
        """A learning rate the dashboard asked for, applied between two steps (here, on the
        training thread) to every parameter group, and recorded as one event."""
        change = self._folder.take_control()
        if change is None or self.optimizer is None:
            return
        seq, lr = change
        previous = float(self.optimizer.param_groups[0]["lr"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._folder.state["lr"] = lr
        event = message("event", step=self.steps, kind="lr", value=lr, previous=previous)
        self._folder.queue.put(Record({**event, "control": seq}))  # rare: may wait for room

    def flush(self) -> None:
        """Wait until every frame taken so far is measured and written."""
        self._folder.wait()

    def close(self) -> None:
        """Remove every hook, write what is queued and record the run as finished."""
        self._close(None)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The exception propagates (nothing is returned): the run records it as failed.
        self._close(None if error is None else f"{type(error).__name__}: {error}")

    # ---- internals ----

    def _is_frame(self, step: int) -> bool:
        # Step 0 found the layers; step 1 is the first frame (it fixes the histogram edges).
        return step == 1 or step % self.every == 0

    def _discover(self) -> None:
        self._discovery.close()
        self._watched = {
            v: find_layers(m, self._orders[v], self._select) for v, m in self.models.items()
        }
        self._orders = {}
        for variant, watched in self._watched.items():
            if not watched.layers:
                log.warning("covshift.watch: nothing to measure in %s", variant)
        config = self._describe()
        self._reducer = Reducer(self.watched, config, self.bins)
        self._folder.start(config)

    def _arm(self) -> None:
        stack = ExitStack()
        try:
            for variant, watched in self.watched.items():
                if watched.layers:
                    self._captured[variant] = stack.enter_context(capture(cast(MLP, watched)))
                    stack.enter_context(_out_of_place(watched))
            first = next(iter(self.models.values()))
            stack.callback(first.register_forward_pre_hook(self._read_batch).remove)
            self._grads = {}
            for watched in self.watched.values():
                for layer in watched.layers:
                    for parameter in layer.weights():
                        if parameter.requires_grad:
                            hook = self._grad_hook(id(parameter))
                            handle = parameter.register_hook(hook)  # type: ignore[no-untyped-call]
                            stack.callback(handle.remove)
        except BaseException:
            stack.close()
            raise
        self._armed = stack

    def _disarm(self) -> None:
        if self._armed is not None:
            self._armed.close()
            self._armed = None

    def _read_batch(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() > 0:
            self._batch_size = int(inputs[0].shape[0])

    def _grad_hook(self, key: int) -> Any:
        # Read at backward time, so zero_grad() before step() cannot hide it; the norm of
        # this backward's gradient (not of an accumulated .grad), kept on the device.
        def keep(grad: torch.Tensor) -> None:
            self._grads[key] = torch.linalg.vector_norm(grad.detach().float())

        return keep

    def _take(self, loss: Scalars, acc: Scalars) -> None:
        """The frame step's part on the training thread: keep the captured tensors, copy the
        normalizers' state, queue the rest for the writer thread (reducer.Reducer)."""
        captured: dict[str, Captured] = {}
        for variant, watched in self.watched.items():
            if not watched.layers:
                continue
            taken = self._captured.pop(variant)
            if not ran_every_layer(watched, taken):
                # A layer skipped by this forward, or a compiled model whose graph kept the
                # hooks it was compiled with (docs/watch.md): no frame rather than half of one.
                self.missed += 1
                log.log(
                    logging.WARNING if self.missed == 1 else logging.DEBUG,
                    "covshift.watch: step %d: the forward did not run every watched layer of %s "
                    "through its hooks (a torch.compile'd model?); no frame",
                    self.steps,
                    variant,
                )
                return
            captured[variant] = taken
        frame_step = FrameStep(
            step=self.steps,
            lr=self._lr(),
            batch_size=self._batch_size,
            dropped=self.dropped,
            captured=captured,
            models={v: frozen_model(self.watched[v]) for v in captured},
            grads=self._grads,  # _arm starts a new dict: this one is the frame step's alone
            scalars={v: scalars_of(v, loss, acc) for v in self.models},
            streams=current_streams(captured),
        )
        self._folder.state.update(lr=frame_step.lr, batch_size=self._batch_size)
        assert self._reducer is not None
        if not self._folder.offer(partial(self._reducer, frame_step)):
            self.dropped += 1  # not expected: only this thread fills the queue, checked at arm

    def _lr(self) -> float | None:
        if self.optimizer is None:
            return None
        return float(self.optimizer.param_groups[0]["lr"])

    def _describe(self) -> dict[str, Json]:
        return {
            "source": "watch",
            "name": self.name,
            "variants": list(self.models),
            "every": self.every,
            # What the dashboard may change in this run (watch(live_lr=True)), else nothing.
            "controls": ["lr"] if self.live_lr else [],
            "models": {
                v: {
                    "class": type(m).__name__,
                    "parameters": sum(p.numel() for p in m.parameters()),
                    "layers": [layer.name for layer in self.watched[v].layers],
                }
                for v, m in self.models.items()
            },
        }

    def _close(self, error: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._discovery.close()
        self._disarm()
        if self._watched is None:  # closed before the first step: record what ran so far
            self._discover()
        self._folder.finish("failed" if error is not None else "finished", error)


@contextmanager
def _out_of_place(watched: WatchedModel) -> Iterator[None]:
    """Watched activations run out of place while measured: an in-place ReLU would
    overwrite the normalizer output captured before it. The values are the same."""
    flipped = [layer.act for layer in watched.layers if getattr(layer.act, "inplace", False)]
    for module in flipped:
        setattr(module, "inplace", False)  # noqa: B010 (a plain attribute of torch's modules)
    try:
        yield
    finally:
        for module in flipped:
            setattr(module, "inplace", True)  # noqa: B010


def watch(model: nn.Module | Mapping[str, nn.Module], **options: Any) -> Watcher:
    """Watch a model (or {name: model}) as it trains; see docs/watch.md."""
    return Watcher(model, **options)
