"""Tests of storage/sqlite.py, the durable SQLite storage plugin for errbot.

Why the plugin exists: errbot's default Shelf storage sits on dbm.dumb here (no gdbm), which
loses acknowledged updates when the bot is kill -9ed. These tests load the plugin the way errbot
does (by its .plug Name, through errbot's own loader), check the storage contract, the 0600 file
modes, thread safety, a real errbot bot running on it, and durability under 50 real SIGKILLs.
Offline and in temp dirs only.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from errbot.storage import StoreNotOpenError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._storage_writer import STORAGE_DIR, bot_config, kill_campaign, load_storage_plugin

PRIVATE = 0o600


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A typical umask, under which files are world-readable unless the plugin says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def plugin(tmp_path: Path) -> Any:
    """The plugin, found by its Name and instantiated by errbot's own loader (get_storage_plugin)."""
    return load_storage_plugin("SQLite", tmp_path)


@pytest.fixture
def store(plugin: Any) -> Iterator[Any]:
    opened = plugin.open("unit")
    try:
        yield opened
    finally:
        opened.close()


# --------------------------------------------------------------------------- 1. the contract


def test_errbot_loader_finds_the_plugin_by_name(plugin: Any, tmp_path: Path) -> None:
    assert type(plugin).__name__ == "SQLiteStoragePlugin"
    assert type(plugin).__module__ == "errbot.storage.sqlite"
    opened = plugin.open("core")
    try:
        assert (tmp_path / "core.sqlite3").is_file()
    finally:
        opened.close()


def test_get_set_remove_len_keys(store: Any) -> None:
    assert store.len() == 0
    assert list(store.keys()) == []
    with pytest.raises(KeyError):
        store.get("nope")
    with pytest.raises(KeyError):
        store.remove("nope")

    store.set("b", 1)
    store.set("a", "one")
    store.set("b", 2)  # overwrite
    assert store.get("a") == "one"
    assert store.get("b") == 2
    assert store.len() == 2
    assert sorted(store.keys()) == ["a", "b"]

    store.remove("a")
    with pytest.raises(KeyError):
        store.get("a")
    with pytest.raises(KeyError):
        store.remove("a")
    assert list(store.keys()) == ["b"]
    assert store.len() == 1

    store.set("", None)  # empty key and None value are legal, as with Shelf
    assert store.get("") is None
    assert store.len() == 2


def test_keys_are_str(store: Any) -> None:
    with pytest.raises(TypeError):
        store.set(1, "x")
    with pytest.raises(TypeError):
        store.get(b"x")


def test_rich_values_round_trip_and_persist(plugin: Any) -> None:
    value = {
        "nested": {"list": [1, 2.5, None, True, ("a", "tuple")], "set": {1, 2}, "deep": [[{"x": [1]}]]},
        "when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "when_cet": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=1))),
        "day": date(2024, 2, 29),
        "money": Decimal("1.10"),
        "bytes": b"\x00\xff",
        "unicode": "clusters ✓ — ünïcode",
        "big": "x" * 200_000,
    }
    first = plugin.open("rich")
    first.set("value", value)
    assert first.get("value") == value
    first.close()

    again = plugin.open("rich")
    try:
        assert again.get("value") == value
        assert again.keys() == ["value"]
    finally:
        again.close()


def test_values_are_pickled_with_protocol_4_or_later(store: Any) -> None:
    store.set("k", {"a": 1})
    raw = sqlite3.connect(store.path)
    try:
        (blob,) = raw.execute("SELECT value FROM kv WHERE key = 'k'").fetchone()
    finally:
        raw.close()
    assert blob[0] == 0x80  # PROTO opcode
    assert blob[1] >= 4


def test_wal_and_synchronous_full(store: Any) -> None:
    store.set("k", 1)
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    # synchronous is per connection: look at the plugin's own one.
    assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # 2 == FULL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert not store._conn.in_transaction  # autocommit: nothing is ever left pending


def test_close_then_use_raises_and_close_is_idempotent(plugin: Any) -> None:
    opened = plugin.open("closing")
    opened.set("k", 1)
    opened.close()
    operations: list[Callable[[], object]] = [
        lambda: opened.get("k"),
        lambda: opened.set("k", 2),
        lambda: opened.remove("k"),
        lambda: opened.len(),
        lambda: opened.keys(),
    ]
    for operation in operations:
        with pytest.raises(StoreNotOpenError):
            operation()
    opened.close()  # errbot guards double close, but it must not blow up either


