"""Durable SQLite storage plugin for Errbot (``STORAGE = "SQLite"``).

Why this exists
---------------
Errbot's default storage, ``Shelf``, is :mod:`shelve` on top of :mod:`dbm`. On a Python built
without gdbm/ndbm (this project's runtime: ``import dbm.gnu`` fails) :mod:`dbm` silently falls
back to :mod:`dbm.dumb`. dbm.dumb keeps its key -> offset index in memory and rewrites the
``.dir`` index file only on ``sync()``/``close()``. An update whose new pickle no longer fits in
the old slot is appended to the ``.dat`` file, but the index entry that points at it only lives
in memory: if the bot is ``kill -9``-ed (OOM killer, a container stop that times out, a crashed
host) before it closes the shelf, the update is gone and the bot silently reverts to the old
value -- after it already told the user "done". An in-place update of a different length can
also leave the key unreadable (the stale index has the old length). A clean stop closes (and so
saves) the shelves; a SIGKILL gives it no chance to. bench/storage_kill.py measures both.

What this plugin guarantees
---------------------------
* One SQLite database per namespace: ``<basedir>/<namespace>.sqlite3`` (``basedir`` from
  ``STORAGE_CONFIG``, else ``BOT_DATA_DIR``), created owner-only (0600); the ``-wal``/``-shm``
  side files are tightened to 0600 as well.
* WAL journal, ``synchronous=FULL``, autocommit: every ``set``/``remove`` is its own committed
  (and fsynced) transaction before it returns, so an acknowledged write survives ``kill -9``
  (and, the WAL being fsynced, an OS crash); a write interrupted half-way is rolled back by
  SQLite on the next open instead of corrupting the file.
* Values are pickled (protocol 5) like Shelf does, so any value errbot could store before can
  be stored now; keys are ``str``.
* Errbot calls storage from its command thread pool and from poller threads: the connection is
  shared (``check_same_thread=False``) and every statement runs under a :class:`threading.Lock`;
  a ``busy_timeout`` covers a second process (e.g. a backup script) holding the write lock.
* Besides Errbot's API, the same compare-and-set, lease and once API as ``storage/dynamodb.py``
  (DESIGN §18), so the plugin's ports rely on one API on either backend: every value carries a
  revision (``rev`` column; 1, 2, 3 …, 0 means absent), :meth:`SQLiteStorage.set_versioned`
  writes only over the revision it read (else :class:`Conflict`), optionally fenced by a lease
  (``lease`` table: owner, expiry, fencing counter; else :class:`LeaseLost`), and
  :meth:`SQLiteStorage.put_if_absent` records an id once until it expires (``once`` table). Each
  of these is one ``BEGIN IMMEDIATE`` transaction, so it holds across connections and processes
  on the same file too. Time is passed in (``now``): nothing here reads a clock.

Bot config::

    BOT_EXTRA_STORAGE_PLUGINS_DIR = "/path/to/emr-chatops/storage"
    STORAGE = "SQLite"
    # optional: STORAGE_CONFIG = {"basedir": "/var/lib/errbot", "busy_timeout": 30.0}
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

# errbot ships no type information: under ``mypy --ignore-missing-imports`` these are ``Any``.
from errbot.storage import StoreNotOpenError
from errbot.storage.base import StorageBase, StoragePluginBase

log = logging.getLogger("errbot.storage.sqlite")

#: Pinned rather than ``pickle.HIGHEST_PROTOCOL`` so a database written by a newer Python stays
#: readable after a rollback to an older one (protocol 5 needs Python >= 3.8).
PICKLE_PROTOCOL: Final = 5
#: Seconds to wait for another connection's write lock before ``sqlite3.OperationalError``.
DEFAULT_BUSY_TIMEOUT: Final = 30.0
#: Database file name suffix; the namespace is the stem.
SUFFIX: Final = ".sqlite3"
#: Owner read/write only: the file holds pickles, which are only safe to load from a file that
#: nobody but the bot can write.
FILE_MODE: Final = stat.S_IRUSR | stat.S_IWUSR
#: SQLite side files of a WAL database (they live next to it while a connection is open).
WAL_SIDE_SUFFIXES: Final = ("-wal", "-shm")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, rev INTEGER NOT NULL DEFAULT 1)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expiry REAL NOT NULL,"
    " fencing INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS once (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, expires REAL NOT NULL)"
    " WITHOUT ROWID",
)
#: A database written before revisions existed (kv without ``rev``): its values start at revision 1.
_ADD_REVISIONS: Final = "ALTER TABLE kv ADD COLUMN rev INTEGER NOT NULL DEFAULT 1"


class Conflict(Exception):
    """The stored revision is not the one the write expected: re-read, re-decide, write again."""

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        found = "unknown" if actual is None else str(actual)
        super().__init__(f"storage key {key!r}: expected revision {expected}, found {found}")
        self.key, self.expected, self.actual = key, expected, actual


class LeaseLost(Exception):
    """A fenced write refused: the lease moved on (another owner, a new fencing counter) or expired.

    Not a :class:`Conflict`: re-reading does not help; the writer is no longer the one that acts.
    """


class Versioned(NamedTuple):
    value: Any
    revision: int  # >= 1 for a stored value


class Lease(NamedTuple):
    """A lease as stored: acquired by ``owner`` iff the returned lease names that owner."""

    name: str
    owner: str
    expiry: datetime  # aware, UTC
    fencing: int  # +1 on every change of owner


def _epoch(now: datetime) -> float:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime, not {now!r}")
    return now.timestamp()


def _create_private_file(path: Path) -> None:
    """Create ``path`` (if missing) with mode 0600 and tighten it to 0600 if it already exists.

    The file is created by ``os.open(..., 0o600)`` *before* SQLite opens it, rather than by
    changing the umask, because the umask is process-wide and errbot runs other threads that
    create files. SQLite then creates its ``-wal``/``-shm`` files with the database's mode.
    A wider file owned by another user fails here with ``PermissionError`` rather than being
    used: a file others can write is exactly one we must not unpickle from.
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _tighten_side_files(path: Path) -> None:
    """chmod the WAL side files to 0600 in case an older or foreign process created them wider."""
    for suffix in WAL_SIDE_SUFFIXES:
        side = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(side.stat().st_mode) != FILE_MODE:
                side.chmod(FILE_MODE)
        except FileNotFoundError:  # not created yet, or removed by another connection's close
            continue


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"storage keys must be str, not {type(key).__name__}")


