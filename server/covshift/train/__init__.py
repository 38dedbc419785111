"""The training core: datasets, the networks and their normalizers, hooks and probes, the
lockstep trainer, test-time statistics, gradient ICS and sweeps.

Everything that imports torch lives here. It may import torch, NumPy, the standard
library and covshift's top-level modules (config, errors, wire); never the web layer,
the worker runtime or the reports.
"""
