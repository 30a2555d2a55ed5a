"""kill -9 errbot storage writers at random points and count lost acknowledged writes.

Why: errbot's default Shelf storage falls back to dbm.dumb on a Python without gdbm, and dbm.dumb
only writes its index on close, so a SIGKILLed bot forgets updates it had already acknowledged.
storage/sqlite.py (``STORAGE = "SQLite"``) commits every write before returning. This runs the
same harness as tests/test_storage_sqlite.py (tests/_storage_writer.py) against both plugins and
prints a table:

    .venv/bin/python bench/storage_kill.py --kills 50

Each kill: a writer process opens the store through the plugin (found by name by errbot's own
loader), writes ``key{i % 64} = value(run, i)`` in a loop and acknowledges each write on stdout
after ``set()`` returns; it is SIGKILLed after a random 1..--max-acks acknowledgements; the store
is reopened and every acknowledged value checked. One database per storage accumulates across all
kills. "lost": keys whose last acknowledged value was gone or stale after a kill; "corrupted":
kills after which the store failed PRAGMA integrity_check (SQLite) or a key could not be read.
Exit status 1 if SQLite lost or corrupted anything; Shelf's figures are reported, not judged.
"""

from __future__ import annotations

import argparse
import dbm
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests._storage_writer import NAMESPACE, KillStats, kill_campaign  # noqa: E402

STORAGES = ("SQLite", "Shelf")


def run(storage: str, kills: int, seed: int, max_acks: int, show: int) -> tuple[KillStats, float, str]:
    with tempfile.TemporaryDirectory(prefix=f"storage-kill-{storage.lower()}-") as basedir:
        started = time.perf_counter()
        stats = kill_campaign(storage, Path(basedir), kills, rng=random.Random(seed), max_acks_before_kill=max_acks)
        elapsed = time.perf_counter() - started
        if storage == "Shelf":
            backend = dbm.whichdb(str(Path(basedir) / f"{NAMESPACE}.db")) or "?"
        else:
            backend = f"sqlite {sqlite3.sqlite_version}"
    for problem in stats.problems[:show]:
        print(f"  {storage}: {problem}")
    return stats, elapsed, backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs per storage (default 50)")
    parser.add_argument("--max-acks", type=int, default=30, help="kill after 1..N acknowledged writes")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points (default: random)")
    parser.add_argument("--storage", action="append", choices=STORAGES, help="default: all of them")
    parser.add_argument("--show", type=int, default=0, help="print the first N problems of each storage")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    print(
        f"python {sys.version.split()[0]}: {args.kills} kills per storage, "
        f"each after 1..{args.max_acks} acknowledged writes, seed {seed}"
    )
    rows = [(name, *run(name, args.kills, seed, args.max_acks, args.show)) for name in args.storage or STORAGES]

    header = ("storage", "backend", "kills", "acknowledged", "lost", "corrupted", "seconds")
    table = [header] + [
        (
            name,
            backend,
            str(stats.kills),
            str(stats.acknowledged),
            str(stats.lost),
            str(stats.corrupted),
            f"{elapsed:.1f}",
        )
        for name, stats, elapsed, backend in rows
    ]
    widths = [max(len(row[col]) for row in table) for col in range(len(header))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if col < 2 else cell.rjust(w)
                for col, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )

    failed = [stats for name, stats, _, _ in rows if name == "SQLite" and (stats.lost or stats.corrupted)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
