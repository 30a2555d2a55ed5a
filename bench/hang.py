"""Section 7 — a hanging endpoint: how long ``!emr status`` takes to answer "AWS unreachable".

Path: the real plugin through Errbot's test backend; its ``ENDPOINT_URL`` is the
fault proxy of the test suite (``tests/faultproxy.py``) in front of the
emulator. A first ``!emr status`` passes through (the token is stored, the
cluster seen); then every ``ListClusters`` is accepted and never answered
(the proxy holds it for 60 s), and ``!emr status`` is timed *runs* times in a
row on the real wall clock (``perf_counter``, from pushing the message to
popping the reply): this is a real timeout, nothing is moved.

The bound the plugin states to the user is read from its reply ("… no answer
within N s"), not from its code. The proxy also counts the attempts the bot
made per command.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from bench.harness import Bot, Section, Target, emr_config, table
from demo.emulator import Emulator
from tests.faultproxy import FaultProxy

HOLD_SECONDS = 60.0  # how long the proxy keeps a hanging request: well past any bound the bot could state
STATED_BOUND = re.compile(r"within (\d+(?:\.\d+)?) ?s\b")


def run(emulator: Emulator, workdir: Path, *, runs: int) -> Section:
    section = Section("hang", "7. A hanging endpoint: time to answer 'AWS unreachable'")
    emulator.reset()
    emulator.seed()
    seconds: list[float] = []
    attempts: list[int] = []
    replies: list[str] = []
    with (
        FaultProxy(emulator.url, hang_seconds=HOLD_SECONDS) as proxy,
        Bot(workdir / "hang-data", emr_config(emulator, ENDPOINT_URL=proxy.url)) as bot,
    ):
        warm, _ = bot.say("!emr status")
        if "analytics" not in warm:
            raise RuntimeError(f"the warm-up status did not list the cluster: {warm[:200]}")
        proxy.inject("hang", "ListClusters")
        for _ in range(runs):
            before = proxy.seen["ListClusters"]
            reply, elapsed = bot.say("!emr status", timeout=HOLD_SECONDS + 30)
            seconds.append(elapsed)
            attempts.append(proxy.seen["ListClusters"] - before)
            replies.append(reply)

    bounds = {m.group(1) for r in replies if (m := STATED_BOUND.search(r))}
    stated = float(bounds.pop()) if len(bounds) == 1 else None
    unreachable = all(r.startswith("✗ AWS unreachable") for r in replies)
    section.say(
        f"!emr status with every ListClusters hanging (accepted, never answered), {runs} runs in a row, "
        "real wall clock.",
        "",
        *table(
            ["runs", "min s", "median s", "max s", "attempts per command", "bound stated to the user"],
            [
                [
                    runs,
                    f"{min(seconds):.2f}",
                    f"{statistics.median(seconds):.2f}",
                    f"{max(seconds):.2f}",
                    "/".join(str(a) for a in attempts),
                    f"{stated:g} s" if stated is not None else "none found",
                ]
            ],
        ),
        "",
        f"  reply: {replies[0]}",
    )
    section.data = {
        "runs": runs,
        "seconds": [round(s, 3) for s in seconds],
        "min_seconds": min(seconds),
        "median_seconds": statistics.median(seconds),
        "max_seconds": max(seconds),
        "attempts": attempts,
        "stated_bound_seconds": stated,
        "replies": replies,
    }
    section.targets.append(
        Target(
            "a hanging endpoint: 'AWS unreachable' within the bound the reply states",
            "every reply 'AWS unreachable … within N s', in at most N s",
            f"{min(seconds):.1f} / {statistics.median(seconds):.1f} / {max(seconds):.1f} s (min/median/max of {runs}); "
            f"stated bound: {f'{stated:g} s' if stated is not None else 'none'}",
            unreachable and stated is not None and max(seconds) <= stated,
        )
    )
    return section