def namespace_path(basedir: str | os.PathLike[str], namespace: str) -> Path:
    """Database file for ``namespace``; rejects names that would escape ``basedir``."""
    if (
        not namespace
        or namespace in {".", ".."}
        or "\0" in namespace
        or os.sep in namespace
        or (os.altsep is not None and os.altsep in namespace)
    ):
        raise ValueError(f"invalid storage namespace {namespace!r}")
    return Path(basedir) / f"{namespace}{SUFFIX}"


class SQLiteStorage(StorageBase):  # type: ignore[misc]  # errbot is untyped: StorageBase is Any
    """One namespace of errbot storage in its own SQLite database.

    Each :meth:`set` and :meth:`remove` is committed (WAL + ``synchronous=FULL``) before it
    returns -- the property dbm.dumb lacks. Safe to share between threads: one connection,
    every statement under one lock.

    There is deliberately no ``__len__``: errbot's ``StoreMixin.is_open_storage`` tests the store
    object for truthiness, so an empty store must not be falsy.
    """

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        log.debug("Open SQLite storage %s", self.path)
        _create_private_file(self.path)
        # isolation_level=None: autocommit, so each statement is its own transaction and is
        # committed when execute() returns; there is never a pending transaction to lose.
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # errbot's thread pool and pollers share this connection
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                # e.g. a filesystem without shared memory; rollback journal + FULL is still durable.
                log.warning("SQLite storage %s: WAL unavailable, journal_mode is %s", self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")  # another connection may be creating or upgrading it too
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(kv)")}
                if "rev" not in columns:
                    conn.execute(_ADD_REVISIONS)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        _tighten_side_files(self.path)

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<{type(self).__name__} {str(self.path)!r} {state}>"

    Conflict = Conflict
    LeaseLost = LeaseLost

    def _connection(self) -> sqlite3.Connection:
        """The open connection; the caller must hold ``self._lock``."""
        if self._conn is None:
            raise StoreNotOpenError(f"SQLite storage {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any exception), under the lock.

        IMMEDIATE takes the database's write lock at once, so a read-decide-write inside it cannot
        interleave with another connection's (another thread's store, another process)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def get(self, key: str) -> Any:
        """Return the value stored for ``key``; ``KeyError`` if there is none."""
        _check_key(key)
        with self._lock:
            row = self._connection().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        # The database is the bot's own private 0600 file (see _create_private_file): only the
        # bot's user can write the pickles it loads here.
        return pickle.loads(row[0])  # noqa: S301

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; durable (committed and fsynced) when this returns."""
        _check_key(key)
        blob = pickle.dumps(value, protocol=PICKLE_PROTOCOL)  # outside the lock: may be slow
        with self._lock:
            self._connection().execute(
                "INSERT INTO kv (key, value, rev) VALUES (?, ?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, rev = kv.rev + 1",
                (key, blob),
            )

    def remove(self, key: str) -> None:
        """Delete ``key``; ``KeyError`` if there is none. Durable when this returns."""
        _check_key(key)
        with self._lock:
            deleted = self._connection().execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount
        if deleted == 0:
            raise KeyError(key)

    def len(self) -> int:
        """Number of keys."""
        with self._lock:
            (count,) = self._connection().execute("SELECT COUNT(*) FROM kv").fetchone()
        return int(count)

    def keys(self) -> list[str]:
        """A snapshot list of the keys (sorted), so callers may mutate the store while iterating."""
        with self._lock:
            rows = self._connection().execute("SELECT key FROM kv ORDER BY key").fetchall()
        return [str(key) for (key,) in rows]

    # -- compare-and-set, leases, once (the same API as storage/dynamodb.py) ---------------------

    def get_versioned(self, key: str) -> Versioned:
        """(value, revision) of *key*; ``KeyError`` if there is none."""
        _check_key(key)
        with self._lock:
            row = self._connection().execute("SELECT value, rev FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return Versioned(pickle.loads(row[0]), int(row[1]))  # noqa: S301 - the bot's own 0600 file

    def set_versioned(
        self, key: str, value: Any, expected_revision: int, *, fence: Lease | None = None, now: datetime | None = None
    ) -> int:
        """Write *value* if the stored revision is *expected_revision* (0: the key must be absent).

        Returns the new revision (``expected_revision + 1``); :class:`Conflict` if the stored
        revision is another one. With *fence* (a :class:`Lease` from :meth:`acquire_lease`) and
        *now*, also only while the lease still names ``fence.owner`` and ``fence.fencing`` and has
        not expired at *now*, else :class:`LeaseLost`. Nothing is written when either fails.
        """
        _check_key(key)
        if type(expected_revision) is not int or expected_revision < 0:
            raise ValueError(f"expected_revision must be an int >= 0, not {expected_revision!r}")
        if fence is not None and now is None:
            raise ValueError("a fenced write needs now")
        blob = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        with self._transaction() as conn:
            if fence is not None:
                assert now is not None
                row = conn.execute("SELECT owner, fencing, expiry FROM lease WHERE name = ?", (fence.name,)).fetchone()
                if row is None or (row[0], row[1]) != (fence.owner, fence.fencing) or row[2] <= _epoch(now):
                    raise LeaseLost(
                        f"lease {fence.name!r} moved on from {fence.owner!r} (fencing {fence.fencing}) or expired"
                    )
            row = conn.execute("SELECT rev FROM kv WHERE key = ?", (key,)).fetchone()
            actual = 0 if row is None else int(row[0])
            if actual != expected_revision:
                raise Conflict(key, expected_revision, actual)
            conn.execute("INSERT OR REPLACE INTO kv (key, value, rev) VALUES (?, ?, ?)", (key, blob, actual + 1))
        return expected_revision + 1

    def put_if_absent(self, key: str, value: Any, ttl_seconds: float, now: datetime) -> bool:
        """Record *key* (with *value*) for *ttl_seconds* from *now*: True if it was not recorded or had
        expired at *now*, False if it is recorded and live. Expired records are dropped meanwhile."""
        _check_key(key)
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0, not {ttl_seconds!r}")
        at = _epoch(now)
        blob = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        with self._transaction() as conn:
            row = conn.execute("SELECT expires FROM once WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > at:
                return False
            conn.execute("DELETE FROM once WHERE expires <= ?", (at,))
            conn.execute(
                "INSERT OR REPLACE INTO once (key, value, expires) VALUES (?, ?, ?)", (key, blob, at + ttl_seconds)
            )
        return True

    def acquire_lease(self, name: str, owner: str, seconds: float, now: datetime) -> Lease:
        """Take or renew lease *name* for *owner* until *now* + *seconds*.

        Succeeds when the lease is free, expired at *now*, or already *owner*'s (a renewal keeps
        the fencing counter); a change of owner adds 1 to it. Returns the lease as stored after
        the attempt: acquired iff ``lease.owner == owner``; otherwise it is the live holder's.
        """
        _check_key(name)
        if not isinstance(owner, str) or not owner:
            raise ValueError("a lease owner is a non-empty string")
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, not {seconds!r}")
        at = _epoch(now)
        with self._transaction() as conn:
            row = conn.execute("SELECT owner, expiry, fencing FROM lease WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > at:
                return Lease(name, row[0], datetime.fromtimestamp(row[1], UTC), int(row[2]))
            fencing = 1 if row is None else int(row[2]) + (row[0] != owner)
            conn.execute(
                "INSERT OR REPLACE INTO lease (name, owner, expiry, fencing) VALUES (?, ?, ?, ?)",
                (name, owner, at + seconds, fencing),
            )
        return Lease(name, owner, datetime.fromtimestamp(at + seconds, UTC), fencing)

    def release_lease(self, name: str, owner: str, now: datetime) -> None:
        """End *owner*'s lease at *now*; nothing happens if *owner* does not hold it. The fencing counter stays."""
        _check_key(name)
        at = _epoch(now)
        with self._lock:
            self._connection().execute(
                "UPDATE lease SET expiry = ? WHERE name = ? AND owner = ? AND expiry > ?", (at, name, owner, at)
            )

    def read_lease(self, name: str) -> Lease | None:
        """The lease as stored (possibly expired), or None if it was never taken."""
        _check_key(name)
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT owner, expiry, fencing FROM lease WHERE name = ?", (name,))
                .fetchone()
            )
        return None if row is None else Lease(name, row[0], datetime.fromtimestamp(row[1], UTC), int(row[2]))

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL into the main file). Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
                log.debug("Closed SQLite storage %s", self.path)


class SQLiteStoragePlugin(StoragePluginBase):  # type: ignore[misc]  # errbot is untyped: base is Any
    """Errbot storage plugin (``.plug`` Name ``SQLite``): a factory of :class:`SQLiteStorage`.

    Exists because Shelf on dbm.dumb loses acknowledged updates on ``kill -9`` (see module doc).
    ``STORAGE_CONFIG`` keys: ``basedir`` (default ``BOT_DATA_DIR``) and ``busy_timeout`` in
    seconds (default 30).
    """

    def __init__(self, bot_config: Any) -> None:
        super().__init__(bot_config)
        config: Mapping[str, Any] = self._storage_config or {}
        basedir = config.get("basedir") or bot_config.BOT_DATA_DIR
        self.basedir = Path(basedir)
        self.busy_timeout = float(config.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))

    def open(self, namespace: str) -> SQLiteStorage:
        """Open (creating if needed) the database of ``namespace``."""
        path = namespace_path(self.basedir, namespace)
        self.basedir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SQLiteStorage(path, busy_timeout=self.busy_timeout)
