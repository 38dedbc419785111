"""The process boundary: one spawned worker process per run (`handle.ReadyWorker` keeps one
loaded ahead of the next run) and the typed messages through its pipes.

`messages` and `handle` (the server's side) are torch-free; `process` (the child's entry
point), `worker` and `sweep_worker` (a run, or a sweep of short runs) import the training
core lazily, inside the spawned process only; `cpu` chooses NumPy's kernels for covshift's
own processes (the `covshift` command's too) before NumPy loads. May import the top-level
modules and, from the workers, `covshift.train`; never the web layer.
"""
