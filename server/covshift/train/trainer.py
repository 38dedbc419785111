"""Lockstep trainer: every variant takes the same mini-batch at every step; probes on sampled steps.

Pure PyTorch: no web imports. Each call to `train_step` returns the wire messages
it produced (events, and a frame on probed steps) for whoever runs it.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from covshift.config import BATCH_SIZE_ONE_REASON, RunConfig
from covshift.errors import ConfigError
from covshift.variants import VARIANTS
from covshift.wire import Json, message

from . import ics
from .cumulative import CumulativeAverages
from .data import Dataset, load_dataset
from .fixed_drift import FixedDataDrift, probe_set
from .frames import Metrics, Pass, StepView, first_nonfinite, grad_norms
from .histogram import PERCENTILES
from .inference import evaluate, running_stat_norms
from .measuring import (
    FrameJob,
    FrameMaker,
    MeasuringApart,
    ModelState,
    can_measure_apart,
    model_state,
)
from .models import Network, build_variants
from .norms import restoring_state
from .probes import Probe, capture, tap_values, taps_of


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    momentum = config.sgd_momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=momentum)


class Trainer:
    """Trains config.variants side by side: same initial weights, same batches, same order."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.data = (dataset or load_dataset(config.dataset, config.data_dir)).to(self.device)
        self.n_train = len(self.data.y_train)
        self._check_batch_size(config.batch_size)
        # Refused now, not at the step: a schedule the data cannot take never starts.
        self._schedule = {change.step: change for change in config.schedule}
        for change in config.schedule:
            if change.batch_size is not None:
                try:
                    self._check_batch_size(change.batch_size)
                except ConfigError as exc:
                    raise ConfigError(f"schedule: at step {change.step}, {exc}") from None
        self.models: dict[str, Network] = build_variants(
            config,
            self.data.n_features,
            self.data.n_classes,
            self.device,
            image_shape=self.data.image_shape,
        )
        self.optimizers = {v: make_optimizer(config, m) for v, m in self.models.items()}
        self.loss_fn = nn.CrossEntropyLoss()
        self.lr = config.lr
        self.batch_size = config.batch_size
        self.bn_momentum = config.bn_momentum
        self.step = 0  # updates taken so far; the frame of step s shows the state before update s+1
        self.diverged_at: dict[str, int | None] = dict.fromkeys(self.models)
        # Each variant's losses since the last frame, kept as tensors (no sync per step) so the
        # frame can name the first step whose loss was non-finite.
        self._recent_losses: dict[str, list[torch.Tensor]] = {v: [] for v in self.models}
        self._generator = torch.Generator().manual_seed(config.seed)
        self._order = torch.randperm(self.n_train, generator=self._generator)
        self._cursor = 0
        self._epochs_done = 0
        self.probe = Probe(config.activation, config.bins, config.drift_window)
        self.fixed_drift = FixedDataDrift(probe_set(self.data.x_test, config.seed))
        self.cumulative = (
            {v: CumulativeAverages(m) for v, m in self.models.items() if running_stat_norms(m)}
            if config.compare_cumulative
            else {}
        )
        self._calibrate()
        self._maker = FrameMaker(self.models, self.data, self.probe, self.fixed_drift, self.loss_fn)
        self._apart: MeasuringApart | None = None
        # A run that starts at batch size 1 says so with its first step's messages.
        self._pending: list[dict[str, Json]] = self._skipped(config.batch_size)
        # Messages not yet returned, in order; PENDING holds a frame's place while it is
        # measured apart.
        self._outbox: list[dict[str, Json] | _Pending] = []

    # ---- controls: each takes effect at the next step. Values arrive validated against the
    # config's bounds where they entered (the API, the websocket); only what depends on the
    # data is checked here. A change returns the events it caused, once, for the caller to
    # send; a value equal to the current one changes nothing and records nothing. ----

    def set_lr(self, value: float) -> list[dict[str, Json]]:
        if value == self.lr:
            return []
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = value
        previous, self.lr = self.lr, value
        return [self._event("lr", value=value, previous=previous)]

    def set_batch_size(self, value: int) -> list[dict[str, Json]]:
        self._check_batch_size(value)
        if value == self.batch_size:
            return []
        previous, self.batch_size = self.batch_size, value
        return [self._event("batch_size", value=value, previous=previous), *self._skipped(value)]

    def set_bn_momentum(self, value: float | None) -> list[dict[str, Json]]:
        if value == self.bn_momentum:
            return []
        for model in self.models.values():
            for norm in running_stat_norms(model):
                norm.momentum = value
        previous, self.bn_momentum = self.bn_momentum, value
        return [self._event("bn_momentum", value=value, previous=previous)]

    def _check_batch_size(self, batch_size: int) -> None:
        if batch_size > self.n_train:
            raise ConfigError(
                f"batch_size: {batch_size} is more than the {self.n_train} training "
                f"examples of {self.data.name}"
            )
        if not self.config.trainable_at(batch_size):
            raise ConfigError(f"batch_size: {BATCH_SIZE_ONE_REASON}")

    def _skipped(self, batch_size: int) -> list[dict[str, Json]]:
        """The event saying which variants batch size 1 leaves untrained, if any."""
        skipped = [v for v in self.config.variants if v not in self.config.trainable_at(batch_size)]
        if not skipped:
            return []
        return [self._event("skipped", variants=skipped, reason=BATCH_SIZE_ONE_REASON)]

    def _event(self, kind: str, **fields: Json) -> dict[str, Json]:
        return message("event", step=self.step, kind=kind, **fields)

    # ---- training ----

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    @property
    def all_diverged(self) -> bool:
        """Every variant diverged: none trains again, so stepping on only burns time."""
        return all(step is not None for step in self.diverged_at.values())

    @property
    def epoch(self) -> float:
        return self._epochs_done + self._cursor / self.n_train

    def hello(self) -> dict[str, Json]:
        """What a reader needs before the first frame: config, layout and bin edges."""
        return message(
            "hello",
            config=self.config.model_dump(mode="json", exclude={"data_dir"}),
            dataset={
                "name": self.data.name,
                "n_train": self.n_train,
                "n_test": len(self.data.y_test),
                "n_features": self.data.n_features,
                "n_classes": self.data.n_classes,
            },
            variants={
                v: {
                    "label": VARIANTS[v].description,
                    "name": VARIANTS[v].label,
                    "color": VARIANTS[v].color,
                    "normalizer": _normalizer_name(v, m),
                    "batch_stats": VARIANTS[v].batch_stats,
                    "taps": list(taps_of(m)),
                    "layers": m.layer_shapes(),
                }
                for v, m in self.models.items()
            },
            percentiles=list(PERCENTILES),
            # Each variant's own bins (docs/protocol.md); `edges` stays for readers of the
            # shared form, empty.
            edges=[],
            variant_edges={v: self.probe.edges_json(v) for v in self.models},
        )

    def train_step(self, frame: bool = False) -> list[dict[str, Json]]:
        """Take one update for every trainable variant; return the messages ready to go out.
        `frame` records a frame whatever the cadence (a single step taken from the page).
        Measured inline (the default) a step's messages are all ready; measured apart, a
        frame and what follows it wait for its measuring, and come with a later step or
        with flush()."""
        scheduled = self._apply_schedule()
        step = self.step
        config = self.config
        tested = step % config.test_every == 0 or step == config.steps - 1
        measured = config.ics_every > 0 and step % config.ics_every == 0
        probed = frame or tested or measured or step % config.probe_every == 0
        x, y = self.next_batch()
        active: list[str] = [
            v for v in config.trainable_at(self.batch_size) if self.diverged_at[v] is None
        ]
        # Test before the training forward, which moves BN's running statistics.
        # A variant that cannot train at this batch size (or diverged) is not scored: its
        # frozen weights would report numbers that say nothing about the normalizer.
        trainable = config.trainable_at(self.batch_size)
        scored = [
            v for v in self.models if tested and self.diverged_at[v] is None and v in trainable
        ]
        tests: dict[str, Metrics] | None = None
        before: dict[str, ModelState] = {}
        if self._apart is None:
            tests = {
                v: evaluate(
                    self.models[v], self.data, self.batch_size, self.loss_fn, self._cumulative_of(v)
                )
                for v in scored
            }
        else:  # scored apart, from the state it has now
            before = {v: model_state(self.models[v]) for v in scored}
        cumulative = {v: c for v in before if (c := self._cumulative_of(v)) is not None}
        # ICS is measured on copies taken before the forward: the state training starts from.
        twins = {v: ics.snapshot(self.models[v]) for v in active} if measured else {}
        passes = {v: self._forward_backward(v, x, y, probed) for v in active}
        shifts = {
            v: ics.measure(
                twin, x, y, self.loss_fn, self.lr, (passes[v].loss, _gradients(self.models[v]))
            )
            for v, twin in twins.items()
        }
        job = None
        if probed:
            job = FrameJob(
                view=self._view(active, tested),
                passes=passes,
                grad_norms={v: grad_norms(self.models[v]) for v in active},
                shifts=shifts,
                diverging=self._diverging(active),
                tests=tests,
                before=before,
                cumulative=cumulative,
                # handed over (copied) in _measure below, before the next forward
                after={v: model_state(self.models[v], copied=False) for v in active}
                if self._apart
                else {},
            )
        self._outbox += [*self._pending, *scheduled]
        self._pending = []
        if job is not None:
            self._measure(job)
        for variant in active:
            self.optimizers[variant].step()  # after the probe, so gamma/beta match the forward
        self.step += 1
        return self._ready()

    def measure_apart(self) -> None:
        """From now on, make frames in a process of their own beside training (see
        covshift.train.measuring); close() ends it. Where that cannot help (a GPU run, no
        core left over by training's threads, not Linux), or the system will not give the
        process or its shared memory, frames stay inline: the same frames."""
        if self._apart is None and can_measure_apart(self.device):
            try:
                self._apart = MeasuringApart(self._maker)
            except OSError:  # fork or mmap refused (process or memory limits)
                self._apart = None

    def flush(self) -> list[dict[str, Json]]:
        """Every message not yet returned, waiting for a frame still being measured."""
        self._take_frame(wait=True)
        return self._ready()

    def close(self) -> None:
        """End the measuring process, if any (frames not yet taken are lost: flush first)."""
        if self._apart is not None:
            self._apart.close()
            self._apart = None

    def _measure(self, job: FrameJob) -> None:
        """Make the job's frame, or hand it over; the divergence it found is settled now."""
        for variant, first in job.diverging.items():
            self.diverged_at[variant] = first
        events = [
            message(
                "event",
                step=first,
                kind="diverged",
                variant=variant,
                reason="loss became non-finite (NaN or infinity)",
            )
            for variant, first in job.diverging.items()
        ]
        if self._apart is None:
            self._outbox.append(self._maker.make(job))
        else:
            self._take_frame(wait=True)  # one job in flight: the previous frame first
            self._apart.submit(job)
            self._outbox.append(PENDING)
        self._outbox += events

    def _take_frame(self, wait: bool) -> None:
        """Put the frame measured apart in its place in the outbox, once it is made (or,
        with wait, waiting for it)."""
        if self._apart is not None and self._apart.busy and (wait or self._apart.done()):
            self._outbox[self._outbox.index(PENDING)] = self._apart.result()

    def _ready(self) -> list[dict[str, Json]]:
        """Take the outbox up to the first frame still being measured."""
        if not self._outbox:
            return []
        self._take_frame(wait=False)
        cut = next((i for i, m in enumerate(self._outbox) if m is PENDING), len(self._outbox))
        ready, self._outbox = self._outbox[:cut], self._outbox[cut:]
        return [m for m in ready if not isinstance(m, _Pending)]  # none is: for the type

    def _apply_schedule(self) -> list[dict[str, Json]]:
        """The config's changes for this step, through the live controls (in the order the
        worker applies a person's), each event marked as the schedule's."""
        change = self._schedule.get(self.step)
        if change is None:
            return []
        events: list[dict[str, Json]] = []
        if change.batch_size is not None:
            events += self.set_batch_size(change.batch_size)
        if "bn_momentum" in change.changes():  # None there means the cumulative average
            events += self.set_bn_momentum(change.bn_momentum)
        if change.lr is not None:
            events += self.set_lr(change.lr)
        return [{**event, "scheduled": True} for event in events]

    def _cumulative_of(self, variant: str) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        averages = self.cumulative.get(variant)
        return averages.statistics() if averages is not None else None

    def _forward_backward(
        self, variant: str, x: torch.Tensor, y: torch.Tensor, probed: bool
    ) -> Pass:
        """One variant's forward (captured when probed) and backward; the update comes later."""
        model = self.models[variant]  # in train mode: whatever evaluates it puts that back
        averages = self.cumulative.get(variant)
        layers = None
        if probed or averages is not None:
            tracking = averages.tracking() if averages is not None else nullcontext()
            with tracking, capture(model) if probed else nullcontext() as layers:
                logits = model(x)
        else:  # most steps: nothing to watch the forward for
            logits = model(x)
        loss = self.loss_fn(logits, y)
        self.optimizers[variant].zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        self._recent_losses[variant].append(loss)
        if not probed:
            return Pass(layers, loss)
        return Pass(layers, loss, logits.detach(), y)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch (x, y) in this run's seeded order; every variant trains on it."""
        if self._cursor + self.batch_size > self.n_train:
            # New epoch: reshuffle and drop the remainder, so every batch is full-size.
            self._order = torch.randperm(self.n_train, generator=self._generator)
            self._cursor = 0
            self._epochs_done += 1
        indices = self._order[self._cursor : self._cursor + self.batch_size].to(self.device)
        self._cursor += self.batch_size
        return self.data.x_train[indices], self.data.y_train[indices]

    @torch.no_grad()
    def _calibrate(self) -> None:
        """Fix histogram edges from the first batch without training on it or moving BN buffers."""
        size = max(self.batch_size, 2)
        x = self.data.x_train[self._order[:size].to(self.device)]
        values = {}
        for variant, model in self.models.items():
            model.train()
            with restoring_state(model), capture(model) as layers:
                model(x)
            values[variant] = tap_values(model, layers)
        self.probe.calibrate(values, self.models)

    def _view(self, active: list[str], tested: bool) -> StepView:
        return StepView(
            step=self.step,
            epoch=self.epoch,
            lr=self.lr,
            batch_size=self.batch_size,
            statuses={v: self._status(v, active) for v in self.models},
            diverged_at=dict(self.diverged_at),
            tested=tested,
        )

    def _diverging(self, active: list[str]) -> dict[str, int]:
        """The variants whose loss went non-finite since the last frame, at the first such
        step; the losses kept since then start over."""
        kept = {v: self._recent_losses[v] for v in active}
        for variant in active:
            self._recent_losses[variant] = []
        losses = [loss for variant_losses in kept.values() for loss in variant_losses]
        if not losses:
            return {}
        # every variant's losses looked at in one call, then each variant's apart
        flags = (~torch.isfinite(torch.stack(losses))).tolist()
        if not any(flags):
            return {}
        result, start = {}, 0
        for variant, variant_losses in kept.items():
            first = first_nonfinite(self.step, flags[start : start + len(variant_losses)])
            start += len(variant_losses)
            if first is not None:
                result[variant] = first
        return result

    def _status(self, variant: str, active: list[str]) -> str:
        if self.diverged_at[variant] is not None:
            return "diverged"
        return "training" if variant in active else "skipped"


class _Pending:
    """The place of a frame in the outbox while it is measured apart."""


PENDING = _Pending()


def _normalizer_name(variant: str, model: Network) -> str | None:
    """The torch module the variant's layers normalize with: the registry's name for the
    MLP's, the built module's own for a CNN's (BatchNorm2d, GroupNorm for its LayerNorm)."""
    norms = [block.norm for block in model.hidden() if block.norm is not None]
    return type(norms[0]).__name__ if norms else VARIANTS[variant].normalizer


def _gradients(model: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in model.parameters()]
