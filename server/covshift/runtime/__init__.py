"""The process boundary: one spawned worker process per run and the typed messages through
its pipes.

`messages` and `handle` (the server's side) are torch-free; `worker` (the child's side)
imports the training core lazily, inside the spawned process only. May import the
top-level modules and, from the worker, `covshift.train`; never the web layer.
"""
