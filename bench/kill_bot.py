"""kill -9 the real bot N times at random points; count what was lost.

    .venv/bin/python bench/kill_bot.py --kills 50

Each cycle starts ``errbot`` (Text backend, the project's SQLite storage)
against the local emulator, sends ``!emr lock``, and SIGKILLs it right after
the reply or at a random moment. Prints kills, acknowledged holds, lost,
corrupted, repeated warnings and AssumeRole requests (see tests/killcycle.py).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    started = time.monotonic()
    with Emulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.seed()
        emulator.reset_counts()
        report = kill_cycles(emulator, Path(tmp) / "data", args.kills, args.seed)
    print(f"seed {args.seed}, {time.monotonic() - started:.0f} s")
    print("kills  acknowledged  lost  corrupted  repeated-warnings  AssumeRole")
    print(
        f"{report.kills:5}  {report.acknowledged:12}  {report.lost:4}  {report.corrupted:9}  "
        f"{report.repeated_warnings:17}  {report.assume_roles:10}"
    )
    for problem in report.problems:
        print("  ", problem)
    return 1 if report.lost or report.corrupted or report.repeated_warnings else 0


if __name__ == "__main__":
    sys.exit(main())
