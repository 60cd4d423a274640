"""The project's user-facing error types, at the ground floor so that every layer can raise them."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration; the message names file, field and problem."""
