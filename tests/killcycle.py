"""kill -9 the real bot at random points and check that nothing it acknowledged is lost.

One emulator and one data dir across all cycles. Each cycle starts ``errbot``
(Text backend, SQLite storage, poller every 0.3 s), sends ``!emr lock
reason-N``, and kills the process with SIGKILL either right after the reply or
at a random moment (possibly before it). Then the storage file is read as the
bot left it and checked:

* the hold is there with the last *acknowledged* reason (or a later one that
  landed just before the kill) — an acknowledged hold is never lost;
* the idle clock (``first_seen``) and the warnings already sent are unchanged;
* the STS token is the one of the first cycle (no AssumeRole after a restart);
* the database passes ``PRAGMA integrity_check``;
* the end-of-day warning, sent once in the first cycle, is never sent again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from console import Console, read_plugin_storage

from demo.__main__ import demo_environment
from demo.emulator import Emulator


@dataclass
class KillReport:
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    corrupted: int = 0
    repeated_warnings: int = 0
    assume_roles: int = 0
    problems: list[str] = field(default_factory=list)


def _quiet_zone() -> tuple[str, str]:
    """A zone where now+40 min is still today, and that end-of-day time (HH:MM)."""
    for name in ("UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"):
        local = datetime.now(UTC).astimezone(ZoneInfo(name))
        eod = local + timedelta(minutes=40)
        if eod.date() == local.date() and local.hour >= 1:
            return name, eod.strftime("%H:%M")
    raise RuntimeError("no suitable time zone")  # pragma: no cover - five zones cannot all be near midnight


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
    report = KillReport()
    acknowledged: int | None = None
    baseline: dict[str, object] | None = None
    for cycle in range(kills):
        console = Console.errbot(env)
        try:
            console.wait_for("[@admin ➡ @errbot]", timeout=60)
            if cycle == 0:
                console.wait_for("End of day", timeout=30)
            else:
                report.repeated_warnings += console.drain(0.7).count("End of day")
            console.type(f"!emr lock reason-{cycle}")
            if rng.random() < 0.5:
                console.wait_for("holds analytics", timeout=30)
            else:
                console.drain(rng.uniform(0.0, 0.08))  # often before the reply, sometimes mid-write
            if f"reason-{cycle}" in console.text() and "holds analytics" in console.text():
                acknowledged = cycle
            console.kill9()
        finally:
            console.ensure_dead()
        report.kills += 1
        report.acknowledged += int(acknowledged == cycle)
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
