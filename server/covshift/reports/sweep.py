"""The report of a sweep: final accuracy and loss against the swept value, batch-statistic noise."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from covshift.presets import PRESETS
from covshift.wire import MISFIT, Json

from .page import Figure, config_text, figure, line, page, table, variant_color
from .run import DamagedRun, NoDataYet


def render_sweep_report(result: dict[str, Json], title: str | None = None) -> str:
    """The report of a sweep (covshift.sweep.run_sweep's result)."""
    field, values = result["field"], result["values"]
    variants = list(result["config"]["variants"])
    figures = [_sweep_accuracy(result, variants), _sweep_loss(result, variants)]
    if any(
        "acc_population" in (p["variants"][v]["test"] or {})
        for p in result["points"]
        for v in variants
    ):
        figures.append(_inference_figure(result, variants))
    if field == "batch_size":
        figures.append(_noise_figure(result))
    header = [field, *variants]
    rows = [
        [str(p["value"]), *(_point_text(p["variants"][v]) for v in variants)]
        for p in result["points"]
    ]
    scale = result.get("scale")
    steps = f"{result['config']['steps']} steps" if not scale else "runs"
    intro = (
        f"{len(values)} {steps} on {result['dataset']['name']}, one per {field} in {values}"
        + (
            f", each over seeds {result['seeds']} (mean, error bars ± one std)"
            if "seeds" in result
            else ""
        )
        + "; "
        + config_text(result["config"], leave_out=field)
        + _scale_text(scale, field, result["config"])
        + _degeneracy_note(result, variants)
    )
    caption = "Final test accuracy (eval mode" + (
        ", mean ± std over seeds" if "seeds" in result else ""
    )
    return page(
        title or f"covshift {field} sweep",
        intro,
        figures,
        [table(caption + ") and status", header, rows)],
    )


def _scale_text(scale: dict[str, Json] | None, field: str, config: dict[str, Json]) -> str:
    """What a Scale derives, in words: "lr scales linearly with batch_size (0.3 at 32)"."""
    if not scale:
        return ""
    reference = scale["reference"]
    said = {"linear": "linearly with", "inverse": "inversely with"}
    parts = [
        f"{name} scales {said[how]} {field} ({config[name]} at {reference:g})"
        for name, how in scale["fields"].items()
    ]
    matched = (
        " (the same epochs at every point)" if scale["fields"].get("steps") == "inverse" else ""
    )
    return " " + "; ".join(parts) + matched + "."


def _degeneracy_note(result: dict[str, Json], variants: list[str]) -> str:
    """An MLP's BN at batch 2 is no noisy estimate but a sign function: say so where it shows."""
    config = result["config"]
    if (
        result["field"] != "batch_size"
        or config.get("arch", "mlp") != "mlp"
        or 2 not in result["values"]
        or "bn" not in variants
    ):
        return ""
    return (
        " At batch 2 an MLP's BN is degenerate: for two values x1, x2 of a unit, x̂ = ±(x1 − x2)/"
        "|x1 − x2| = ±1 (up to eps), so every unit passes on only the sign of x1 − x2. That "
        "collapse is not Wu & He's mechanism (noisy batch statistics); the conv-batch-sweep "
        "preset, whose BN pools over batch and positions, shows that one."
    )


def sweep_report_html(run_id: str, lines: Iterable[str]) -> str:
    """The report of a sweep the server ran, from its message lines (hello, a `point` per
    finished point, then the `sweep` result): the whole result once it has one, else the
    points finished so far (a running, stopped or failed sweep)."""
    hello: dict[str, Json] | None = None
    points: list[dict[str, Json]] = []
    whole: dict[str, Json] | None = None
    for text in lines:
        record = json.loads(text)
        kind = record.get("type")
        if kind == "hello":
            hello = record
        elif kind == "point":
            points.append(record)
        elif kind == "sweep":
            whole = record
    if whole is None and hello is None:
        raise NoDataYet(f"sweep {run_id} has no data yet (its worker is still loading)")
    try:
        result = whole if whole is not None else _so_far(hello or {}, points)
        preset = PRESETS.get(str(result.get("preset")))
        title = preset.title if preset is not None else f"covshift {result['field']} sweep"
        if whole is None:
            title += f" ({len(points)} of {len(result['values'])} points)"
        return render_sweep_report(result, title)
    except MISFIT:
        raise DamagedRun(f"sweep {run_id}: its records are damaged; no report") from None


def _so_far(hello: dict[str, Json], points: list[dict[str, Json]]) -> dict[str, Json]:
    """A sweep's result as far as its finished points go (run_sweep's shape)."""
    return {
        "type": "sweep",
        **{key: hello[key] for key in ("preset", "field", "values", "config", "dataset")},
        **({"scale": hello["scale"]} if "scale" in hello else {}),
        "points": [
            {"value": p["value"], "variants": p["variants"], "batch_noise": p["batch_noise"]}
            for p in points
        ],
    }


def _sweep_accuracy(result: dict[str, Json], variants: list[str]) -> Figure:
    """Accuracy per variant; over seeds with ± one std as error bars. plain, when there are
    normalizers beside it, is drawn dashed: the reference each normalizer is read against."""
    traces = []
    reference = len(variants) > 1
    for k, variant in enumerate(variants):
        xs, ys, spread, text, symbols = [], [], [], [], []
        for point in result["points"]:
            entry = point["variants"][variant]
            xs.append(point["value"])
            ys.append((entry["test"] or {}).get("acc"))
            spread.append((entry.get("test_std") or {}).get("acc"))
            text.append(entry["status"])
            symbols.append("circle" if entry["status"] == "trained" else "x")
        color = variant_color(variant, k)
        trace: Figure = {
            **line(xs, ys, variant, color),
            "mode": "lines+markers",
            "text": text,
            "marker": {"symbol": symbols, "size": 9},
        }
        if any(s is not None for s in spread):
            trace["error_y"] = {"type": "data", "array": spread, "visible": True}
        if variant == "plain" and reference:
            trace["name"] = "plain (no normalizer: the reference)"
            trace["line"] = {"color": color, "width": 2, "dash": "dash"}
        traces.append(trace)
    return figure(
        traces,
        "final test accuracy (x: diverged, blew up or skipped"
        + ("; bars: ± one std over seeds)" if "seeds" in result else ")"),
        result["field"],
        "accuracy",
        x_type="log",
    )


def _inference_figure(result: dict[str, Json], variants: list[str]) -> Figure:
    """Variants with running statistics: test accuracy three ways against the swept value."""
    traces = []
    for k, variant in enumerate(variants):
        tests = [p["variants"][variant]["test"] or {} for p in result["points"]]
        if not any("acc_population" in t for t in tests):
            continue
        for name, dash in (("acc", "solid"), ("acc_train_mode", "dash"), ("acc_population", "dot")):
            color = variant_color(variant, k)
            trace = line(result["values"], [t.get(name) for t in tests], f"{variant} {name}", color)
            traces.append({**trace, "line": {"color": color, "dash": dash}})
    return figure(
        traces,
        "test accuracy: eval mode (solid), train mode (dash), population statistics (dot)",
        result["field"],
        "accuracy",
        x_type="log",
    )


def _sweep_loss(result: dict[str, Json], variants: list[str]) -> Figure:
    traces = [
        {
            **line(
                [p["value"] for p in result["points"]],
                [p["variants"][v]["loss"] for p in result["points"]],
                v,
                variant_color(v, k),
            ),
            "mode": "lines+markers",
        }
        for k, v in enumerate(variants)
    ]
    return figure(
        traces,
        "last training loss (before divergence)",
        result["field"],
        "loss",
        x_type="log",
        y_type="log",
    )


def _noise_figure(result: dict[str, Json]) -> Figure:
    """Std of the first BN layer's batch mean across batches against 1/sqrt(B)."""
    traces = []
    sizes = [p["value"] for p in result["points"]]
    measured = dict.fromkeys(v for p in result["points"] for v in p["batch_noise"])
    for k, variant in enumerate(measured):
        for name, dash in (("mean", "solid"), ("var", "dot")):
            ys = [(p["batch_noise"].get(variant) or [{}])[0].get(name) for p in result["points"]]
            traces.append(
                {
                    **line(sizes, ys, f"{variant} batch {name}", variant_color(variant, k)),
                    "mode": "lines+markers",
                    "line": {"color": variant_color(variant, k), "dash": dash},
                }
            )
    traces.append(line(sizes, [1 / math.sqrt(max(b, 2)) for b in sizes], "1/sqrt(B)", "#000"))
    return figure(
        traces,
        "noise of the first layer's batch statistics: std across batches of the "
        "batch mean (in feature stds) and variance (in feature variances)",
        "batch size",
        "std across batches",
        x_type="log",
        y_type="log",
    )


def _point_text(entry: dict[str, Json]) -> str:
    acc = (entry["test"] or {}).get("acc")
    spread = (entry.get("test_std") or {}).get("acc")
    shown = "–" if acc is None else f"{acc:.3f}"
    if acc is not None and spread is not None:
        shown += f" ± {spread:.3f}"
    return shown if entry["status"] == "trained" else f"{shown} ({entry['status']})"
