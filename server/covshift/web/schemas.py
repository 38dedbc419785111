"""What clients may send: a new run's config, a change to a run, a websocket control message.

Bounds are not repeated here: RunRequest is RunConfig, and the live controls use the
same annotated types as RunConfig's fields.

All three take JSON's types as their JSON Schema states them (JsonTypes).
"""

from __future__ import annotations

from itertools import pairwise
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from covshift.config import BatchSize, BnMomentum, LearningRate, RunConfig, describe
from covshift.presets import PRESETS, preset_config
from covshift.runtime.messages import SweepPlan

RUN_PRESETS = tuple(name for name, preset in PRESETS.items() if preset.sweep is None)
SWEEP_PRESETS = tuple(name for name, preset in PRESETS.items() if preset.sweep is not None)
# A sweep is one short run per value, one after another: 16 keeps a sweep of the presets'
# length within minutes and its chart readable.
MAX_SWEEP_POINTS = 16


def _request_schema(schema: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    properties.pop("data_dir", None)
    # What the validators check, said in the schema too, so generated clients (and
    # fuzzers) send what is accepted.
    properties["variants"]["uniqueItems"] = True
    properties["preset"]["anyOf"] = [{"enum": list(PRESETS)}, {"type": "null"}]
    schema["examples"] = [
        {"dataset": "moons", "variants": ["plain", "bn"], "depth": 2, "width": 16},
        {"dataset": "digits", "activation": "relu", "lr": 1.0, "batch_size": 16},
        {"preset": "paper-fig1"},
        {"preset": "noisy-bn", "steps": 2000, "lr": 0.2},
        {"preset": "batch-sweep", "steps": 200, "sweep_values": [4, 16, 64]},
    ]


class JsonTypes(BaseModel):
    """Strict: pydantic's lax mode would read `true` as 1, "0.5" as 0.5 and "yes" as true,
    so a client with a type bug would train something it did not ask for. Two exceptions
    keep JSON Schema's meaning: an integer field takes 2.0 (JSON Schema's "integer" does),
    and a tuple field takes an array (strict mode wants a Python tuple)."""

    model_config = ConfigDict(strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _as_json_schema_reads_it(cls, value: object, info: ValidationInfo) -> object:
        field = str(info.field_name)
        if isinstance(value, list) and _takes(cls, field, tuple):
            return tuple(value)
        if isinstance(value, float) and value.is_integer() and _takes(cls, field, int):
            return int(value)
        return value


def _takes(model: type[BaseModel], field: str, kind: type) -> bool:
    """Is `kind` one of the field's types (int for `Annotated[int, ...] | None`)?"""
    annotation = model.model_fields[field].annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    # __origin__: int for Annotated[int, ...], tuple for tuple[str, ...]
    return any(getattr(option, "__origin__", option) is kind for option in options or [annotation])


class RunRequest(RunConfig, JsonTypes):
    """POST /api/runs: a run config. Unset fields take the preset's values, if one is named,
    else RunConfig's defaults. A sweep preset starts a sweep: one short run of this config
    per value of the preset's field."""

    model_config = ConfigDict(json_schema_extra=_request_schema)

    preset: str | None = Field(
        default=None,
        description="a named experiment whose values apply under the fields given: "
        + ", ".join(RUN_PRESETS)
        + "; or a sweep, one short run per value of a field: "
        + ", ".join(SWEEP_PRESETS),
        examples=list(PRESETS),
    )
    sweep_values: tuple[float, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SWEEP_POINTS,
        description="a sweep preset only: the values its field takes, increasing, each within "
        "that field's bounds (default: the preset's own)",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is None or value in PRESETS:
            return value
        raise ValueError(f"unknown preset {value!r}; one of {', '.join(PRESETS)}")

    @model_validator(mode="after")
    def _sweep_values_for_a_sweep(self) -> RunRequest:
        values = self.sweep_values
        if values is None:
            return self
        if self.preset not in SWEEP_PRESETS:
            raise ValueError(
                f"sweep_values: only a sweep preset ({', '.join(SWEEP_PRESETS)}) takes them"
            )
        if any(low >= high for low, high in pairwise(values)):
            raise ValueError("sweep_values: give them in increasing order, each once")
        return self

    @field_validator("data_dir", mode="before")
    @classmethod
    def _no_client_paths(cls, value: object) -> object:
        if value is not None:
            raise ValueError(
                "file paths are set on the server (COVSHIFT_MNIST_DIR), never by a client"
            )
        return value

    @model_validator(mode="after")
    def _data_dir_only_for_mnist(self) -> RunRequest:
        # Replaces RunConfig's check of the same name: the server supplies data_dir.
        return self

    def to_config(self, mnist_dir: str | None) -> RunConfig:
        """The RunConfig to train (the preset's values under the fields given), with the
        server's MNIST directory filled in."""
        if self.preset is not None:
            explicit = self.model_dump(include=self.model_fields_set - _NOT_CONFIG)
            return self._with_mnist_dir(preset_config(self.preset, explicit), mnist_dir)
        return self._with_mnist_dir(self, mnist_dir)

    def sweep_plan(self, base: RunConfig) -> SweepPlan | None:
        """The sweep to run on `base` (this request's config), None for a plain run; each
        value is checked as the config of its point (ValueError naming sweep_values)."""
        sweep = PRESETS[self.preset].sweep if self.preset is not None else None
        if sweep is None:
            return None
        checked = []
        for value in self.sweep_values or sweep.values:
            try:
                point = RunConfig.model_validate({**base.model_dump(), sweep.field: value})
            except ValidationError as exc:
                raise ValueError(
                    f"sweep_values: {value:g} is no {sweep.field} for this config: {describe(exc)}"
                ) from None
            checked.append(getattr(point, sweep.field))
        return SweepPlan(self.preset or "", sweep.field, tuple(checked))

    @staticmethod
    def _with_mnist_dir(config: RunConfig, mnist_dir: str | None) -> RunConfig:
        values = config.model_dump(exclude=_NOT_CONFIG)
        if config.dataset == "mnist":
            if mnist_dir is None:
                raise ValueError(
                    "dataset: 'mnist' is not available on this server "
                    "(start it with COVSHIFT_MNIST_DIR set to the IDX files' directory)"
                )
            values["data_dir"] = mnist_dir
        return RunConfig.model_validate(values)


# RunRequest's fields that are not RunConfig's (data_dir is the server's to set).
_NOT_CONFIG = {"data_dir", "preset", "sweep_values"}


class RunPatch(JsonTypes):
    """PATCH /api/runs/{id}: live controls; each takes effect at the run's next step."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"lr": 0.1},
                {"batch_size": 16, "bn_momentum": None},
                {"paused": True},
            ]
        },
    )

    lr: LearningRate | None = None
    batch_size: BatchSize | None = None
    bn_momentum: BnMomentum = Field(
        default=None, description="null means the cumulative average; leave it out to keep it"
    )
    paused: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (an explicit null only means something for bn_momentum)."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name in RunPatch.model_fields
            and (name == "bn_momentum" or getattr(self, name) is not None)
        }


ClientId = str | int | None


class ControlMessage(RunPatch):
    """Websocket: {"type": "control", "id": ..., <RunPatch fields>, "step": true}."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "control", "id": 7, "lr": 0.05}]}
    )

    type: Literal["control"]
    id: ClientId = Field(default=None, description="echoed in the ack or error")
    step: bool = Field(default=False, description="take one training step (paused runs only)")

    def changes(self) -> dict[str, Any]:
        changes = super().changes()
        if self.step:
            changes["step"] = True
        return changes
