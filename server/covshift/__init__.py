"""covshift: watch what normalization does inside a network, live."""

__version__ = "0.1.0"
