"""Where the plugin reaches into Errbot's storage: here only, checked by ``tests/test_seams.py``."""

from __future__ import annotations

from typing import Any


def storage_backend(plugin: Any) -> Any:
    """The storage object Errbot opened for a plugin (``StoreMixin._store``): the storage plugin's own
    (SQLite, DynamoDB), whose compare-and-set, lease and once API the ports use."""
    return plugin._store


__all__ = ["storage_backend"]
