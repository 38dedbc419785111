"""The `covshift` command line: flags built from the run config, so help and bounds never drift."""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from covshift.web.serve import add_serve_flags, serve

from . import __version__
from .config import BATCH_SIZE_ONE_REASON, RunConfig, describe
from .errors import CovshiftError
from .presets import PRESETS, dataset_note, preset_config
from .runtime.cpu import prefer_avx2_numpy
from .wire import Json

# Fields whose command-line spelling differs from a plain value.
LIST_FIELDS = {"variants"}
# The dashboard's slow motion: a headless run ignores it, so `covshift run` offers no flag.
LIVE_ONLY_FIELDS = {"steps_per_s"}
CUMULATIVE = "cumulative"


def _choices(annotation: Any) -> list[str]:
    """Literal options of a field (also inside tuple[...] or X | None)."""
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found += _choices(arg)
    if typing.get_origin(annotation) is typing.Literal:
        found = [str(a) for a in typing.get_args(annotation)]
    return found


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run config (validated; bounds in brackets)")
    for name, field in RunConfig.model_fields.items():
        if name in LIVE_ONLY_FIELDS:
            continue
        bounds = [
            f"{key} {getattr(meta, key)}"
            for meta in field.metadata
            for key in ("ge", "gt", "le", "lt")
            if getattr(meta, key, None) is not None
        ]
        parts = [field.description or name.replace("_", " ")]
        choices = _choices(field.annotation)
        if choices:
            parts.append(
                "one of "
                + ", ".join(choices)
                + (" (comma-separated)" if name in LIST_FIELDS else "")
            )
        if bounds:
            parts.append("[" + ", ".join(bounds) + "]")
        default = field.default
        if name == "bn_momentum":
            parts.append(f"or '{CUMULATIVE}'")
        shown = ",".join(default) if isinstance(default, tuple) else default
        parts.append(f"(default: {shown})")
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, metavar=name.upper(), help="; ".join(parts)
        )


