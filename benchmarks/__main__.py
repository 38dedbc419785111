"""`python -m benchmarks [--quick] [--json PATH]`: print the figures as a table, maybe save them."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from . import browser, core, server

TARGETS = {
    ("throughput", "ratio_default"): (">=", 0.90),
    ("throughput", "ratio_every_step"): (">=", 0.75),
    ("probe_vs_tensorboard", "tensorboard_over_probe"): (">=", 10.0),
    ("ics", "extra_time"): ("<=", 0.15),
    ("paper_fig1", "seconds"): ("<=", 180.0),
    ("server", "latency_p95_ms_1_clients"): ("<=", 50.0),
    ("server", "latency_p95_ms_50_clients"): ("<=", 100.0),
    ("server", "watched_50_over_headless"): (">=", 0.85),
    ("server", "rss_growth"): ("<=", 0.10),
    ("browser", "serve_to_first_chart_s"): ("<=", 5.0),
    ("browser", "main_thread_busy"): ("<=", 0.50),
    ("browser", "slowest_visible_chart_refreshes_per_s"): (">=", 2.0),
    ("browser", "tasks_over_50ms_after_first_render"): ("<=", 0.0),
    ("browser", "control_ack_p95_ms"): ("<=", 100.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for CI)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    results = core.run_all(args.quick)
    results["server"] = server.run_server_benchmark(args.quick)
    results["browser"] = browser.run_browser_benchmark(args.quick)
    print(
        f"covshift benchmarks ({'quick' if args.quick else 'full'}); torch {torch.__version__}, "
        f"{platform.machine()}, {torch.get_num_threads()} thread(s)"
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
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
