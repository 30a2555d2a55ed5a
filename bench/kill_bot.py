"""kill -9 the real bot N times, each time after it acknowledged a hold; count what was lost.

    .venv/bin/python bench/kill_bot.py --kills 50                 # seed 20261129: the README figure
    .venv/bin/python bench/kill_bot.py --kills 50 --seed 7        # another fixed seed
    .venv/bin/python bench/kill_bot.py --kills 50 --seed random   # a seed from the clock (printed)

Each cycle starts ``errbot`` (Text backend, the project's SQLite storage)
against the local emulator, sends ``!emr lock reason-N``, waits for the reply,
and SIGKILLs the bot 0–80 ms after it (the delay drawn from the seeded RNG, so
the same seed kills at the same moments). Prints the seed first, then kills,
acknowledged holds, lost, corrupted, repeated warnings and AssumeRole requests
(see tests/killcycle.py). Exits 1 when anything acknowledged was lost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from killcycle import kill_cycles  # noqa: E402

from demo.emulator import Emulator  # noqa: E402

DEFAULT_SEED = 20261129  # the seed of the figure quoted in the README


def seed_value(text: str) -> int:
    """``--seed``: an integer, or ``random`` for one taken from the clock."""
    if text == "random":
        return time.time_ns() % 1_000_000_000
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an integer nor 'random'") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument(
        "--seed", type=seed_value, default=DEFAULT_SEED, help=f"integer or 'random' (default {DEFAULT_SEED})"
    )
    args = parser.parse_args()
    print(f"seed {args.seed}", flush=True)  # first, so an interrupted run can be repeated
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    started = time.monotonic()
    with Emulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.seed()
        emulator.reset_counts()
        report = kill_cycles(emulator, Path(tmp) / "data", args.kills, args.seed)
    print(report.summary())
    print(f"{report.delay_summary()}; {time.monotonic() - started:.0f} s")
    for problem in report.problems:
        print("  ", problem)
    failed = report.lost or report.corrupted or report.repeated_warnings or report.acknowledged != report.kills
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
