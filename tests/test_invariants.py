"""Safety invariants under random sequences (Hypothesis, stateful), with the real plugin and moto.

Random interleavings of lock / unlock / terminate (with and without --force)
/ time steps / restarts / new clusters / AWS faults (5xx,
AccessDenied, expired tokens, injected by a proxy between bot and emulator):

* never terminate an unmanaged cluster;
* never terminate a cluster held by others, except by an admin's --force or
  the end-of-day rule;
* never lose a hold the bot acknowledged;
* always terminate an unheld WAITING cluster within IDLE_MINUTES plus one
  tick (checked for cluster lives without injected faults, since a fault may
  legitimately delay a termination);
* YARN work counts (``IsIdle`` = 0 published in account B, as EMR does): an
  unheld cluster is never terminated by the idle rule while its work runs, and
  its idle clock counts from the end of the work (allowing the bot one
  activity read, every 5 minutes, to learn of it);
* a hold confirmed (``!emr lock`` by its holder) within HOLD_REMIND_MINUTES +
  HOLD_GRACE_MINUTES is never expired; an older one may expire, and then the
  idle clock starts at its expiry;
* never crash: no command answers with the plugin's apology for an unexpected
  exception, and no ERROR record is logged (by a command, a tick or a restart),
  checked after every step. Injected AWS faults are expected failures: they
  must come out as one-line refusals and warnings, not as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp
from zoneinfo import ZoneInfo

import pytest
from faultproxy import FaultProxy
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import APOLOGY, MORNING, Chat, Clock, LoggedErrors, emr_config, publish_is_idle
from demo.emulator import Emulator

TICK = timedelta(minutes=2)
IDLE = timedelta(minutes=30)
PERIOD = timedelta(minutes=5)  # IsIdle's period, and the bot's activity reads
READ_LAG = PERIOD + TICK  # the longest a bot may go without reading IsIdle
REMIND = timedelta(minutes=60)
GRACE = timedelta(minutes=10)
TOKYO = ZoneInfo("Asia/Tokyo")
USERS = ("alice", "bob", "admin")


def end_of_day_between(start: datetime, end: datetime) -> bool:
    """Is there a local 19:00 in (start, end]?"""
    day = start.astimezone(TOKYO).date()
    while True:
        eod = datetime(day.year, day.month, day.day, 19, 0, tzinfo=TOKYO)
        if eod > end:
            return False
        if eod > start:
            return True
        day += timedelta(days=1)


@dataclass
class Model:
    """What the bot should believe about the current managed cluster."""

    cluster: str
    idle_since: datetime
    holds: dict[str, datetime] = field(default_factory=dict)  # user -> last confirmed (lock) time
    alive: bool = True
    faulted: bool = False  # a fault was injected during this cluster's life
    work_from: datetime | None = None  # the latest YARN work published: from …
    work_until: datetime | None = None  # … to the end of its last 5-minute period
    idle_before_work: datetime | None = None  # the idle clock as it was before that work

    def idle_from(self, moment: datetime) -> datetime:
        """The idle clock starting at *moment*, or at the end of known work if later."""
        return max(moment, self.work_until) if self.work_until else moment


class BotMachine(RuleBasedStateMachine):
    emulator: Emulator  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.errors = LoggedErrors().__enter__()  # detached in teardown
        self.clock = Clock(MORNING)
        self.emulator.reset()
        seeded = self.emulator.seed(managed_names=(), unmanaged_names=("etl-nightly",))
        self.unmanaged = seeded.unmanaged_id
        self.proxy = FaultProxy(self.emulator.url).__enter__()
        config = emr_config(
            self.emulator,
            POLL_SECONDS=120,
            ENDPOINT_URL=self.proxy.url,
            HOLD_REMIND_MINUTES=int(REMIND.total_seconds() // 60),
            HOLD_GRACE_MINUTES=int(GRACE.total_seconds() // 60),
        )
        self.chat = Chat(Path(mkdtemp()) / "data", config, self.clock).start()
        self.model: Model | None = None
        self.last_step = self.clock.now

    def teardown(self) -> None:
        try:
            self.chat.drain()  # errbot's test backend logs an ERROR for messages left in its queue
            self.chat.stop()
            self.proxy.__exit__()
            self.clock.stop()
        finally:
            self.errors.__exit__(None, None, None)

    def say(self, text: str, user: str) -> str:
        reply = self.chat.say(text, user=user)
        assert APOLOGY not in reply, f"{text!r} by {user} crashed: {reply}"
        return reply

    @initialize()
    def start_cluster(self) -> None:
        self.new_cluster()

    def new_cluster(self) -> None:
        cluster = self.emulator.run_cluster("analytics")
        self.chat.tick()  # the bot sees it now
        self.model = Model(cluster, idle_since=self.clock.now)

    @precondition(lambda self: self.model is not None and not self.model.alive)
    @rule()
    def another_cluster(self) -> None:
        self.new_cluster()

    @precondition(lambda self: self.model is not None and self.model.alive)
    @rule(user=st.sampled_from(USERS))
    def lock(self, user: str) -> None:
        reply = self.say("!emr lock analytics", user=user)
        assert self.model is not None
        if reply.startswith("🔒") and self.emulator.cluster_state(self.model.cluster) != "TERMINATED":
            self.model.holds[user] = self.clock.now
        else:
            assert reply.startswith("✗")

    @precondition(lambda self: self.model is not None and self.model.alive)
    @rule(user=st.sampled_from(USERS))
    def unlock(self, user: str) -> None:
        reply = self.say("!emr unlock analytics", user=user)
        assert self.model is not None
        if reply.startswith("🔓"):
            assert user in self.model.holds, reply
            del self.model.holds[user]
            if not self.model.holds:
                self.model.idle_since = self.model.idle_from(self.clock.now)
        else:
            assert reply.startswith("✗"), reply  # not a holder, or an AWS fault: the hold stays

    @precondition(lambda self: self.model is not None and self.model.alive)
    @rule(user=st.sampled_from(USERS), force=st.booleans())
    def terminate(self, user: str, force: bool) -> None:
        assert self.model is not None
        reply = self.say("!emr terminate analytics" + (" --force" if force else ""), user=user)
        others = set(self.model.holds) - {user}
        if others and not (force and user == "admin"):
            assert reply.startswith("✗"), reply
            assert self.emulator.cluster_state(self.model.cluster) == "WAITING"
        elif reply.startswith("🛑"):
            self.model.alive = False
            self.model.holds.clear()
        else:
            assert reply.startswith("✗"), reply  # an AWS fault: one line, and nothing changed
            assert self.emulator.cluster_state(self.model.cluster) == "WAITING"

    @rule(minutes=st.integers(min_value=1, max_value=60))
    def time_passes(self, minutes: int) -> None:
        end = self.clock.now + timedelta(minutes=minutes)
        while self.clock.now + TICK <= end:
            self.clock.advance(seconds=TICK.total_seconds())
            self.chat.tick()
            self.check_terminations()
            self.no_acknowledged_hold_is_lost()  # after every tick: an early expiry is seen when it happens
        self.clock.set(end)

    @precondition(lambda self: self.model is not None and self.model.alive)
    @rule(minutes=st.integers(min_value=15, max_value=90))
    def yarn_work(self, minutes: int) -> None:
        """A Spark shell on the cluster without a lock: IsIdle = 0 for the coming minutes, then 1 again."""
        assert self.model is not None
        now = self.clock.now
        start = now - timedelta(seconds=now.timestamp() % PERIOD.total_seconds())
        end = start + timedelta(minutes=minutes)
        points = []
        moment = start
        while moment <= end:
            points.append((moment, 0))
            moment += PERIOD
        work_until = moment  # the end of the last period with work
        for _ in range(36):  # then idle datapoints for three hours, as EMR publishes them
            points.append((moment, 1))
            moment += PERIOD
        publish_is_idle(self.emulator, self.model.cluster, points)
        self.model.idle_before_work = self.model.idle_since
        self.model.work_from, self.model.work_until = now, work_until
        if not self.model.holds:
            self.model.idle_since = self.model.idle_from(self.model.idle_since)

    @rule()
    def restart(self) -> None:
        self.chat.drain()  # the announcements so far: errbot's test backend logs an ERROR for leftovers
        self.chat.restart()

    @rule(
        # Throttling is left to test_faults.py: botocore's real backoff sleeps would dominate the run.
        kind=st.sampled_from(["server_error", "denied", "expired"]),
        action=st.sampled_from(["ListClusters", "TerminateJobFlows", "DescribeCluster"]),
        times=st.integers(min_value=1, max_value=2),
    )
    def aws_fault(self, kind: str, action: str, times: int) -> None:
        self.proxy.inject(kind, action, times)
        if self.model is not None:
            self.model.faulted = True

    def check_terminations(self) -> None:
        """After each tick: a termination the model did not ask for must be allowed by a rule."""
        model = self.model
        if model is None or not model.alive:
            return
        now = self.clock.now
        if self.emulator.cluster_state(model.cluster) != "TERMINATED":
            return
        if model.holds:
            first_hold = min(model.holds.values())
            assert end_of_day_between(first_hold, now), f"held cluster terminated at {now} before end of day"
        else:
            eod = end_of_day_between(model.idle_since, now)
            # Work published less than one activity read ago may not be known to the bot yet.
            unread = model.work_from is not None and now < model.work_from + READ_LAG
            earliest = model.idle_before_work if unread and model.idle_before_work else model.idle_since
            assert eod or now >= earliest + IDLE, f"terminated at {now}, idle only since {model.idle_since}"
        model.alive = False
        model.holds.clear()

    @invariant()
    def nothing_crashed(self) -> None:
        assert not self.errors.records, self.errors.summary()

    @invariant()
    def unmanaged_cluster_is_never_touched(self) -> None:
        assert self.emulator.cluster_state(self.unmanaged) == "WAITING"

    @invariant()
    def no_acknowledged_hold_is_lost(self) -> None:
        """A hold confirmed within REMIND + GRACE is stored; an older one may have expired (and says so)."""
        model = self.model
        if model is None or not model.alive or self.emulator.cluster_state(model.cluster) == "TERMINATED":
            return
        state = self.chat.plugin.get("state") or {}
        record = state.get("clusters", {}).get(model.cluster, {})
        stored = {hold["user"] for hold in record.get("holds", [])}
        now = self.clock.now
        for user, confirmed in list(model.holds.items()):
            if user in stored:
                continue
            assert now - confirmed >= REMIND + GRACE, f"{user}'s hold, confirmed at {confirmed}, is gone at {now}"
            expiry = [
                datetime.fromisoformat(e["at"])
                for e in state.get("history", [])
                if e["kind"] == "expired" and e["cluster"] == model.cluster and e["who"] == user
            ]
            assert expiry and expiry[-1] >= confirmed + REMIND + GRACE, f"{user}'s hold vanished without expiring"
            del model.holds[user]
            if not model.holds:
                model.idle_since = model.idle_from(expiry[-1])

    @invariant()
    def an_unheld_waiting_cluster_dies_within_idle_plus_one_tick(self) -> None:
        model = self.model
        if model is None or not model.alive or model.holds or model.faulted:
            return
        if model.work_until is not None and self.clock.now < model.work_until + READ_LAG:
            return  # the bot learns of the end of the work at its next activity read
        lag = READ_LAG if model.work_until is not None else timedelta(0)  # the bot reads IsIdle every 5 minutes
        if self.clock.now >= model.idle_since + IDLE + TICK + lag:
            assert self.emulator.cluster_state(model.cluster) == "TERMINATED", (
                f"idle since {model.idle_since}, still alive at {self.clock.now}"
            )
            model.alive = False


@pytest.mark.slow
def test_safety_invariants_hold_under_random_sequences(emulator: Emulator) -> None:
    BotMachine.emulator = emulator
    run_state_machine_as_test(
        BotMachine,
        settings=settings(
            max_examples=9,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )
