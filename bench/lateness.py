"""Section 6 — termination lateness: how long after its deadline an automatic rule terminates a cluster.

The contract (DESIGN §6): "a rule acts within one ``POLL_SECONDS`` of its
deadline". Here the bot polls every 30 s (the default) on a moved clock, and the
deadlines fall at random offsets from its ticks, so the figure is measured, not
set by the scenario's own tick offsets.

Method, per scenario: a fresh emulator (one managed cluster ``analytics``, one
unmanaged ``etl-nightly``) and a fresh bot (Errbot's test backend, SQLite
storage, empty data dir). The process clock is frozen and moved
(time-machine, as the test suite does); ``plugin.tick()`` — what Errbot's
poller thread calls — is called at ``t0 + k × 30 s``, with ``t0`` drawn from the
seeded RNG to the microsecond. Commands (``!emr status``, ``lock``,
``unlock``, ``overtime``) are said at random moments between ticks. Ticks more
than 35 minutes before the deadline are thinned to every 10th of the grid (the
grid, hence the phase, is kept) so that a five-hour overtime costs seconds.

The deadline is computed here from the configuration and what the scenario
did, never read from the plugin:

* ``idle: first seen`` — unheld; the bot first sees the cluster with a
  ``!emr status`` at a random moment: deadline = max(ready time from
  ``DescribeCluster``, that moment) + ``IDLE_MINUTES``;
* ``idle: last hold dropped`` — locked, then unlocked at a random moment:
  deadline = that moment + ``IDLE_MINUTES``;
* ``end of day`` — held, ``END_OF_DAY`` at a random minute 17:00–20:59 in a
  random zone (Tokyo, Berlin, New York) on a random day of 2026: deadline =
  that local time, converted with :mod:`zoneinfo`;
* ``overtime end`` — held, ``!emr overtime HH:MM`` with HH:MM 30 min–5 h after
  that end of day (past midnight means the next morning): deadline = that local time.
  The holder works late: they confirm the hold (``!emr lock``) every 90 minutes, so the
  forgotten-hold rule (DESIGN §11) does not end it first. (Before, nobody confirmed on an idle
  cluster, so after ``HOLD_REMIND_MINUTES`` + ``HOLD_GRACE_MINUTES`` the hold ended and the idle
  rule rightly terminated the cluster ``IDLE_MINUTES`` later, before the overtime deadline: the
  bench printed MISSED, lateness −2156.8 s, for right behaviour);
* ``hold expiry`` — that behaviour, measured: held and forgotten on an idle cluster (no
  confirmation, no work, END_OF_DAY off): deadline = the hold's start + ``HOLD_REMIND_MINUTES``
  (the reminder) + ``HOLD_GRACE_MINUTES`` (the hold ends) + ``IDLE_MINUTES`` (the idle rule). Each
  of the three acts at the first tick at or after its own deadline; on a fixed tick grid the two
  later deadlines fall on ticks, so the chain is within one poll too. Ticks are dense near the
  reminder's deadline as near the termination's.

Lateness = time of the tick during which the emulator received
``TerminateJobFlows`` − deadline. A termination before the deadline would show
as negative lateness; none within 10 minutes after it, as "missed".
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.harness import Bot, MovedClock, Section, Target, emr_config, table
from demo.emulator import Emulator

DEFAULT_SEED = 20261201
POLL_SECONDS = 30  # the plugin's default interval
IDLE_MINUTES = 30  # the plugin's default, set explicitly so the deadline below matches the config
POLL = timedelta(seconds=POLL_SECONDS)
DENSE = timedelta(minutes=35)  # every tick of the grid this close to the deadline
SPARSE_EVERY = 10  # farther away, every 10th tick of the grid
GIVE_UP = timedelta(minutes=10)  # no termination this long after the deadline: missed
ZONES = ("Asia/Tokyo", "Europe/Berlin", "America/New_York")
REMIND_MINUTES = 120  # the plugin's HOLD_REMIND_MINUTES default, set explicitly (the hold-expiry deadline)
GRACE_MINUTES = 15  # HOLD_GRACE_MINUTES, likewise
CONFIRM_EVERY = timedelta(minutes=90)  # a holder working late confirms the hold this often (< REMIND_MINUTES)
KINDS = ("idle: first seen", "idle: last hold dropped", "end of day", "overtime end", "hold expiry")


@dataclass(frozen=True)
class Outcome:
    kind: str
    zone: str
    deadline: datetime
    terminated_tick: datetime | None  # the tick during which TerminateJobFlows arrived
    ticks: int
    problem: str = ""

    @property
    def lateness(self) -> float | None:
        if self.terminated_tick is None:
            return None
        return (self.terminated_tick - self.deadline).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "zone": self.zone,
            "deadline": self.deadline.isoformat(),
            "terminated_tick": self.terminated_tick.isoformat() if self.terminated_tick else None,
            "lateness_seconds": self.lateness,
            "ticks": self.ticks,
            "problem": self.problem,
        }


def _seconds(rng: random.Random, low: float, high: float) -> timedelta:
    """A random duration in [low, high) seconds, to the microsecond (datetime's resolution)."""
    return timedelta(microseconds=round(rng.uniform(low, high) * 1_000_000))


def _local(day: date, at: time, zone: str) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


class _Run:
    """One scenario: its clock, emulator, bot and tick grid."""

    def __init__(self, emulator: Emulator, clock: MovedClock, data_dir: Path, start: datetime, **config: Any) -> None:
        self.emulator = emulator
        self.clock = clock
        clock.set(start)
        emulator.reset()
        seeded = emulator.seed()
        self.cluster_id = seeded.managed_id
        self.unmanaged_id = seeded.unmanaged_id
        self.bot = Bot(
            data_dir,
            emr_config(
                emulator,
                IDLE_MINUTES=IDLE_MINUTES,
                HOLD_REMIND_MINUTES=REMIND_MINUTES,
                HOLD_GRACE_MINUTES=GRACE_MINUTES,
                **config,
            ),
        ).start()

    def say_at(self, moment: datetime, text: str) -> str:
        self.clock.set(moment)
        reply, _ = self.bot.say(text)
        return reply

    def ready_time(self) -> datetime:
        ready = self.emulator.emr_b().describe_cluster(ClusterId=self.cluster_id)["Cluster"]["Status"]["Timeline"]
        return ready["ReadyDateTime"].astimezone(UTC)

    def ticks_until_terminated(
        self,
        t0: datetime,
        deadline: datetime,
        events: Sequence[tuple[datetime, Callable[[], None]]] = (),
        dense_near: Sequence[datetime] = (),
    ) -> tuple[datetime | None, int, str]:
        """Tick at t0 + k × POLL (thinned far from *deadline* and *dense_near*), running *events* at their
        moments in between.

        Returns the tick during which TerminateJobFlows arrived, the ticks called, and a problem, if any.
        """
        pending = sorted(events, key=lambda e: e[0])
        ticks = 0
        k = 0
        while True:
            at = t0 + k * POLL
            k += 1
            while pending and pending[0][0] < at:
                moment, action = pending.pop(0)
                self.clock.set(moment)
                action()
            if at > deadline + GIVE_UP:
                return None, ticks, f"no termination by {GIVE_UP} after the deadline"
            near = any(abs(at - moment) <= DENSE for moment in dense_near)
            if at < deadline - DENSE and not near and (k - 1) % SPARSE_EVERY:
                continue
            self.clock.set(at)
            before = self.emulator.count("TerminateJobFlows")
            self.bot.plugin.tick()
            ticks += 1
            if self.emulator.count("TerminateJobFlows") > before:
                problem = ""
                if self.emulator.cluster_state(self.cluster_id) != "TERMINATED":
                    problem = (
                        f"TerminateJobFlows seen but the cluster is {self.emulator.cluster_state(self.cluster_id)}"
                    )
                if self.emulator.cluster_state(self.unmanaged_id) != "WAITING":
                    problem = "the unmanaged cluster was touched"
                return at, ticks, problem

    def stop(self) -> None:
        self.bot.stop()


def _idle_first_seen(run: _Run, rng: random.Random, start: datetime) -> tuple[datetime, int, datetime | None, str]:
    seen = start + _seconds(rng, 60, 600)
    reply = run.say_at(seen, "!emr status")
    if "analytics" not in reply:
        return seen, 0, None, f"unexpected status reply: {reply[:120]}"
    deadline = max(run.ready_time(), seen) + timedelta(minutes=IDLE_MINUTES)
    t0 = seen + _seconds(rng, 0, POLL_SECONDS)
    tick, ticks, problem = run.ticks_until_terminated(t0, deadline)
    return deadline, ticks, tick, problem


def _idle_last_release(run: _Run, rng: random.Random, start: datetime) -> tuple[datetime, int, datetime | None, str]:
    seen = start + _seconds(rng, 60, 600)
    reply = run.say_at(seen, "!emr lock")
    if not reply.startswith("🔒"):
        return seen, 0, None, f"unexpected lock reply: {reply[:120]}"
    t0 = seen + _seconds(rng, 0, POLL_SECONDS)
    released = t0 + _seconds(rng, 5 * 60, 20 * 60)
    replies: list[str] = []
    deadline = max(run.ready_time(), seen, released) + timedelta(minutes=IDLE_MINUTES)
    tick, ticks, problem = run.ticks_until_terminated(
        t0, deadline, [(released, lambda: replies.append(run.bot.say("!emr unlock")[0]))]
    )
    if not problem and not (replies and replies[0].startswith("🔓")):
        problem = f"unexpected unlock reply: {replies[:1]}"
    return deadline, ticks, tick, problem


def _hold_expiry(run: _Run, rng: random.Random, start: datetime) -> tuple[datetime, int, datetime | None, str]:
    seen = start + _seconds(rng, 60, 600)
    reply = run.say_at(seen, "!emr lock analytics a look, then forgotten")
    if not reply.startswith("🔒"):
        return seen, 0, None, f"unexpected lock reply: {reply[:120]}"
    reminded = seen + timedelta(minutes=REMIND_MINUTES)
    deadline = reminded + timedelta(minutes=GRACE_MINUTES + IDLE_MINUTES)
    t0 = seen + _seconds(rng, 0, POLL_SECONDS)
    tick, ticks, problem = run.ticks_until_terminated(t0, deadline, dense_near=[reminded])
    return deadline, ticks, tick, problem


def _end_of_day(emulator: Emulator, clock: MovedClock, data_dir: Path, rng: random.Random, overtime: bool) -> Outcome:
    zone = rng.choice(ZONES)
    day = date(2026, 1, 1) + timedelta(days=rng.randrange(365))
    end = time(rng.randint(17, 20), rng.randrange(60))
    end_utc = _local(day, end, zone)
    start = end_utc - _seconds(rng, 50 * 60, 60 * 60)
    run = _Run(emulator, clock, data_dir, start, END_OF_DAY=f"{end:%H:%M}", TIMEZONE=zone)
    kind = KINDS[3] if overtime else KINDS[2]
    try:
        said = start + _seconds(rng, 10, 120)
        reply = run.say_at(said, "!emr lock analytics working late")
        if not reply.startswith("🔒"):
            return Outcome(kind, zone, end_utc, None, 0, f"unexpected lock reply: {reply[:120]}")
        deadline = end_utc
        if overtime:
            # The wall-clock time HH:MM, 30 min to 5 h after END_OF_DAY; past midnight it is the next morning.
            wall = datetime.combine(day, end) + timedelta(minutes=rng.randint(30, 300))
            until = wall.time()
            deadline = _local(day if until > end else day + timedelta(days=1), until, zone)
            reply = run.say_at(said + _seconds(rng, 1, 60), f"!emr overtime analytics {until:%H:%M}")
            if not reply.startswith("🌙") or f"{until:%H:%M}" not in reply:
                return Outcome(kind, zone, deadline, None, 0, f"unexpected overtime reply: {reply[:160]}")
        t0 = clock.now + _seconds(rng, 0, POLL_SECONDS)
        # Working late: the holder confirms the hold before the forgotten-hold rule would ask (DESIGN §11).
        confirmations: list[str] = []
        moments = [said + CONFIRM_EVERY * k for k in range(1, 8) if said + CONFIRM_EVERY * k < deadline]
        events = [(m, lambda: confirmations.append(run.bot.say("!emr lock analytics")[0])) for m in moments]
        tick, ticks, problem = run.ticks_until_terminated(t0, deadline, events)
        if not problem and not all(c.startswith("🔒") for c in confirmations):
            problem = f"unexpected confirmation reply: {[c for c in confirmations if not c.startswith('🔒')][:1]}"
        return Outcome(kind, zone, deadline, tick, ticks, problem)
    finally:
        run.stop()


def _idle(emulator: Emulator, clock: MovedClock, data_dir: Path, rng: random.Random, kind: str) -> Outcome:
    zone = rng.choice(ZONES)
    day = date(2026, 1, 1) + timedelta(days=rng.randrange(365))
    start = _local(day, time(9), zone) + _seconds(rng, 0, 4 * 3600)  # a random moment of the morning
    run = _Run(emulator, clock, data_dir, start, END_OF_DAY="off", TIMEZONE=zone)
    try:
        scenario = {KINDS[0]: _idle_first_seen, KINDS[1]: _idle_last_release, KINDS[4]: _hold_expiry}[kind]
        deadline, ticks, tick, problem = scenario(run, rng, start)
        return Outcome(kind, zone, deadline, tick, ticks, problem)
    finally:
        run.stop()


def scenario(emulator: Emulator, clock: MovedClock, data_dir: Path, rng: random.Random, kind: str) -> Outcome:
    if kind in (KINDS[0], KINDS[1], KINDS[4]):
        return _idle(emulator, clock, data_dir, rng, kind)
    return _end_of_day(emulator, clock, data_dir, rng, overtime=kind == KINDS[3])


def _row(name: str, outcomes: list[Outcome]) -> list[object]:
    late = [o.lateness for o in outcomes if o.lateness is not None]
    missed = sum(1 for o in outcomes if o.lateness is None)
    if not late:
        return [name, len(outcomes), "", "", "", missed]
    return [
        name,
        len(outcomes),
        f"{min(late):.1f}",
        f"{statistics.median(late):.1f}",
        f"{max(late):.1f}",
        missed,
    ]


def run(emulator: Emulator, workdir: Path, *, scenarios: int, seed: int) -> Section:
    section = Section("lateness", "6. Termination lateness: automatic terminations against their deadlines")
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    with MovedClock(datetime(2026, 1, 1, tzinfo=UTC)) as clock:
        for i in range(scenarios):
            kind = KINDS[i % len(KINDS)]
            outcomes.append(scenario(emulator, clock, workdir / f"lateness-{i}", rng, kind))

    late = [o.lateness for o in outcomes if o.lateness is not None]
    problems = [o for o in outcomes if o.problem or o.lateness is None]
    section.say(
        f"seed {seed} (--seed N to change), {scenarios} scenarios, poller every {POLL_SECONDS} s on a moved "
        f"clock, tick grid at a random offset (to the µs) from each deadline; IDLE_MINUTES {IDLE_MINUTES}. "
        "Lateness = tick that sent TerminateJobFlows − deadline computed from the config.",
        "",
        *table(
            ["scenario", "n", "min s", "median s", "max s", "missed"],
            [*(_row(kind, [o for o in outcomes if o.kind == kind]) for kind in KINDS), _row("all", outcomes)],
        ),
        "",
        f"  bound (one poll interval): {POLL_SECONDS} s; ticks called: {sum(o.ticks for o in outcomes)}",
    )
    if late:
        worst = max((o for o in outcomes if o.lateness is not None), key=lambda o: o.lateness or 0.0)
        local = worst.deadline.astimezone(ZoneInfo(worst.zone))
        section.say(
            f"  latest: {worst.kind}, {worst.zone}, deadline {local:%Y-%m-%d %H:%M:%S.%f} local, "
            f"terminated by the tick at +{worst.lateness:.3f} s"
        )
    for o in problems[:5]:
        section.say(f"  PROBLEM: {o.kind}, {o.zone}, deadline {o.deadline.isoformat()}: {o.problem or 'missed'}")
    section.data = {
        "seed": seed,
        "scenarios": scenarios,
        "poll_seconds": POLL_SECONDS,
        "min_seconds": min(late) if late else None,
        "median_seconds": statistics.median(late) if late else None,
        "max_seconds": max(late) if late else None,
        "outcomes": [o.as_dict() for o in outcomes],
    }
    within = bool(late) and not problems and all(0 <= x <= POLL_SECONDS for x in late)
    section.targets.append(
        Target(
            "automatic rules: a termination within one poll interval of its deadline (DESIGN §6)",
            f"0 ≤ lateness ≤ {POLL_SECONDS} s in every scenario",
            (
                f"{len(late)} of {scenarios} terminated; lateness min {min(late):.1f} / median "
                f"{statistics.median(late):.1f} / max {max(late):.1f} s (seed {seed})"
                if late
                else f"0 of {scenarios} terminated"
            ),
            within,
        )
    )
    return section
