"""The README's demo, scripted: the real ``errbot`` process on the Text console, the emulator behind it."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROMPT = "[@admin ➡ @errbot]"


class Console:
    """The demo process with its stdout read on a thread, so reads can time out."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EMR_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env["EMR_POLL_SECONDS"] = "3600"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.output = ""
        self._chunks: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read(1):
            self._chunks.put(chunk)
        self._chunks.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Read until *text* appears after what was read so far; return the new output."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while text not in ANSI_RE.sub("", self.output[start:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} did not appear; output so far:\n{self.output[-3000:]}")
            try:
                chunk = self._chunks.get(timeout=remaining)
            except queue.Empty:
                continue
            if chunk is None:
                raise AssertionError(f"the demo exited before {text!r}:\n{self.output[-3000:]}")
            self.output += chunk
        return ANSI_RE.sub("", self.output[start:])

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


@pytest.mark.slow
def test_the_demo_console_manages_the_cluster_in_the_second_account(record_property: pytest.RecordProperty) -> None:
    console = Console()
    try:
        banner = console.wait_for(PROMPT, timeout=120)
        startup = time.monotonic() - console.started
        record_property("demo_startup_seconds", round(startup, 2))
        print(f"\n[demo] console ready in {startup:.1f} s")
        assert "account B has 'analytics'" in banner
        console.type("!emr status")
        status = console.wait_for("next:", timeout=60) + console.wait_for(PROMPT, timeout=30)
        assert "analytics (j-" in status and "WAITING" in status
        assert "etl-nightly" not in status
        console.type("!emr lock trying the demo")
        assert "admin holds analytics" in console.wait_for("holds analytics", timeout=30)
        console.type("!emr terminate etl-nightly --force")
        assert "No managed cluster called etl-nightly" in console.wait_for("etl-nightly", timeout=30)
        assert console.process.stdin is not None
        console.process.stdin.close()  # Ctrl-D: errbot exits, then the emulator stops
        assert console.process.wait(timeout=60) == 0
    finally:
        if console.process.poll() is None:
            console.process.kill()
            console.process.wait()
