"""kill -9 harness for errbot storage plugins: the writer (run as a script) and its driver.

Why: Shelf on dbm.dumb keeps its index in memory until close, so an update the bot already
acknowledged can vanish when the process is SIGKILLed; storage/sqlite.py exists to fix that.
This module proves it from the outside, with real processes and real SIGKILLs.

Writer (``python tests/_storage_writer.py --storage SQLite --basedir DIR``) is a small fork
server, so 50 kills cost milliseconds rather than 50 interpreter + errbot start-ups. It loads
the storage plugin once, *by name, through errbot's own loader* (``get_storage_plugin``), then
for every ``run R`` line on stdin forks a child that:

* prints ``pid <pid>``,
* opens the namespace through the plugin class (``plugin.open``) -- the connection is made in
  the child, never inherited across fork,
* loops ``i = 0, 1, 2 ...``: ``store.set(key_for(i), value_for(R, i))`` and only *after* set()
  returns writes ``ack <i>`` (one atomic write(2)): a written ack is an acknowledged write.

The server prints ``exit <R> <how>`` after it has reaped the child, so every line the child
wrote is in the pipe before it. Keys wrap around ``KEYS`` names and every run writes different
values (different sizes too), so runs *update* existing keys -- the case dbm.dumb loses.

Driver: :func:`kill_campaign` (used by tests/test_storage_sqlite.py and bench/storage_kill.py)
runs the server, and for each run reads acks up to a random point, SIGKILLs the child, drains
the remaining acks, then reopens the store in-process and checks every acknowledged value.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STORAGE_DIR = REPO / "storage"
NAMESPACE = "killtest"
#: Distinct keys a run cycles through: later writes of a run update earlier keys, and every run
#: updates the keys of the previous runs.
KEYS = 64
#: Upper bound of writes per run; the driver always kills long before this.
MAX_WRITES = 1_000_000
#: Seconds to wait for any line from the writer before declaring it stuck.
LINE_TIMEOUT = 30.0


def key_for(i: int) -> str:
    return f"key{i % KEYS}"


def value_for(run: int, i: int) -> dict[str, Any]:
    """Deterministic value of write ``i`` of run ``run``; its pickle size varies from ~0.2 to ~2 KB."""
    size = (run * 7919 + i * 104_729) % 1800
    return {
        "run": run,
        "i": i,
        "at": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=run * 100_000 + i),
        "tags": [run, i, {"nested": [f"r{run}", f"i{i}"]}],
        "blob": "x" * size,
    }


def bot_config(storage: str, basedir: Path) -> types.SimpleNamespace:
    """The slice of an errbot config that errbot's storage loader and the plugins read."""
    return types.SimpleNamespace(
        STORAGE=storage,
        BOT_EXTRA_STORAGE_PLUGINS_DIR=str(STORAGE_DIR),
        BOT_DATA_DIR=str(basedir),
        STORAGE_CONFIG={},
    )


def load_storage_plugin(storage: str, basedir: Path) -> Any:
    """Instantiate the storage plugin named ``storage`` exactly as errbot does at start-up."""
    from errbot.bootstrap import get_storage_plugin  # heavy import: only where needed

    return get_storage_plugin(bot_config(storage, basedir))


# --------------------------------------------------------------------------- writer (script)