def test_empty_store_is_truthy_for_errbot(store: Any) -> None:
    # errbot's StoreMixin.is_open_storage() tests `if self._store`: an empty store must not be falsy.
    assert store.len() == 0
    assert bool(store)


def test_namespaces_are_separate_files(plugin: Any, tmp_path: Path) -> None:
    one, two = plugin.open("one"), plugin.open("two")
    try:
        one.set("k", "from one")
        two.set("k", "from two")
        assert (one.get("k"), two.get("k")) == ("from one", "from two")
    finally:
        one.close()
        two.close()
    assert {p.name for p in tmp_path.glob("*.sqlite3")} == {"one.sqlite3", "two.sqlite3"}


@pytest.mark.parametrize("namespace", ["", ".", "..", "../escape", "a/b", "nul\0byte"])
def test_namespace_cannot_escape_basedir(plugin: Any, namespace: str) -> None:
    with pytest.raises(ValueError, match="invalid storage namespace"):
        plugin.open(namespace)


def test_storage_config_basedir_overrides_bot_data_dir(tmp_path: Path) -> None:
    from errbot.bootstrap import get_storage_plugin

    config = bot_config("SQLite", tmp_path / "data")
    config.STORAGE_CONFIG = {"basedir": str(tmp_path / "elsewhere" / "db"), "busy_timeout": 5}
    opened = get_storage_plugin(config).open("core")
    try:
        opened.set("k", 1)
    finally:
        opened.close()
    assert (tmp_path / "elsewhere" / "db" / "core.sqlite3").is_file()
    assert mode_of(tmp_path / "elsewhere" / "db") == 0o700  # created by the plugin, private
    assert not (tmp_path / "data").exists()


