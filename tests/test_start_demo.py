"""The README's start walkthrough, scripted: `make demo`, then `!emr terminate` and `!emr start`.

The real ``errbot`` process on the Text console and the demo's emulator, which plays a started
cluster through STARTING and BOOTSTRAPPING (here one second each, the poller every second; the demo's
defaults are 6 + 6 seconds and a 10-second poll).
"""

from __future__ import annotations

import sys
import time

import pytest
from console import PROMPT, Console, clean_env


@pytest.mark.slow
def test_the_demo_starts_a_cluster_from_the_shipped_template_and_says_when_it_is_ready(
    record_property: pytest.RecordProperty,
) -> None:
    command = [sys.executable, "-m", "demo", "--starting-seconds", "1", "--bootstrapping-seconds", "1"]
    console = Console(command, {**clean_env(), "EMR_POLL_SECONDS": "1"})
    try:
        console.wait_for(PROMPT, timeout=120)
        console.type("!emr start")
        assert "is already WAITING: !emr lock analytics" in console.wait_for_line("already", timeout=30)
        console.type("!emr terminate")
        console.wait_for_line("Terminating analytics", timeout=30)
        console.type("!emr start trying the demo")
        asked = time.monotonic()
        # The ready notice may come before the reply when the machine is busy: either order.
        started, ready = console.wait_for_lines("Starting analytics", "is ready after", timeout=60)
        took = time.monotonic() - asked
        assert "from template analytics (emr-7.5.0); admin holds it (trying the demo)" in started
        record_property("demo_start_to_ready_seconds", round(took, 1))
        print(f"\n[demo] !emr start → ready notice: {took:.1f} s (1 s STARTING + 1 s BOOTSTRAPPING, 1 s poll)")
        assert "✅ analytics (j-" in ready and "@admin, you hold it" in ready
        console.type("!emr status")
        assert "WAITING, up" in console.wait_for_line("WAITING", timeout=30)
        assert console.close() == 0
    finally:
        console.ensure_dead()
