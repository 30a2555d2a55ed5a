"""kill -9 the real bot after it acknowledged a hold, and check that nothing acknowledged is lost.

One emulator and one data dir across all cycles. Each cycle starts ``errbot``
(Text backend, SQLite storage, poller every 0.3 s), sends ``!emr lock
reason-N`` and waits for the whole reply line ("… holds analytics …
reason-N …"): that is the acknowledgement. Then it kills the process with
SIGKILL after a delay drawn from the seeded RNG — 0 (right after the reply)
in about one cycle in five, otherwise 0–80 ms later, so the kill may land
during a later poller tick or storage write. Then the storage file is read
as the bot left it and checked:

* the hold is there with the reason just acknowledged — an acknowledged
  hold is never lost;
* the idle clock (``first_seen``) and the warnings already sent are unchanged;
* the STS token is the one of the first cycle (no AssumeRole after a restart);
* the database passes ``PRAGMA integrity_check``;
* the end-of-day warning, sent once in the first cycle, is never sent again.

A cycle whose reply does not come within 30 s counts as not acknowledged
(and is named in ``problems``); a healthy bot acknowledges every cycle.
The same seed gives the same kill delays, so a figure can be regenerated.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from console import Console, read_plugin_storage

from demo.__main__ import demo_environment
from demo.emulator import Emulator

MAX_KILL_DELAY = 0.08  # seconds after the acknowledgement
IMMEDIATE_SHARE = 0.2  # share of the cycles killed right after the acknowledgement


@dataclass
class KillReport:
    seed: int
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    corrupted: int = 0
    repeated_warnings: int = 0
    assume_roles: int = 0
    delays: list[float] = field(default_factory=list)  # seconds from acknowledgement to SIGKILL, per cycle
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"seed {self.seed}, kills {self.kills}, acknowledged {self.acknowledged}, lost {self.lost}, "
            f"corrupted {self.corrupted}, repeated warnings {self.repeated_warnings}, AssumeRole {self.assume_roles}"
        )

    def delay_summary(self) -> str:
        if not self.delays:
            return "no kills"
        immediate = sum(1 for delay in self.delays if delay == 0)
        return (
            f"SIGKILL {min(self.delays) * 1000:.0f}–{max(self.delays) * 1000:.0f} ms after the acknowledgement "
            f"({immediate} of {len(self.delays)} at once)"
        )


def _quiet_zone() -> tuple[str, str]:
    """A zone where now+40 min is still today, and that end-of-day time (HH:MM)."""
    for name in ("UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"):
        local = datetime.now(UTC).astimezone(ZoneInfo(name))
        eod = local + timedelta(minutes=40)
        if eod.date() == local.date() and local.hour >= 1:
            return name, eod.strftime("%H:%M")
    raise RuntimeError("no suitable time zone")  # pragma: no cover - five zones cannot all be near midnight


def kill_delay(rng: random.Random) -> float:
    """Seconds between the acknowledgement and the SIGKILL: 0 sometimes, else up to MAX_KILL_DELAY."""
    immediate = rng.random() < IMMEDIATE_SHARE
    delay = rng.uniform(0.0, MAX_KILL_DELAY)  # drawn every cycle, so a seed always gives the same sequence
    return 0.0 if immediate else delay


def kill_cycles(emulator: Emulator, data_dir: Path, kills: int, seed: int) -> KillReport:
    rng = random.Random(seed)
    zone, end_of_day = _quiet_zone()
    env = demo_environment(emulator, str(data_dir))  # the environment minus AWS_/EMR_/SLACK_, plus the demo's
    env |= {
        "EMR_POLL_SECONDS": "0.3",
        "EMR_TIMEZONE": zone,
        "EMR_END_OF_DAY": end_of_day,
        "EMR_IDLE_MINUTES": "60",
        "EMR_WARN_MINUTES": "45",  # the end-of-day warning is due at the first tick
    }
    report = KillReport(seed=seed)
    acknowledged: int | None = None  # the last cycle whose hold the bot acknowledged
    baseline: dict[str, object] | None = None
    for cycle in range(kills):
        delay = kill_delay(rng)
        console = Console.errbot(env)
        try:
            console.wait_for("[@admin ➡ @errbot]", timeout=60)
            if cycle == 0:
                console.wait_for("End of day", timeout=30)
            else:
                report.repeated_warnings += console.drain(0.7).count("End of day")
            console.type(f"!emr lock reason-{cycle}")
            try:
                reply = console.wait_for_line("holds analytics", timeout=30)
            except AssertionError:
                report.problems.append(f"cycle {cycle}: no acknowledgement within 30 s")
            else:
                if re.search(rf"\breason-{cycle}(?!\d)", reply):
                    acknowledged = cycle
                    report.acknowledged += 1
                    report.delays.append(delay)
                    if delay:
                        console.drain(delay)  # keep reading: the bot must not block on a full pipe
                else:
                    report.problems.append(f"cycle {cycle}: the reply does not name reason-{cycle}: {reply!r}")
            console.kill9()
        finally:
            console.ensure_dead()
        report.kills += 1
        try:
            stored = read_plugin_storage(data_dir)
        except Exception as error:  # a corrupted database
            report.corrupted += 1
            report.problems.append(f"cycle {cycle}: {error!r}")
            continue
        clusters = stored.get("state", {}).get("clusters", {})
        record = next(iter(clusters.values()), None)
        if acknowledged is not None:
            reasons = [h["reason"] for h in (record or {}).get("holds", [])]
            # The hold may carry a later reason than the last acknowledged one (a lock
            # that landed unacknowledged), never an earlier one, and never be missing.
            if not reasons or int(reasons[0].split("-")[1]) < acknowledged:
                report.lost += 1
                report.problems.append(f"cycle {cycle}: acknowledged reason-{acknowledged}, stored {reasons}")
        if record is not None:
            current = {"first_seen": record["first_seen"], "token": stored.get("sts", {}).get("access_key")}
            warned = set(record["warned"])
            if baseline is None and warned:
                baseline = {**current, "warned": warned}
            elif baseline is not None and (
                current["first_seen"] != baseline["first_seen"]
                or current["token"] != baseline["token"]
                or not baseline["warned"] <= warned
            ):  # type: ignore[operator]
                report.lost += 1
                report.problems.append(f"cycle {cycle}: clock/token/warnings changed: {current} vs {baseline}")
    report.assume_roles = emulator.count("AssumeRole")
    return report
