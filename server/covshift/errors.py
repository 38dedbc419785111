"""Errors a user can cause and fix, each carrying a message meant to be shown as is."""

from __future__ import annotations


class CovshiftError(Exception):
    """Base for errors whose message is for the user, not a traceback."""


class DataError(CovshiftError):
    """A dataset cannot be loaded: missing, malformed or unknown."""


class ConfigError(CovshiftError):
    """A setting is valid alone but not with the rest (e.g. a batch larger than the data)."""
