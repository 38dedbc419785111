"""The process boundary: one spawned worker process per run and the typed messages through
its pipes.

`messages` and `handle` (the server's side) are torch-free; `worker` and `sweep_worker` (the
child's side: a run, or a sweep of short runs) import the training core lazily, inside the
spawned process only. May import the top-level modules and, from the workers,
`covshift.train`; never the web layer.
"""
