"""The web layer: the FastAPI app, its HTTP routes and websocket, security, the run manager,
fan-out to clients, bounded history and the run store on disk.

It never imports torch: it may import the top-level modules, `covshift.runtime` (to start
and talk to workers) and `covshift.reports` (to render exports), never `covshift.train`.
A test checks both in a fresh interpreter.
"""
