"""Reports: self-contained HTML pages of a run or a sweep and the CSV export, all rendered
from wire records (hello, frames, events).

Torch-free. May import the top-level modules (wire, errors, config); never the training
core, the runtime or the web layer.
"""
