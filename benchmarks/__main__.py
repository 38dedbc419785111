"""`python -m benchmarks [--quick] [--runs N] [--soak [MINUTES]] [--only GROUP] [--json PATH]`:
print the figures as a table (medians over N runs), maybe save them."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from . import browser, core, own_process, server, soak, watch, wire

TARGETS = {
    ("throughput", "ratio_default"): (">=", 0.90),
    ("throughput", "ratio_every_step"): (">=", 0.75),
    ("probe_vs_tensorboard", "tensorboard_over_probe"): (">=", 10.0),
    ("probe_vs_tensorboard", "recorded_tensorboard_over_probe"): (">=", 15.0),
    ("wire", "page_frame_bytes"): ("<=", 8192.0),
    ("wire", "join_bytes"): ("<=", 2_000_000.0),
    ("ics", "extra_time"): ("<=", 0.15),
    ("end_to_end", "ratio"): (">=", 0.90),
    ("watch", "ratio"): (">=", 0.95),
    # The training thread's share of a frame (docs/watch.md "The cost"); the total CPU with
    # the writer thread's, tensorboard_over_watch_cpu, is reported without a target.
    ("watch_vs_tensorboard", "tensorboard_over_watch_wait"): (">=", 10.0),
    ("watch_memory", "rss_growth"): ("<=", 0.05),
    ("paper_fig1", "seconds"): ("<=", 180.0),
    ("server", "latency_p95_ms_1_clients"): ("<=", 50.0),
    ("server", "latency_p95_ms_50_clients"): ("<=", 100.0),
    ("server", "watched_50_over_headless"): (">=", 0.85),
    ("server", "run_start_s_ready_worker"): ("<=", 0.5),
    ("soak", "rss_growth"): ("<=", 0.10),
    ("soak", "queue_growth"): ("<=", 0.10),
    ("soak", "fast_client_disconnects"): ("<=", 0.0),
    ("browser", "serve_to_first_chart_s"): ("<=", 5.0),
    ("browser", "serve_to_lesson_s"): ("<=", 10.0),
    ("browser", "demo_unit_drift_ratio"): (">=", 3.0),
    ("browser", "main_thread_busy"): ("<=", 0.50),
    ("browser", "slowest_visible_chart_refreshes_per_s"): (">=", 2.0),
    ("browser", "tasks_over_50ms_after_first_render"): ("<=", 0.0),
    ("browser", "control_ack_p95_ms"): ("<=", 100.0),
    ("browser", "join_bytes"): ("<=", 2_000_000.0),
    ("browser", "join_to_first_screen_s"): ("<=", 2.0),
    ("browser", "main_thread_busy_cpu4x"): ("<=", 0.50),
    ("browser", "tasks_over_50ms_cpu4x"): ("<=", 0.0),
    ("browser", "control_ack_p95_ms_cpu4x"): ("<=", 100.0),
    ("browser", "slowest_visible_chart_refreshes_per_s_cpu4x"): (">=", 1.0),
}


GROUPS = ("core", "wire", "watch", "server", "browser", "soak")
FULL_SOAK_MINUTES = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for CI)")
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=FULL_SOAK_MINUTES,
        metavar="MINUTES",
        help="server memory and client queues over MINUTES "
        f"(no number: {FULL_SOAK_MINUTES:g}; full runs soak {FULL_SOAK_MINUTES:g} "
        "minutes unless told, --quick runs only when told; 0: no soak)",
    )
    parser.add_argument("--only", choices=GROUPS, action="append", help="run only this group")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run the timed groups N times and report each figure's median (the soak runs once)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs: must be at least 1")
    groups = set(args.only or GROUPS)
    soak_minutes = args.soak if args.soak is not None else (0 if args.quick else FULL_SOAK_MINUTES)
    samples = [_timed_groups(groups, args.quick) for _ in range(args.runs)]
    results = _medians(samples)
    timeline: list[dict[str, object]] = []
    if "soak" in groups and soak_minutes > 0:
        results["soak"], timeline = soak.run_soak(soak_minutes)
    runs = f", median of {args.runs} runs" if args.runs > 1 else ""
    print(
        f"covshift benchmarks ({'quick' if args.quick else 'full'}: {', '.join(results)}{runs}); "
        f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} thread(s); "
        f"covshift's processes run {own_process.numpy_kernels()}"
    )
    print(f"{'group':<22} {'figure':<32} {'value':>12}  target")
    for group, figures in results.items():
        for name, value in figures.items():
            target = TARGETS.get((group, name))
            verdict = ""
            if target:
                op, bound = target
                met = value >= bound if op == ">=" else value <= bound
                verdict = f"{op} {bound:g}  {'met' if met else 'NOT MET'}"
            print(f"{group:<22} {name:<32} {value:>12.3f}  {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        saved: dict[str, object] = dict(results)
        if args.runs > 1:
            saved["runs"] = samples
        if timeline:
            saved["soak_timeline"] = timeline
        args.json.write_text(json.dumps(saved, indent=2) + "\n")
    return 0


def _timed_groups(groups: set[str], quick: bool) -> dict[str, dict[str, float]]:
    # The core group measures covshift's training, probes and frames: in a process set up
    # as `covshift run`'s. The server and browser groups start servers whose workers are
    # set up so; the watch group measures in this one, as a user's own process.
    results: dict[str, dict[str, float]] = {}
    if "core" in groups:
        results.update(own_process.call(core.run_all, quick))
    if "wire" in groups:
        results["wire"] = wire.run_wire_benchmark(quick)
    if "watch" in groups:
        results.update(watch.run_watch_benchmark(quick))
    if "server" in groups:
        results["server"] = server.run_server_benchmark(quick)
    if "browser" in groups:
        results["browser"] = browser.run_browser_benchmark(quick)
    return results


def _medians(samples: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each figure's median over the runs (one run: its figures)."""
    return {
        group: {
            name: statistics.median(sample[group][name] for sample in samples) for name in figures
        }
        for group, figures in samples[0].items()
    }


if __name__ == "__main__":
    raise SystemExit(main())