@settings(max_examples=40, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "remove", "reopen"]),
            st.sampled_from(["a", "b", "c", "ünï", ""]),
            st.recursive(
                st.none() | st.integers() | st.text(max_size=20) | st.datetimes(),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                max_leaves=8,
            ),
        ),
        max_size=25,
    )
)
def test_behaves_like_a_dict_across_reopens(operations: list[tuple[str, str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as basedir:
        sqlite_plugin = load_storage_plugin("SQLite", Path(basedir))
        opened = sqlite_plugin.open("model")
        model: dict[str, Any] = {}
        try:
            for operation, key, value in operations:
                if operation == "set":
                    opened.set(key, value)
                    model[key] = value
                elif operation == "remove":
                    if key in model:
                        opened.remove(key)
                        del model[key]
                    else:
                        with pytest.raises(KeyError):
                            opened.remove(key)
                else:
                    opened.close()
                    opened = sqlite_plugin.open("model")
                assert opened.len() == len(model)
            assert sorted(opened.keys()) == sorted(model)
            assert {key: opened.get(key) for key in model} == model
        finally:
            opened.close()


# --------------------------------------------------------------------------- 2. file modes


def test_database_and_wal_files_are_0600(plugin: Any, tmp_path: Path, umask_022: None) -> None:
    opened = plugin.open("secret")
    try:
        opened.set("token", "s3cr3t")
        db = tmp_path / "secret.sqlite3"
        wal, shm = tmp_path / "secret.sqlite3-wal", tmp_path / "secret.sqlite3-shm"
        assert wal.exists()
        assert shm.exists()  # WAL mode: both side files exist while the connection is open
        assert {p.name: mode_of(p) for p in (db, wal, shm)} == {
            "secret.sqlite3": PRIVATE,
            "secret.sqlite3-wal": PRIVATE,
            "secret.sqlite3-shm": PRIVATE,
        }
    finally:
        opened.close()
    assert mode_of(db) == PRIVATE


def test_existing_wide_files_are_tightened(plugin: Any, tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "wide.sqlite3"
    first = plugin.open("wide")
    first.set("k", 1)
    first.close()
    db.chmod(0o644)
    wal = tmp_path / "wide.sqlite3-wal"
    wal.touch(mode=0o644)  # e.g. left world-readable by an older tool
    wal.chmod(0o644)

    again = plugin.open("wide")
    try:
        assert again.get("k") == 1
        sides = [p for p in (wal, tmp_path / "wide.sqlite3-shm") if p.exists()]
        assert wal in sides
        assert {p.name: mode_of(p) for p in [db, *sides]} == {p.name: PRIVATE for p in [db, *sides]}
    finally:
        again.close()


def test_mode_is_0600_even_with_a_permissive_umask(plugin: Any, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        opened = plugin.open("umask0")
        opened.set("k", 1)
        try:
            files = sorted(tmp_path.glob("umask0.sqlite3*"))
            assert len(files) == 3
            assert {mode_of(p) for p in files} == {PRIVATE}
        finally:
            opened.close()
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- 3. threads


def test_twenty_threads_fifty_writes_each(store: Any) -> None:
    threads_n, writes_n = 20, 50
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for i in range(writes_n):
                store.set(f"t{t}-{i}", {"t": t, "i": i, "payload": [t] * i})
                if i % 10 == 0:  # readers interleaved with the writers
                    assert store.get(f"t{t}-{i}")["i"] == i
                    assert store.len() >= i + 1
                    list(store.keys())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert store.len() == threads_n * writes_n
    for t in range(threads_n):
        for i in range(writes_n):
            assert store.get(f"t{t}-{i}") == {"t": t, "i": i, "payload": [t] * i}


def test_two_connections_on_one_file_wait_for_each_other(plugin: Any) -> None:
    # e.g. the bot and a backup/admin script: busy_timeout makes the second writer wait, not fail.
    stores = [plugin.open("shared"), plugin.open("shared")]
    errors: list[BaseException] = []

    def writer(s: int, t: int) -> None:
        try:
            for i in range(25):
                stores[s].set(f"s{s}-t{t}-{i}", i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, t)) for s in range(2) for t in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert stores[0].len() == stores[1].len() == 2 * 4 * 25
    finally:
        for opened in stores:
            opened.close()


# --------------------------------------------------------------------------- 4. a real errbot


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """TestBot adds a FileHandler to the root logger and sets its level: undo that afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def test_errbot_runs_on_it_and_keeps_state_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_logging: None
) -> None:
    from errbot.backends import test as errbot_test_backend

    # TestBot makes its own mkdtemp() for logs: keep that inside tmp_path too.
    scratch = iter(range(100))
    monkeypatch.setattr(errbot_test_backend, "mkdtemp", lambda: _mkdir(tmp_path / f"scratch{next(scratch)}"))
    data = tmp_path / "data"
    data.mkdir()
    config = {
        "STORAGE": "SQLite",
        "BOT_EXTRA_STORAGE_PLUGINS_DIR": str(STORAGE_DIR),
        "BOT_DATA_DIR": str(data),
        "CORE_PLUGINS": ("ACLs", "Help", "Health", "Plugins", "Utils", "CommandNotFoundFilter"),
        "BOT_PLUGIN_INDEXES": (),
    }

    first = errbot_test_backend.TestBot(loglevel=logging.INFO, extra_config=config)
    first.start(timeout=10)
    try:
        assert type(first.bot.storage_plugin).__name__ == "SQLiteStoragePlugin"
        assert type(first.bot.storage_plugin).__module__ == "errbot.storage.sqlite"
        assert first.exec_command("!echo hi", timeout=10) == "hi"
        # A command on errbot's thread pool writes the core namespace through the plugin.
        assert "Health is now blacklisted" in first.exec_command("!plugin blacklist Health", timeout=10)
    finally:
        first.stop()

    assert (data / "core.sqlite3").is_file()
    assert {mode_of(p) for p in data.glob("*.sqlite3*")} == {PRIVATE}
    core = load_storage_plugin("SQLite", data).open("core")
    try:
        assert core.get("bl_plugins") == ["Health"]
    finally:
        core.close()

    second = errbot_test_backend.TestBot(loglevel=logging.INFO, extra_config=config)
    second.start(timeout=10)
    try:
        assert second.bot.plugin_manager.get_blacklisted_plugin() == ["Health"]
        assert "Health" not in second.bot.plugin_manager.get_all_active_plugin_names()
        assert "Utils" in second.bot.plugin_manager.get_all_active_plugin_names()
    finally:
        second.stop()


def _mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


# --------------------------------------------------------------------------- 5. kill -9


def test_no_acknowledged_write_is_lost_to_kill_9(tmp_path: Path) -> None:
    """50 SIGKILLs at random points (after 1-30 acks) of a process writing through the plugin,
    one database accumulating across kills; after each kill every acknowledged value must be
    there, exactly, and PRAGMA integrity_check must say ok. (bench/storage_kill.py runs the same
    harness against Shelf, which does lose writes.)"""
    rng = random.Random(20240501)
    stats = kill_campaign("SQLite", tmp_path, 50, rng=rng, max_acks_before_kill=30)
    assert stats.kills == 50
    assert stats.acknowledged >= 50
    assert (stats.lost, stats.corrupted) == (0, 0), f"{stats.summary()}; first: {stats.problems[:10]}"
    assert mode_of(tmp_path / "killtest.sqlite3") == PRIVATE
