"""Durable state with the real bot process: kill -9 right after a reply loses nothing acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest
from killcycle import kill_cycles

from demo.emulator import Emulator


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path, emulator: Emulator) -> None:
    emulator.reset()
    emulator.seed()
    emulator.reset_counts()
    report = kill_cycles(emulator, tmp_path / "data", kills=4, seed=20261129)
    assert report.kills == 4
    assert (report.lost, report.corrupted, report.repeated_warnings) == (0, 0, 0), report.problems
    assert report.assume_roles == 1  # the stored token outlives every kill
