"""The service's StateStore, PollerLease and Once ports on Errbot's persistent plugin storage.

Both storage plugins shipped in ``storage/`` (SQLite, DynamoDB) offer compare-and-set,
leases and once-only records beside Errbot's get/set (``get_versioned``, ``set_versioned``,
``acquire_lease``, ``release_lease``, ``put_if_absent``); the ports use them, so two
instances on one DynamoDB table never overwrite each other's holds, and only the lease's
holder acts on what the rules decide. Another Errbot storage (Memory, Shelf) has none of
them: :class:`MappingStateStore` then keeps the revision in this process, right for the one
process such a storage can serve, and no lease is needed.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime
from typing import Any

from emrchatops.app.ports import Conflict, Fence, LeaseLost, Storage

VERSIONED = ("get_versioned", "set_versioned", "acquire_lease", "release_lease", "put_if_absent")


def versioned(backend: Any) -> bool:
    """Whether an Errbot storage backend offers the compare-and-set, lease and once API."""
    return all(callable(getattr(backend, name, None)) for name in VERSIONED)


def shared(backend: Any) -> bool:
    """Whether other processes may write the storage (DynamoDB): the state is read afresh each time."""
    return bool(getattr(backend, "SHARED", False))


class VersionedStateStore:
    """One key of a storage backend with revisions (see module docstring)."""

    def __init__(self, backend: Any, key: str) -> None:
        self._backend = backend
        self._key = key
        self.shared = shared(backend)

    def load(self) -> tuple[Any, int]:
        try:
            value, revision = self._backend.get_versioned(self._key)
        except KeyError:
            return None, 0
        return value, int(revision)

    def save(self, data: Any, revision: int, fence: Fence | None, now: datetime) -> int:
        """Write over *revision*; with *fence* only while the lease still names its owner and counter
        (the storage reads a fence's ``name``, ``owner`` and ``fencing``: a :class:`Fence` is one)."""
        try:
            return int(self._backend.set_versioned(self._key, data, revision, fence=fence, now=now))
        except self._backend.Conflict as error:
            raise Conflict(str(error)) from None
        except self._backend.LeaseLost as error:
            raise LeaseLost(str(error)) from None


class MappingStateStore:
    """One key of a plain mapping storage, for the single process it can serve: the revision lives here."""

    shared = False

    def __init__(self, storage: Storage, key: str) -> None:
        self._storage = storage
        self._key = key
        self._revision = 0
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, int]:
        with self._lock:
            return self._storage.get(self._key), self._revision

    def save(self, data: Any, revision: int, fence: Fence | None, now: datetime) -> int:
        with self._lock:
            if revision != self._revision:
                raise Conflict(f"storage key {self._key!r}: expected revision {revision}, found {self._revision}")
            self._storage[self._key] = data
            self._revision += 1
            return self._revision


def owner_id() -> str:
    """This process, as a lease owner: host, pid and a random part (a restarted process is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StoredLease:
    """The poller's lease in the storage backend (owner, expiry, fencing counter; expiry compared here)."""

    def __init__(self, backend: Any, name: str, seconds: float, owner: str | None = None) -> None:
        self._backend = backend
        self.name = name
        self.seconds = seconds
        self.owner = owner or owner_id()

    def acquire(self, now: datetime) -> Fence | None:
        lease = self._backend.acquire_lease(self.name, self.owner, self.seconds, now)
        return Fence(self.name, self.owner, int(lease.fencing)) if lease.owner == self.owner else None

    def release(self, now: datetime) -> None:
        self._backend.release_lease(self.name, self.owner, now)


class StoredOnce:
    """Ids recorded with a conditional put, each live for *seconds* (expiry compared in code)."""

    def __init__(self, backend: Any, seconds: float) -> None:
        self._backend = backend
        self.seconds = seconds

    def first(self, key: str, now: datetime) -> bool:
        return bool(self._backend.put_if_absent(key, None, self.seconds, now))


__all__ = [
    "MappingStateStore",
    "StoredLease",
    "StoredOnce",
    "VersionedStateStore",
    "owner_id",
    "shared",
    "versioned",
]
