"""Drive the real ``errbot`` process on the Text console: type commands, read replies, kill it.

Used by the demo test, the kill -9 durability test and ``bench/kill_bot.py``.
Output is read on a thread so every wait has a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import os
import pickle
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROMPT = "[@admin ➡ @errbot]"


class Console:
    """One running bot process (``python -m demo`` or ``errbot -c config.py``)."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        env = {**env, "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.output = ""
        self._read_upto = 0
        self._chunks: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def errbot(cls, env: dict[str, str]) -> Console:
        return cls([str(Path(sys.executable).with_name("errbot")), "-c", str(ROOT / "config.py")], env)

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read(1):
            self._chunks.put(chunk)
        self._chunks.put(None)

    def _pump(self, timeout: float) -> bool:
        """Take what the process wrote; False when it has exited."""
        try:
            chunk = self._chunks.get(timeout=timeout)
        except queue.Empty:
            return True
        if chunk is None:
            return False
        self.output += chunk
        while True:
            try:
                chunk = self._chunks.get_nowait()
            except queue.Empty:
                return True
            if chunk is None:
                return False
            self.output += chunk

    def text(self, start: int = 0) -> str:
        return ANSI_RE.sub("", self.output[start:])

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Read until *text* appears in what was written since the last wait; return that."""
        start = self._read_upto
        deadline = time.monotonic() + timeout
        while text not in self.text(start):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} did not appear; output so far:\n{self.text()[-3000:]}")
            if not self._pump(min(remaining, 0.1)) and text not in self.text(start):
                raise AssertionError(f"the process exited before {text!r}:\n{self.text()[-3000:]}")
        self._read_upto = len(self.output)
        return self.text(start)

    def wait_for_lines(self, *texts: str, timeout: float = 60) -> list[str]:
        """Like :meth:`wait_for_line` for several lines, in whatever order they come.

        A reply and a poller's notice race each other: the notice may be written first.
        """
        start = self._read_upto
        deadline = time.monotonic() + timeout

        def complete() -> list[str] | None:
            lines = [line for line in self.text(start).splitlines(keepends=True) if line.endswith("\n")]
            found = [next((line.rstrip("\r\n") for line in lines if text in line), None) for text in texts]
            return None if None in found else [line for line in found if line is not None]

        while (found := complete()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no whole lines with {texts!r} appeared; output so far:\n{self.text()[-3000:]}")
            if not self._pump(min(remaining, 0.1)) and complete() is None:
                raise AssertionError(f"the process exited before lines with {texts!r}:\n{self.text()[-3000:]}")
        self._read_upto = len(self.output)
        return found

    def wait_for_line(self, text: str, timeout: float = 60) -> str:
        """Read until a whole line containing *text* (ended by its newline) is written since the last wait.

        Returns that line without its newline. Unlike :meth:`wait_for`, a reply is
        never seen half-written: what follows *text* on its line is there too.
        """
        start = self._read_upto
        deadline = time.monotonic() + timeout

        def complete() -> str | None:
            lines = self.text(start).splitlines(keepends=True)
            return next((line.rstrip("\r\n") for line in lines if text in line and line.endswith("\n")), None)

        while (line := complete()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no whole line with {text!r} appeared; output so far:\n{self.text()[-3000:]}")
            if not self._pump(min(remaining, 0.1)) and complete() is None:
                raise AssertionError(f"the process exited before a line with {text!r}:\n{self.text()[-3000:]}")
        self._read_upto = len(self.output)
        return line

    def drain(self, seconds: float) -> str:
        """Everything written during the next *seconds* (for asserting that something is NOT said)."""
        start = len(self.output)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._pump(max(0.0, min(0.05, deadline - time.monotonic()))):
            pass
        return self.text(start)

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def close(self, timeout: float = 60) -> int:
        """Ctrl-D: errbot shuts down cleanly."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=timeout)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def read_plugin_storage(data_dir: Path, namespace: str = "EMR") -> dict[str, Any]:
    """The plugin's storage as the bot left it, read straight from the SQLite file (read-only)."""
    path = data_dir / f"{namespace}.sqlite3"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute("SELECT key, value FROM kv").fetchall()
    finally:
        connection.close()
    return {key: pickle.loads(value) for key, value in rows}  # noqa: S301 - the bot's own private 0600 file


def clean_env() -> dict[str, str]:
    """The current environment without AWS/EMR/Slack settings (the caller adds its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EMR_", "SLACK_"))}
