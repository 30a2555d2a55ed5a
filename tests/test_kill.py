"""Durable state with the real bot process: kill -9 after a reply loses nothing acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest
from killcycle import kill_cycles

from demo.emulator import Emulator

KILLS = 4
SEED = 20261129  # fixed: the same kill delays on every run


@pytest.mark.slow
def test_kill_9_after_the_acknowledgement_loses_nothing(tmp_path: Path, emulator: Emulator) -> None:
    emulator.reset()
    emulator.seed()
    emulator.reset_counts()
    report = kill_cycles(emulator, tmp_path / "data", kills=KILLS, seed=SEED)
    assert report.kills == KILLS
    assert report.acknowledged == report.kills, report.problems  # every cycle waited for its reply
    assert (report.lost, report.corrupted, report.repeated_warnings) == (0, 0, 0), report.problems
    assert report.assume_roles == 1  # the stored token outlives every kill