def _config_from(args: argparse.Namespace) -> RunConfig:
    values: dict[str, Any] = {}
    for name in RunConfig.model_fields:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        if name in LIST_FIELDS:
            values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        elif name == "bn_momentum" and raw.lower() == CUMULATIVE:
            values[name] = None
        elif name == "schedule":  # a JSON list; anything else is refused naming the field
            try:
                values[name] = json.loads(raw)
            except ValueError:
                values[name] = raw
        else:
            values[name] = raw
    if getattr(args, "preset", None):
        return preset_config(args.preset, values)  # explicit flags override the preset
    return RunConfig.model_validate(values)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.drawn = 0.0

    def __call__(self, step: int, total: int, variants: dict[str, Json]) -> None:
        now = time.perf_counter()
        if now - self.drawn < 0.1 and step < total:
            return
        self.drawn = now
        width = 24
        filled = int(width * step / total)
        rate = step / max(now - self.started, 1e-9)
        tests = "  ".join(
            f"{name} {v['test']['acc']:.1%}"
            for name, v in variants.items()
            if v["test"] and v["test"]["acc"] is not None
        )
        left = (total - step) / rate if rate > 0 else 0.0
        eta = f"ETA {int(left // 60)}:{int(left % 60):02d}" if step < total else "done"
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {step}/{total} {rate:,.0f} steps/s {eta}"
        if tests:
            line += f"  test accuracy: {tests}"
        sys.stderr.write(f"\r{line}\033[K")
        if step >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _seed_list(text: str) -> tuple[int, ...]:
    """--seeds: distinct non-negative integers, comma-separated, each a valid config seed."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError("give one or more distinct seeds, e.g. 0,1,2")
    for seed in seeds:
        try:
            RunConfig.model_validate({"seed": seed})  # its bounds live in the config
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(describe(exc)) from None
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covshift",
        description="Watch internal covariate shift: train networks with and without "
        "normalization side by side and see every layer's distributions.",
    )
    parser.add_argument("--version", action="version", version=f"covshift {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="train headless and write frames.jsonl, summary.json and report.html",
        description="Train every variant in lockstep to --steps and write OUT/frames.jsonl "
        "(one JSON record per line: hello, frames, events; see docs/protocol.md), "
        "OUT/summary.json (final metrics per variant) and OUT/report.html (figures and "
        "numbers, opens offline). A sweep preset writes its points to OUT/summary.json.",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("covshift-run"),
        help="output directory (default: covshift-run)",
    )
    run.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary on stdout"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1, fastest for small MLPs)",
    )
    run.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="a named experiment; flags given explicitly override its values. "
        + "; ".join(f"{name}: {preset.title}" for name, preset in PRESETS.items()),
    )
    run.add_argument(
        "--seeds",
        type=_seed_list,
        default=(),
        metavar="S,S,...",
        help="sweep presets only: run every point once per seed and report the mean and "
        "spread over them, e.g. 0,1,2 (default: the one --seed)",
    )
    _add_config_flags(run)
    serve_parser = commands.add_parser(
        "serve",
        help="start the dashboard server (the default command)",
        description="Serve the dashboard and its API, train runs in worker processes and "
        "stream them over websockets. Every flag is also a COVSHIFT_* environment variable "
        "(e.g. COVSHIFT_PORT); flags win.",
    )
    add_serve_flags(serve_parser)
    doctor = commands.add_parser(
        "doctor",
        help="diagnose a finished or live run's normalization (docs/doctor.md)",
        description="Read RUN_DIR/frames.jsonl and list what looks wrong with each variant's "
        "normalization (train/eval gap, stale running statistics, noisy batch statistics, "
        "dead or saturated layers), each with its numbers and the fix. Exit code 0 whether or "
        "not problems are found, 2 when the file is missing or damaged.",
    )
    doctor.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a folder holding frames.jsonl"
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def _default_to_serve(argv: list[str]) -> list[str]:
    """`covshift` and `covshift --port 9000` mean `covshift serve ...`."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["serve", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command's own process (not a caller's), before NumPy loads
        prefer_avx2_numpy()
    parser = build_parser()
    args = parser.parse_args(_default_to_serve(sys.argv[1:] if argv is None else argv))
    if args.command == "serve":
        return serve(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command != "run":
        parser.print_help()
        return 0
    # The training core (and torch) is imported for `run` only: `serve` never needs it.
    import torch

    from .headless import run_headless

    try:
        config = _config_from(args)
        torch.set_num_threads(max(1, args.threads))
        for variant in config.variants:
            if variant not in config.trainable_at(config.batch_size):
                print(
                    f"covshift run: note: {variant} is skipped. {BATCH_SIZE_ONE_REASON}",
                    file=sys.stderr,
                )
        progress = ProgressBar() if not args.quiet and sys.stderr.isatty() else None
        if args.seeds and not args.preset:
            raise CovshiftError("--seeds: only for sweep presets (--preset); use --seed")
        if args.preset:
            summary = _run_preset(args, config, progress)
        else:
            summary = run_headless(config, args.out, progress)
    except ValidationError as exc:
        print(f"covshift run: error: {describe(exc)}", file=sys.stderr)
        return 2
    except CovshiftError as exc:
        print(f"covshift run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("covshift run: interrupted", file=sys.stderr)
        return 130
    if not args.quiet and summary.get("type") == "sweep":
        print(f"wrote {args.out / 'summary.json'} and {args.out / 'report.html'}")
    elif not args.quiet:
        print(
            json.dumps(
                {
                    v: {"test": s["test"], "status": s["status"]}
                    for v, s in summary["variants"].items()
                },
                indent=2,
            )
        )
        print(
            f"wrote {args.out / 'frames.jsonl'}, {args.out / 'summary.json'} "
            f"and {args.out / 'report.html'}"
        )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    # Torch-free: diagnosing a stored run reads its records only.
    from .reports.doctor import diagnose
    from .reports.doctor_text import render_text
    from .reports.runfile import read_run

    try:
        hello, records = read_run(args.run_dir)
        findings = diagnose(hello, records)
    except CovshiftError as exc:
        print(f"covshift doctor: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        found = [finding.to_json() for finding in findings]
        print(json.dumps({"run": str(args.run_dir), "findings": found}, indent=2))
    else:
        print(render_text(findings, hello, str(args.run_dir)), end="")
    return 0


def _run_preset(
    args: argparse.Namespace, config: RunConfig, progress: ProgressBar | None
) -> dict[str, Json]:
    from .headless import run_preset

    if args.preset == "paper-fig1":
        print(f"covshift run: paper-fig1 trains {dataset_note(config)}", file=sys.stderr)

    def point_done(done: int, total: int, point: dict[str, Json]) -> None:
        accuracies = ", ".join(
            f"{v} {r['test']['acc']:.3f}" if r["test"] and r["test"]["acc"] is not None else v
            for v, r in point["variants"].items()
        )
        print(f"covshift run: {done}/{total} {point['value']}: {accuracies}", file=sys.stderr)

    return run_preset(
        args.preset, config, args.out, progress, None if args.quiet else point_done, args.seeds
    )


if __name__ == "__main__":
    sys.exit(main())
