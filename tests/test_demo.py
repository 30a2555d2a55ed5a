"""The README's demo, scripted: the real ``errbot`` process on the Text console, the emulator behind it."""

from __future__ import annotations

import sys
import time

import pytest
from console import PROMPT, Console, clean_env


@pytest.mark.slow
def test_the_demo_console_manages_the_cluster_in_the_second_account(record_property: pytest.RecordProperty) -> None:
    console = Console([sys.executable, "-m", "demo"], {**clean_env(), "EMR_POLL_SECONDS": "3600"})
    try:
        banner = console.wait_for(PROMPT, timeout=120)
        startup = time.monotonic() - console.started
        record_property("demo_startup_seconds", round(startup, 2))
        print(f"\n[demo] console ready in {startup:.1f} s")
        assert "account B has 'analytics'" in banner
        before = len(console.output)
        console.type("!emr status")
        # The console prints its next prompt when it reads the next line, which may come before or after a
        # reply (replies come from Errbot's thread pool): wait for the reply's last line itself, whole.
        console.wait_for_line("next:", timeout=60)
        status = console.text(before)
        assert "analytics (j-" in status and "WAITING" in status
        assert "etl-nightly" not in status
        console.type("!emr lock trying the demo")
        assert "admin holds analytics" in console.wait_for("holds analytics", timeout=30)
        console.type("!emr terminate etl-nightly --force")
        assert "No managed cluster called etl-nightly" in console.wait_for("etl-nightly", timeout=30)
        assert console.close() == 0  # Ctrl-D: errbot exits, then the emulator stops
    finally:
        console.ensure_dead()


@pytest.mark.slow
def test_the_two_target_demo_refuses_an_ambiguous_name_and_holds_the_qualified_one() -> None:
    """``make demo-targets``: the README's walk through several accounts and regions."""
    console = Console([sys.executable, "-m", "demo", "--targets"], {**clean_env(), "EMR_POLL_SECONDS": "3600"})
    try:
        banner = console.wait_for(PROMPT, timeout=120)
        assert "game-b (account C): 'analytics' in ap-northeast-1" in banner
        before = len(console.output)
        console.type("!emr status")
        console.wait_for_line("game-b — account 109876543210, us-west-2", timeout=60)
        if console.text(before).count("next:") < 3:  # the last cluster's lines, if not read with its heading
            console.wait_for_line("next:", timeout=60)
        status = console.text(before)
        assert status.count("next:") == 3, status
        assert "game-a — account 210987654321, ap-northeast-1" in status
        assert "game-b — account 109876543210, ap-northeast-1" in status
        console.type("!emr lock analytics")
        refused = console.wait_for_line("Several managed clusters", timeout=30)
        assert "game-a/analytics, game-b/ap-northeast-1/analytics, game-b/us-west-2/analytics" in refused
        console.type("!emr lock game-b/us-west-2/analytics trying the demo")
        assert "admin holds analytics" in console.wait_for("holds analytics", timeout=30)
        assert console.close() == 0
    finally:
        console.ensure_dead()
