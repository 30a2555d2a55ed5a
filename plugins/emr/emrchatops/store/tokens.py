"""The STS token in Errbot's persistent plugin storage: the service's TokenStore port."""

from __future__ import annotations

import threading

from emrchatops.app.ports import Storage, Token


class StoredToken:
    """The STS token in the plugin's persistent storage under *key* (a token store of :mod:`emrchatops.aws.crossaccount`)."""

    def __init__(self, storage: Storage, key: str) -> None:
        self._storage = storage
        self._key = key
        # Its own lock, never the state lock: save() runs inside botocore's
        # credential refresh lock, and a command holding the state lock (terminate)
        # may be waiting for that refresh lock — sharing one lock would deadlock.
        self._lock = threading.Lock()

    def load(self) -> Token | None:
        token: Token | None = self._storage.get(self._key)
        return token

    def save(self, token: Token | None) -> None:
        with self._lock:
            if token is None:
                if self._key in self._storage:
                    del self._storage[self._key]
            else:
                self._storage[self._key] = token


__all__ = ["StoredToken"]
