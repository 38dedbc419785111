"""The entry point of every worker process: load the training core first, then run the job
the server sends (worker.py: a run; sweep_worker.py: a sweep).

Loading takes ~2 s of a core (PyTorch, then the compiler stack torch.optim loads with its
first optimizer), ~1 s more for a dataset scikit-learn makes. A process started before its
run is known (handle.ReadyWorker) has done it by the time it is given one, so the run
trains at once.
"""

from __future__ import annotations

import contextlib
import signal
from multiprocessing.connection import Connection

from .cpu import prefer_avx2_numpy
from .messages import Job
from .sweep_worker import sweep_main
from .worker import steady_allocator, worker_main


def process_main(commands: Connection, outputs: Connection) -> None:
    """Entry point of the spawned process: the first message on `commands` is its Job."""
    # For a server started otherwise than by `covshift serve`. Too late (nothing set) where
    # the server's main script loads NumPy as it is imported: spawn imports it here first.
    prefer_avx2_numpy()
    # Ctrl+C in a terminal reaches the whole process group: the server decides when a run
    # stops (and records it), so the worker leaves SIGINT to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    steady_allocator()
    preload(commands)
    # End of file before a job: the server ended (or let go of) this worker unused.
    with contextlib.suppress(EOFError, ConnectionResetError):
        job: Job = commands.recv()
        if job.sweep is None:
            worker_main(job.config_json, commands, outputs, job.memory_limit_mb)
        else:
            sweep_main(job.config_json, job.sweep, commands, outputs, job.memory_limit_mb)


def preload(commands: Connection) -> None:
    """What a run loads before its first step, loaded ahead of it: what every run needs,
    then, while no job has come, scikit-learn's datasets (digits, the default; moons)."""
    import torch

    from covshift.train import trainer  # noqa: F401  (the training core and its imports)

    # The first optimizer of a process imports torch._dynamo (~1 s); the run's would too.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    if not commands.poll():  # ~1 s more, which a job waiting now (the demo's) goes without
        import sklearn.datasets  # noqa: F401