def _say(line: str) -> None:
    """One line to stdout in one write(2): a pipe write of <= PIPE_BUF bytes is atomic, so a
    SIGKILL can never leave half a line (``print`` may issue the text and the newline as two
    writes when stdout is unbuffered, e.g. under PYTHONUNBUFFERED)."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def _child(plugin: Any, namespace: str, run: int) -> None:
    """Body of a forked writer; never returns."""
    code = 1
    try:
        _say(f"pid {os.getpid()}")
        store = plugin.open(namespace)
        for i in range(MAX_WRITES):
            store.set(key_for(i), value_for(run, i))
            _say(f"ack {i}")  # only after set() returned: acknowledged
        store.close()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(storage: str, basedir: Path, namespace: str) -> None:
    plugin = load_storage_plugin(storage, basedir)
    _say("ready")
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        run = int(words[1])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(plugin, namespace, run)
        _, status = os.waitpid(pid, 0)
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"code {os.WEXITSTATUS(status)}"
        _say(f"exit {run} {how}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="errbot storage plugin Name: SQLite, Shelf, ...")
    parser.add_argument("--basedir", required=True, type=Path)
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args(argv)
    serve(args.storage, args.basedir, args.namespace)


# --------------------------------------------------------------------------- driver


@dataclass
class KillStats:
    """Outcome of a campaign. ``lost``: keys whose last acknowledged value was not there after a
    kill (stale or missing); ``corrupted``: kills after which the store failed its integrity check
    or a key could not be read."""

    storage: str
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    corrupted: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.storage}: {self.lost} lost, {self.corrupted} corrupted "
            f"({self.kills} kills, {self.acknowledged} acknowledged writes)"
        )


class _Unreadable:
    """Model marker for a key the store already failed to read (so it is counted once)."""


_UNREADABLE = _Unreadable()
_MISSING = object()


class _Writer:
    """The writer server process plus a thread that turns its stdout into a queue of lines."""

    def __init__(self, storage: str, basedir: Path, namespace: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--storage",
                storage,
                "--basedir",
                str(basedir),
                "--namespace",
                namespace,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        if self.proc.stdin is None or self.proc.stdout is None:  # pragma: no cover - PIPE was asked
            raise RuntimeError("storage writer started without pipes")
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="storage-writer-stdout", daemon=True)
        self._reader.start()
        self.child: int | None = None
        self.expect("ready")

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self) -> str:
        try:
            line = self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"storage writer silent for {LINE_TIMEOUT}s") from None
        if line is None:
            raise RuntimeError(f"storage writer exited (code {self.proc.wait()})")
        return line

    def expect(self, prefix: str) -> str:
        line = self.line()
        if not line.startswith(prefix):
            raise RuntimeError(f"storage writer: expected {prefix!r}, got {line!r}")
        return line

    def send(self, line: str) -> None:
        self.stdin.write(line + "\n")
        self.stdin.flush()

    def close(self) -> None:
        if self.child is not None:  # a failed run left its child alive: it is ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.send("quit")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)


def _one_kill(writer: _Writer, run: int, acks_before_kill: int) -> list[int]:
    """Start run ``run``, SIGKILL its child after ``acks_before_kill`` acks; return all acks."""
    writer.send(f"run {run}")
    writer.child = int(writer.expect("pid ").split()[1])
    acks: list[int] = []
    while len(acks) < acks_before_kill:
        acks.append(int(writer.expect("ack ").split()[1]))
    os.kill(writer.child, signal.SIGKILL)
    while (line := writer.line()).startswith("ack "):  # acks already in the pipe count too
        acks.append(int(line.split()[1]))
    writer.child = None
    if line != f"exit {run} signal {signal.SIGKILL.value}":
        raise RuntimeError(f"run {run}: the writer was not killed mid-write: {line!r}")
    if acks != list(range(len(acks))):
        raise RuntimeError(f"run {run}: acks out of order: {acks[:10]}...")
    return acks


def _sqlite_integrity(basedir: Path, namespace: str) -> str:
    conn = sqlite3.connect(basedir / f"{namespace}.sqlite3")
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def _verify(
    plugin: Any,
    storage: str,
    basedir: Path,
    run: int,
    acks: list[int],
    model: dict[str, Any],
    stats: KillStats,
) -> None:
    """Check the store against ``model`` + this run's acks; then make ``model`` the observed state."""
    expected = dict(model)
    for i in acks:
        expected[key_for(i)] = value_for(run, i)
    # set() of the write after the last ack may or may not have committed before the kill.
    inflight = len(acks)
    inflight_key, inflight_value = key_for(inflight), value_for(run, inflight)

    corrupted: list[str] = []
    if storage == "SQLite":
        integrity = _sqlite_integrity(basedir, NAMESPACE)
        if integrity != "ok":
            corrupted.append(f"integrity_check: {integrity}")
    try:
        store = plugin.open(NAMESPACE)
    except Exception as exc:  # the whole store is unreadable: count it, start afresh
        stats.corrupted += 1
        stats.problems.append(f"run {run}: cannot reopen: {exc!r}")
        for leftover in basedir.glob(f"{NAMESPACE}*"):
            leftover.unlink()
        model.clear()
        return
    observed: dict[str, Any] = {}
    lost: list[str] = []
    try:
        try:
            stored_keys = set(store.keys())
        except Exception as exc:
            corrupted.append(f"keys() failed: {exc!r}")
            stored_keys = set()
        for key in sorted(set(expected) | stored_keys | {inflight_key}):
            want = expected.get(key, _MISSING)
            try:
                got = store.get(key)
            except KeyError:
                got = _MISSING
            except Exception as exc:
                observed[key] = _UNREADABLE
                if want is not _UNREADABLE:
                    corrupted.append(f"{key} unreadable: {exc!r}")
                continue
            if got is not _MISSING:
                observed[key] = got
            if got == want or (key == inflight_key and got == inflight_value):
                continue
            if want is _MISSING or want is _UNREADABLE:
                corrupted.append(f"{key} appeared from nowhere")
            else:
                lost.append(f"{key}: want run {want['run']} i {want['i']}, got {_describe(got)}")
    finally:
        store.close()
    stats.lost += len(lost)
    stats.corrupted += bool(corrupted)
    stats.problems += [f"run {run}: lost {p}" for p in lost] + [f"run {run}: {p}" for p in corrupted]
    model.clear()
    model.update(observed)


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if isinstance(value, dict) and "run" in value:
        return f"run {value['run']} i {value['i']}"
    return repr(value)[:60]


def kill_campaign(
    storage: str,
    basedir: Path,
    kills: int,
    *,
    rng: random.Random,
    max_acks_before_kill: int = 30,
) -> KillStats:
    """SIGKILL a writer of errbot storage ``storage`` ``kills`` times at random points, reusing one
    database under ``basedir``, and count the acknowledged writes that did not survive."""
    basedir.mkdir(parents=True, exist_ok=True)
    plugin = load_storage_plugin(storage, basedir)
    stats = KillStats(storage)
    model: dict[str, Any] = {}
    writer = _Writer(storage, basedir, NAMESPACE)
    try:
        for run in range(1, kills + 1):
            acks = _one_kill(writer, run, rng.randint(1, max_acks_before_kill))
            stats.kills += 1
            stats.acknowledged += len(acks)
            _verify(plugin, storage, basedir, run, acks, model, stats)
    finally:
        writer.close()
    return stats


if __name__ == "__main__":
    main()
