"""GET /api/rules: every bound, default, choice, preset, variant and lesson the page needs, from
the one place each is declared (the config model, the presets, the variant and lesson registries).

The page holds no copy of these: it fetches them once at start, so a bound changed on the
server is the bound the page enforces.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from covshift.config import RunConfig
from covshift.lessons import lesson_table
from covshift.presets import PRESETS
from covshift.variants import variant_table

from .schemas import MAX_SWEEP_POINTS, RunPatch

router = APIRouter(tags=["rules"])

# Seconds a whole sweep of each preset took at the preset's own settings, measured with
# `covshift run --preset NAME` (one torch thread) on a 2-core machine that other jobs were
# also using (conv-batch-sweep: one seed at its 30 epochs, 102 s): the page scales them to
# the steps and points asked for, an estimate only.
MEASURED_SWEEP_S = {"batch-sweep": 221.0, "lr-sweep": 38.0, "conv-batch-sweep": 102.0}


class Bound(BaseModel):
    """A numeric field's interval; minOpen/maxOpen mark strict bounds."""

    min: float | None = None
    minOpen: bool = False
    max: float | None = None
    maxOpen: bool = False
    integer: bool = False
    nullable: bool = False


class Rules(BaseModel):
    """What the page checks and offers; the server validates every request again."""

    bounds: dict[str, Bound]
    defaults: dict[str, Any]
    choices: dict[str, list[str]]
    presets: dict[str, dict[str, Any]]
    variants: dict[str, dict[str, Any]]
    live_controls: list[str]
    # The sweep presets (POST /api/runs starts one as a sweep): name -> title, description,
    # values (a config), field, sweep_values, max_points and measured_s (MEASURED_SWEEP_S).
    sweeps: dict[str, dict[str, Any]]
    # In the order of the concept notes; each lesson's "values" is a config to POST /api/runs.
    lessons: list[dict[str, Any]]


def _numeric(schema: dict[str, Any]) -> Bound | None:
    """The bound of one field's JSON schema (an X | None field is nullable)."""
    options = schema.get("anyOf", [schema])
    nullable = any(option.get("type") == "null" for option in options)
    for option in options:
        if option.get("type") not in ("integer", "number"):
            continue
        bound = Bound(integer=option["type"] == "integer", nullable=nullable)
        if "exclusiveMinimum" in option:
            bound.min, bound.minOpen = option["exclusiveMinimum"], True
        elif "minimum" in option:
            bound.min = option["minimum"]
        if "exclusiveMaximum" in option:
            bound.max, bound.maxOpen = option["exclusiveMaximum"], True
        elif "maximum" in option:
            bound.max = option["maximum"]
        return bound
    return None


def _choices(schema: dict[str, Any]) -> list[str] | None:
    for option in schema.get("anyOf", [schema]):
        target = option.get("items", option)
        if "enum" in target:
            return [str(value) for value in target["enum"]]
    return None


@functools.cache
def rules() -> Rules:
    """Built once: everything in it is fixed when the server starts."""
    properties = RunConfig.model_json_schema()["properties"]
    bounds = {name: b for name, schema in properties.items() if (b := _numeric(schema))}
    choices = {name: c for name, schema in properties.items() if (c := _choices(schema))}
    return Rules(
        bounds=bounds,
        defaults=RunConfig.model_validate({}).model_dump(mode="json", exclude={"data_dir"}),
        choices=choices,
        presets={
            name: {"title": p.title, "description": p.description, "values": p.values}
            for name, p in PRESETS.items()
            if p.sweep is None  # sweeps are listed under `sweeps`
        },
        variants=variant_table(),
        live_controls=[name for name in RunPatch.model_fields if name != "paused"],
        sweeps={
            name: {
                "title": p.title,
                "description": p.description,
                "values": p.values,
                "field": p.sweep.field,
                "sweep_values": list(p.sweep.values),
                "max_points": MAX_SWEEP_POINTS,
                "measured_s": MEASURED_SWEEP_S.get(name),
            }
            for name, p in PRESETS.items()
            if p.sweep is not None
        },
        lessons=lesson_table(),
    )


@router.get("/api/rules", response_model=Rules)
async def get_rules() -> Rules:
    return rules()
