"""Two instances on one DynamoDB table (DESIGN §18): lost updates, failover, requests.

    .venv/bin/python -m bench.two_instances [--seed N] [--commands 200] [--failovers 20]

Two bots (Errbot's test backend, each with its own plugin, storage connection and lease owner)
in this process on the emulator's DynamoDB; the wall clock is moved, never waited for.

* No lost update: 4 users send *commands* lock/unlock actions, each user's own in order, the
  users at once, each action on a bot picked at random (seeded); the holds left on the cluster
  must be those of the users whose last action was a lock, every run.
* Failover: the lease holder "dies" (it never ticks or releases again) at a random moment of its
  lease; the other ticks every POLL_SECONDS; the time from the death to the first tick the other
  runs the rules in, against LEASE_SECONDS + POLL_SECONDS. The idle warning is given once in all.
* Requests: DynamoDB requests of a lock, a status and a steady tick (leader and follower).

Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Bot, MovedClock, emr_config, hermetic_environment
from demo.emulator import Emulator

START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
POLL = 30
LEASE = 60
USERS = ("alice", "bob", "carol", "dave")


def bots(emulator: Emulator, workdir: Path) -> tuple[Bot, Bot]:
    storage = {"table": "bench-" + uuid.uuid4().hex[:8], "region": "ap-northeast-1", "endpoint_url": emulator.url}
    extra = {"STORAGE": "DynamoDB", "STORAGE_CONFIG": {**storage, "create": True}}
    config = emr_config(emulator, POLL_SECONDS=POLL, LEASE_SECONDS=LEASE)
    a = Bot(workdir / f"a-{uuid.uuid4().hex[:6]}", config, extra_config=extra).start()
    b = Bot(workdir / f"b-{uuid.uuid4().hex[:6]}", config, extra_config=extra).start()
    return a, b


def dynamodb(emulator: Emulator) -> Counter[str]:
    return Counter({action: n for (service, action), n in emulator.requests.items() if service.startswith("dynamodb")})


def lost_updates(emulator: Emulator, workdir: Path, commands: int, rng: random.Random) -> tuple[int, int]:
    """(runs whose holds differ from the serial result, conflicts decided again) for one run."""
    from emrchatops.app.service import Who
    from emrchatops.domain.errors import EmrChatopsError

    emulator.reset()
    seeded = emulator.seed()
    a, b = bots(emulator, workdir)
    try:
        a.say("!emr status")
        b.say("!emr status")
        plans = {user: [rng.choice(("lock", "unlock")) for _ in range(commands // len(USERS))] for user in USERS}
        sides = {user: [rng.choice((a, b)) for _ in plans[user]] for user in USERS}
        start = threading.Barrier(len(USERS))
        errors: list[BaseException] = []

        def act(user: str) -> None:
            start.wait()
            who = Who(user, user)
            for action, bot in zip(plans[user], sides[user], strict=True):
                try:
                    if action == "lock":
                        bot.plugin.service.lock(who, "analytics")
                    else:
                        bot.plugin.service.unlock(who, "analytics", None)
                except EmrChatopsError:  # "you hold nothing": a refusal, as the serial run would give
                    pass
                except Exception as error:
                    errors.append(error)

        threads = [threading.Thread(target=act, args=(user,)) for user in USERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        expected = {user for user, plan in plans.items() if plan[-1] == "lock"}
        held = {h.user for h in a.plugin.service.state().clusters[seeded.managed_id].holds}
        seen_by_b = {h.user for h in b.plugin.service.state().clusters[seeded.managed_id].holds}
        return int(held != expected or seen_by_b != expected or bool(errors)), len(errors)
    finally:
        a.stop()
        b.stop()


def failover(emulator: Emulator, workdir: Path, rng: random.Random) -> tuple[float, int]:
    """(seconds from the holder's death to the other running the rules, idle warnings given in all)."""
    with MovedClock(START) as clock:
        emulator.reset()
        emulator.seed()  # on the moved clock: the cluster is ready at 10:00, idle from then
        a, b = bots(emulator, workdir)
        try:
            a.plugin.tick()  # a holds the lease
            offset = rng.uniform(0, POLL)  # a dies somewhere between two of its ticks
            b_phase = rng.uniform(0, POLL)  # b's ticks run on a grid of their own
            clock.set(START + timedelta(seconds=offset))
            died = clock.now
            t = START + timedelta(seconds=b_phase)
            while True:
                while t <= died:
                    t += timedelta(seconds=POLL)
                clock.set(t)
                b.plugin.tick()
                if getattr(b.plugin.service, "_led", False):
                    took = (clock.now - died).total_seconds()
                    break
                t += timedelta(seconds=POLL)
            clock.set(START + timedelta(minutes=26))  # the idle warning is due: b gives it, once
            b.plugin.tick()
            b.plugin.tick()
            # Every warning given is in the shared history (saved before it is said): one, or a repeat.
            warnings = sum(1 for event in b.plugin.service.state().history if event.kind == "warning")
            return took, warnings
        finally:
            a.stop()
            b.stop()


def requests(emulator: Emulator, workdir: Path) -> dict[str, Counter[str]]:
    with MovedClock(START):
        emulator.reset()
        emulator.seed()
        a, b = bots(emulator, workdir)
        try:
            a.plugin.tick()
            b.plugin.tick()
            a.say("!emr status")
            measured: dict[str, Counter[str]] = {}
            for name, act in (
                ("!emr lock (on the follower)", lambda: b.say("!emr lock analytics", user="alice")),
                ("!emr status (on the follower)", lambda: b.say("!emr status", user="bob")),
                ("steady tick, leader", a.plugin.tick),
                ("steady tick, follower", b.plugin.tick),
            ):
                emulator.reset_counts()
                act()
                measured[name] = dynamodb(emulator)
            return measured
        finally:
            a.stop()
            b.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=20)
    args = parser.parse_args(argv)
    hermetic_environment()
    rng = random.Random(args.seed)
    print(f"two instances on one DynamoDB table — seed {args.seed}, POLL_SECONDS {POLL}, LEASE_SECONDS {LEASE}")
    met = True
    with tempfile.TemporaryDirectory(prefix="emr-two-") as tmp, Emulator() as emulator:
        workdir = Path(tmp)
        bad = sum(lost_updates(emulator, workdir, args.commands, rng)[0] for _ in range(args.runs))
        print(
            f"no lost update: {args.runs} runs × {args.commands} lock/unlock over 2 bots, 4 users at once: "
            f"{args.runs - bad} of {args.runs} runs left exactly the serial result's holds"
        )
        met &= bad == 0
        takeovers: list[float] = []
        repeated = 0
        for _ in range(args.failovers):
            took, warnings = failover(emulator, workdir, rng)
            takeovers.append(took)
            repeated += warnings != 1
        bound = LEASE + POLL
        ordered = sorted(takeovers)
        print(
            f"failover × {args.failovers}: takeover {ordered[0]:.1f} / {ordered[len(ordered) // 2]:.1f} / "
            f"{ordered[-1]:.1f} s (min / median / max; bound LEASE_SECONDS + POLL_SECONDS = {bound} s); "
            f"rounds with the idle warning given other than once: {repeated}"
        )
        met &= ordered[-1] <= bound and repeated == 0
        for name, counts in requests(emulator, workdir).items():
            shown = ", ".join(f"{a} {n}" for a, n in sorted(counts.items())) or "none"
            print(f"DynamoDB requests, {name}: {shown}")
    print("all targets met" if met else "MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
