"""``python -m bench``: run the benchmarks, print the report, write bench/results/latest.json.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a
section could not run (its error is in the report and the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import hang, lateness, memory, overhead, poller, report, scale, sts
from bench.harness import ROOT, Section, hermetic_environment, quiet_errbot_console
from demo.emulator import Emulator

SECTIONS = ("sts", "overhead", "scale", "poller", "memory", "lateness", "hang", "report")
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="emr-chatops benchmarks against moto's server on loopback (about 9 min; --quick about 2 min).",
    )
    parser.add_argument("--quick", action="store_true", help="smaller samples and a 30 s memory run (about 2 min)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument(
        "--commands", type=int, help="STS: commands in the burst, and for the naive baseline (default 1000; quick 300)"
    )
    parser.add_argument("--threads", type=int, default=20, help="STS: concurrent threads (default 20)")
    parser.add_argument("--restarts", type=int, default=3, help="STS: bot restarts after the burst (default 3)")
    parser.add_argument("--after-restart", type=int, help="STS: commands after each restart (default 100; quick 20)")
    parser.add_argument("--rounds", type=int, help="overhead: interleaved rounds (default 300; quick 60)")
    parser.add_argument("--scale-levels", help="scale: terminated-cluster counts (default 0,200,1980; quick 0,200,500)")
    parser.add_argument("--scale-samples", type=int, help="scale: statuses per level (default 100; quick 30)")
    parser.add_argument("--ticks", type=int, help="poller: steady-state ticks (default 200; quick 50)")
    parser.add_argument("--hours", type=float, help="poller: simulated hours at 30 s (default 3; quick 1)")
    parser.add_argument("--memory-seconds", type=float, help="memory: demo run time (default 300; quick 30)")
    parser.add_argument(
        "--scenarios", type=int, help="lateness: termination scenarios, five kinds in turn (default 40; quick 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=lateness.DEFAULT_SEED, help=f"lateness: RNG seed (default {lateness.DEFAULT_SEED})"
    )
    parser.add_argument(
        "--hang-runs", type=int, help="hang: timed commands against a hanging endpoint (default 3; quick 2)"
    )
    parser.add_argument(
        "--report-repeats", type=int, help="report: reports timed after the first (default 20; quick 5)"
    )
    parser.add_argument(
        "--report-seed",
        type=int,
        default=report.DEFAULT_SEED,
        help=f"report: ledger RNG seed (default {report.DEFAULT_SEED})",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    defaults: dict[str, tuple[Any, Any]] = {
        "commands": (1000, 300),
        "after_restart": (100, 20),
        "rounds": (300, 60),
        "scale_levels": ("0,200,1980", "0,200,500"),
        "scale_samples": (100, 30),
        "ticks": (200, 50),
        "hours": (3.0, 1.0),
        "memory_seconds": (300.0, 30.0),
        "scenarios": (40, 10),
        "hang_runs": (3, 2),
        "report_repeats": (20, 5),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.levels = sorted({int(x) for x in str(args.scale_levels).split(",") if x.strip()})
    return args


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("errbot", "boto3", "botocore", "moto"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hermetic_environment()
    quiet_errbot_console()
    wanted = args.only or list(SECTIONS)
    started = time.perf_counter()
    header = [
        "emr-chatops benchmarks — " + ("quick run" if args.quick else "default run"),
        f"  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_git_commit()}",
        f"  Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"  {_versions()}",
        "  AWS: moto's server on loopback, in this process (two accounts); chat: Errbot's test backend",
        "  command: " + " ".join([".venv/bin/python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    ]
    print("\n".join(header), flush=True)

    sections: list[Section] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="emr-chatops-bench-") as tmp:
        workdir = Path(tmp)
        with Emulator() as emulator:
            runners: dict[str, Callable[[], Section]] = {
                "sts": lambda: sts.run(
                    emulator,
                    workdir,
                    commands=args.commands,
                    threads=args.threads,
                    restarts=args.restarts,
                    after_restart=args.after_restart,
                ),
                "overhead": lambda: overhead.run(emulator, workdir, rounds=args.rounds),
                "scale": lambda: scale.run(emulator, workdir, levels=args.levels, samples=args.scale_samples),
                "poller": lambda: poller.run(emulator, workdir, ticks=args.ticks, hours=args.hours),
                "memory": lambda: memory.run(workdir, seconds=args.memory_seconds),
                "lateness": lambda: lateness.run(emulator, workdir, scenarios=args.scenarios, seed=args.seed),
                "hang": lambda: hang.run(emulator, workdir, runs=args.hang_runs),
                "report": lambda: report.run(
                    emulator, workdir, repeats=args.report_repeats, statuses=args.report_repeats, seed=args.report_seed
                ),
            }
            for key in SECTIONS:
                if key not in wanted:
                    continue
                t0 = time.perf_counter()
                try:
                    section = runners[key]()
                except Exception as error:
                    section = Section(key, f"{key}: FAILED TO RUN")
                    section.say(*("  " + line for line in traceback.format_exc().rstrip().splitlines()))
                    section.data = {"error": repr(error)}
                    failures.append(key)
                section.seconds = time.perf_counter() - t0
                sections.append(section)
                print(f"\n{section.title}   [{section.seconds:.0f} s]", flush=True)
                print("\n".join(section.lines), flush=True)

    wall = time.perf_counter() - started
    targets = [t for s in sections for t in s.targets]
    print("\nTargets")
    for t in targets:
        print(f"  [{'met' if t.met else 'MISSED'}] {t.name}")
        print(f"      wanted:   {t.target}")
        print(f"      measured: {t.measured}")
        if t.note:
            print(f"      note:     {t.note}")
    print(
        f"\nWall time: {wall:.0f} s ({wall / 60:.1f} min)."
        + (f" Sections that failed: {', '.join(failures)}." if failures else "")
    )

    result = {
        "header": header,
        "quick": args.quick,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": round(wall, 1),
        "sections": {s.key: {"title": s.title, "seconds": round(s.seconds, 1), **s.data} for s in sections},
        "targets": [t.as_dict() for t in targets],
        "failed_sections": failures,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"JSON: {args.json}")
    if failures:
        return 2
    return 0 if all(t.met for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
