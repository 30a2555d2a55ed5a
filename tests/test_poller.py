"""Automatic termination with the real plugin, Errbot's test backend and moto: time is moved, ticks are called.

Each scenario asserts the cluster's real state in the emulator and what was
announced in NOTIFY_CHANNEL. Ticks come every ``POLL`` seconds of moved time,
offset from the deadlines so that lateness is measured, not assumed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import LATENESS, MORNING, Chat, Clock, emr_config
from demo.emulator import Emulator, Seeded

POLL = timedelta(seconds=30)
OFFSET = timedelta(seconds=7)  # ticks at :07 and :37 past each minute


@pytest.fixture
def chat(tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock) -> Iterator[Chat]:
    """These scenarios hold clusters for hours without work to test the idle and end-of-day rules:
    hold reminders (DESIGN §11, tests/test_activity.py) are switched off here so holds stay."""
    bot = Chat(tmp_path / "data", emr_config(emulator, HOLD_REMIND_MINUTES="off"), clock).start()
    bot.drain()
    try:
        yield bot
    finally:
        bot.stop()


def run_until(chat: Chat, clock: Clock, moment: datetime, every: timedelta = POLL) -> None:
    """Tick every *every* of moved time until *moment* (inclusive)."""
    while clock.now + every <= moment:
        clock.advance(seconds=every.total_seconds())
        chat.tick()


def first_tick(chat: Chat, clock: Clock) -> None:
    clock.advance(seconds=OFFSET.total_seconds())
    chat.tick()


def terminated_at(chat: Chat, deadline: datetime) -> datetime:
    """When the termination was announced; records its lateness against *deadline*."""
    (when, _), *more = chat.announced("🛑 Terminated")
    assert more == [], "announced more than once"
    lateness = (when - deadline).total_seconds()
    LATENESS.append(lateness)
    assert 0 <= lateness <= POLL.total_seconds(), lateness
    return when


def test_an_unlocked_cluster_is_warned_at_25_and_terminated_at_30_minutes(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    run_until(chat, clock, MORNING + timedelta(minutes=24, seconds=50))
    assert chat.announcements() == []
    run_until(chat, clock, MORNING + timedelta(minutes=29, seconds=50))
    warnings = chat.announced("⏳")
    assert len(warnings) == 1
    when, text = warnings[0]
    assert MORNING + timedelta(minutes=25) <= when < MORNING + timedelta(minutes=25) + POLL
    assert "analytics" in text and "terminated at 10:30 unless someone says `!emr lock`" in text
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    run_until(chat, clock, MORNING + timedelta(minutes=31))
    terminated_at(chat, MORNING + timedelta(minutes=30))
    assert "nobody held it for 30 minutes" in chat.announced("🛑")[0][1]
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
    history = chat.say("!emr history")
    assert "warning analytics" in history and "terminated analytics" in history and "idle rule" in history


def test_a_lock_keeps_it_alive_and_the_unlock_starts_thirty_minutes(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    run_until(chat, clock, MORNING + timedelta(minutes=20))
    chat.say("!emr lock", user="alice")
    run_until(chat, clock, MORNING + timedelta(minutes=60))
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    chat.say("!emr lock", user="bob")
    chat.say("!emr unlock", user="alice")
    run_until(chat, clock, MORNING + timedelta(minutes=120))
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"  # bob still holds it
    assert chat.announcements() == []
    released = clock.now
    chat.say("!emr unlock", user="bob")
    run_until(chat, clock, released + timedelta(minutes=31))
    terminated_at(chat, released + timedelta(minutes=30))
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"


def test_a_running_step_is_never_idle_and_waiting_again_restarts_the_clock(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    emulator.set_cluster_state(seeded.managed_id, "RUNNING")
    first_tick(chat, clock)
    run_until(chat, clock, MORNING + timedelta(minutes=90))
    assert emulator.cluster_state(seeded.managed_id) == "RUNNING"
    assert "not idle while RUNNING" in chat.say("!emr status")
    emulator.set_cluster_state(seeded.managed_id, "WAITING")
    clock.advance(seconds=30)
    chat.tick()  # the first tick that sees it WAITING again
    back = clock.now
    run_until(chat, clock, back + timedelta(minutes=29))
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    run_until(chat, clock, back + timedelta(minutes=31))
    terminated_at(chat, back + timedelta(minutes=30))


def test_an_old_unheld_cluster_first_seen_gets_thirty_minutes_grace(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    clock.advance(hours=4)  # the cluster has been up (and idle) for four hours before the bot starts
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        first_tick(bot, clock)
        seen = clock.now
        run_until(bot, clock, seen + timedelta(minutes=29))
        assert emulator.cluster_state(seeded.managed_id) == "WAITING"
        run_until(bot, clock, seen + timedelta(minutes=31))
        terminated_at(bot, seen + timedelta(minutes=30))
    finally:
        bot.stop()


def test_end_of_day_warns_the_holders_terminates_held_clusters_and_respects_overtime(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    other = emulator.run_cluster("adhoc")
    first_tick(chat, clock)
    chat.say("!emr lock analytics nightly report", user="alice")
    chat.say("!emr lock adhoc", user="bob")
    reply = chat.say("!emr overtime adhoc 21:00", user="bob")
    assert reply.startswith("🌙 adhoc") and "until 21:00" in reply
    assert "overtime until 21:00" in chat.say("!emr status adhoc")
    eod = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 19:00 JST
    run_until(chat, clock, eod - timedelta(minutes=10), every=timedelta(minutes=10))
    run_until(chat, clock, eod - timedelta(seconds=10))
    (warned, text), *rest = chat.announced("⏳ End of day")
    assert rest == []
    assert "analytics" in text and "@alice" in text and "terminated at 19:00" in text
    assert eod - timedelta(minutes=5) <= warned < eod - timedelta(minutes=5) + POLL
    run_until(chat, clock, eod + timedelta(seconds=40))
    terminated_at(chat, eod)
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert emulator.cluster_state(other) == "WAITING"
    assert "@alice" in chat.announced("🛑")[0][1]
    overtime_end = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # 21:00 JST
    run_until(chat, clock, overtime_end - timedelta(minutes=10), every=timedelta(minutes=10))
    run_until(chat, clock, overtime_end + timedelta(seconds=40))
    assert len(chat.announced("⏳ Overtime ends: adhoc")) == 1
    assert emulator.cluster_state(other) == "TERMINATED"
    (when, text) = chat.announced("🛑 Terminated adhoc")[0]
    assert "its overtime ended" in text
    LATENESS.append((when - overtime_end).total_seconds())
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"


def test_bot_down_over_end_of_day_catches_up_once_at_its_first_tick(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    chat.say("!emr lock", user="alice")
    chat.stop()
    clock.set(datetime(2026, 12, 1, 10, 20, 7, tzinfo=UTC))  # 19:20:07 JST
    chat.start()
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert len(chat.announced("🛑 Terminated analytics")) == 1
    run_until(chat, clock, clock.now + timedelta(minutes=5))
    chat.restart()
    chat.tick()
    assert chat.announced("🛑") == []  # a restart after the pass announces nothing again


def test_bot_down_until_after_midnight_skips_the_missed_pass(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    chat.say("!emr lock", user="alice")
    clock.set(datetime(2026, 12, 1, 9, 50, 7, tzinfo=UTC))  # 18:50 JST
    chat.tick()
    chat.stop()
    clock.set(datetime(2026, 12, 1, 15, 10, 7, tzinfo=UTC))  # 00:10 JST the next day
    chat.start()
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert "terminated at 19:00 (end of day)" in chat.say("!emr status")


def test_a_restart_between_warning_and_deadline_sends_no_second_warning(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    run_until(chat, clock, MORNING + timedelta(minutes=26))
    assert len(chat.announced("⏳")) == 1
    chat.restart()  # clears chat.sent: only what the new process says is seen below
    run_until(chat, clock, MORNING + timedelta(minutes=29, seconds=50))
    assert chat.announced("⏳") == []
    run_until(chat, clock, MORNING + timedelta(minutes=31))
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"


@pytest.mark.parametrize(
    ("zone", "day_start_utc", "eod_utc"),
    [
        # 2026-11-01: New York falls back from EDT to EST at 02:00; 19:00 is 00:00 UTC, not 23:00.
        ("America/New_York", datetime(2026, 11, 1, 17, 0, tzinfo=UTC), datetime(2026, 11, 2, 0, 0, tzinfo=UTC)),
        # 2026-03-08: spring forward; 19:00 EDT is 23:00 UTC.
        ("America/New_York", datetime(2026, 3, 8, 16, 0, tzinfo=UTC), datetime(2026, 3, 8, 23, 0, tzinfo=UTC)),
        ("Asia/Tokyo", datetime(2026, 12, 1, 3, 0, tzinfo=UTC), datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_end_of_day_follows_local_time_on_dst_days(
    tmp_path: Path, emulator: Emulator, clock: Clock, zone: str, day_start_utc: datetime, eod_utc: datetime
) -> None:
    clock.set(day_start_utc)
    emulator.reset()
    seeded = emulator.seed()
    bot = Chat(tmp_path / "data", emr_config(emulator, TIMEZONE=zone, HOLD_REMIND_MINUTES="off"), clock).start()
    try:
        first_tick(bot, clock)
        bot.say("!emr lock")
        run_until(bot, clock, eod_utc - timedelta(hours=1, minutes=10), every=timedelta(minutes=15))
        run_until(bot, clock, eod_utc - timedelta(seconds=5), every=timedelta(minutes=1))
        assert emulator.cluster_state(seeded.managed_id) == "WAITING"
        assert len(bot.announced("⏳ End of day")) == 1
        run_until(bot, clock, eod_utc + timedelta(seconds=30))
        terminated_at(bot, eod_utc)
        assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    finally:
        bot.stop()


def test_a_protected_cluster_is_announced_once_and_retried_without_flooding(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    emulator.emr_b().set_termination_protection(JobFlowIds=[seeded.managed_id], TerminationProtected=True)
    first_tick(chat, clock)
    run_until(chat, clock, MORNING + timedelta(minutes=40))
    failures = chat.announced("⚠️ Could not terminate analytics")
    assert len(failures) == 1 and "termination protection" in failures[0][1]
    assert emulator.count("TerminateJobFlows") >= 15  # retried at every tick since 10:30
    emulator.emr_b().set_termination_protection(JobFlowIds=[seeded.managed_id], TerminationProtected=False)
    run_until(chat, clock, clock.now + POLL)
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert len(chat.announced("🛑 Terminated analytics")) == 1


def test_the_poller_survives_an_unreachable_aws_and_says_so_once(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    first_tick(chat, clock)
    chat.plugin.session.target = chat.plugin.session.target.__class__(
        **{**chat.plugin.session.target.__dict__, "endpoint_url": "http://127.0.0.1:9"}
    )
    chat.plugin.session.invalidate()
    for _ in range(3):
        clock.advance(seconds=30)
        chat.tick()
    assert len(chat.announced("⚠️ The EMR poller cannot reach the cluster account")) == 1


def live_timers(chat: Chat, expected: int) -> list[threading.Thread]:
    """The plugin's poller timers still alive, once there are *expected* of them or 5 s have passed.

    A cancelled timer's thread takes a moment to end, longer on a loaded machine.
    """
    deadline = time.monotonic() + 5
    while True:
        timers = [t for t in chat.plugin.current_timers if t.is_alive()]
        if len(timers) == expected or time.monotonic() > deadline:
            return timers
        time.sleep(0.01)


def test_reload_keeps_state_and_leaves_exactly_one_poller(chat: Chat, clock: Clock) -> None:
    chat.say("!emr lock", user="alice")
    assert len(chat.plugin.current_pollers) == 1 and len(live_timers(chat, 1)) == 1
    reply = chat.say("!plugin reload EMR", user="admin")
    assert "reloaded" in reply.lower()
    assert len(chat.plugin.current_pollers) == 1 and len(live_timers(chat, 1)) == 1
    assert "alice" in chat.say("!emr status")
    chat.say("!plugin deactivate EMR", user="admin")
    assert live_timers(chat, 0) == []
    chat.say("!plugin activate EMR", user="admin")
    assert len(chat.plugin.current_pollers) == 1 and len(live_timers(chat, 1)) == 1
    assert "alice" in chat.say("!emr status")


def test_an_unexpected_error_in_a_tick_is_logged_and_the_next_tick_works(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    chat.say("!emr status")  # first seen at 10:00
    adapter = chat.plugin.adapter
    real = adapter.list_clusters
    adapter.list_clusters = lambda: (_ for _ in ()).throw(RuntimeError("boom"))
    chat.tick()  # must not raise: Errbot's poller would only log it, and nobody in chat would hear
    assert "EMR poller tick failed" in caplog.text
    adapter.list_clusters = real
    clock.set(MORNING + timedelta(minutes=31))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"


def test_tag_re_reads_are_spread_over_the_ticks_and_each_cluster_is_re_read_every_five_minutes(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    """Twenty clusters first seen together: their tag re-reads (DescribeCluster) are not all due
    in one tick (that tick was the slow one: 100 clusters, 883 ms), and none is read less often
    than every 5 minutes nor more often once settled."""
    for n in range(19):
        emulator.run_cluster(f"team-{n:02d}")
    for n in range(20):
        chat.say(f"!emr lock team-{n:02d}" if n < 19 else "!emr lock analytics", user="alice")
    first_tick(chat, clock)
    run_until(chat, clock, clock.now + timedelta(minutes=5))  # the first reads' phases run out
    per_tick = []
    for _ in range(20):  # 10 minutes of ticks
        emulator.reset_counts()
        clock.advance(seconds=POLL.total_seconds())
        chat.tick()
        per_tick.append(emulator.count("DescribeCluster"))
    # Each of the 21 active clusters (20 managed, etl-nightly unmanaged: its tag may be added)
    # twice in 10 minutes: every 5 minutes; and spread, not 21 in one tick.
    assert sum(per_tick) == 42, per_tick
    assert max(per_tick) <= 8, per_tick
