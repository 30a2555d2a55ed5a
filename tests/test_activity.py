"""Activity-aware rules end to end (DESIGN §10, §11): IsIdle from moto's CloudWatch in account B, moved time.

The tests publish ``IsIdle`` datapoints in account B as EMR would (one per
5 minutes, 0 while YARN work runs), tick the real plugin on a moved clock,
and look at what AWS and the channel saw.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import MORNING, Chat, Clock, emr_config, publish_is_idle
from demo import policies
from demo.emulator import Emulator, Seeded

PERIOD = timedelta(minutes=5)


def minutes(m: float) -> datetime:
    return MORNING + timedelta(minutes=m)


def publish(emulator: Emulator, cluster_id: str, start: float, end: float, value: float) -> None:
    """IsIdle = *value* for every 5-minute period from minute *start* up to (not including) *end*."""
    periods = []
    m = start
    while m < end:
        periods.append((minutes(m), value))
        m += 5
    publish_is_idle(emulator, cluster_id, periods)


def run_until(chat: Chat, clock: Clock, start: float, end: float, every: float = 1, **hooks: Any) -> None:
    m = start
    while m <= end:
        clock.set(minutes(m))
        chat.tick()
        m += every


def test_yarn_work_for_45_minutes_keeps_an_unheld_cluster_and_idle_counts_from_the_end_of_the_work(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr status")  # first seen 10:00, nobody holds it: a Spark shell runs without a lock
    publish(emulator, seeded.managed_id, 0, 45, 0)  # IsIdle = 0 from 10:00 to 10:45
    publish(emulator, seeded.managed_id, 45, 120, 1)
    run_until(chat, clock, 0, 74)
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"  # alive 74 minutes after it was first seen
    (_, warning), *_ = chat.announced("⏳ analytics")
    assert "idle since 10:45" in warning and "at 11:15" in warning
    status = chat.say("!emr status")
    assert "activity: no work since 10:45" in status and "terminated at 11:15 unless someone locks it" in status
    run_until(chat, clock, 75, 75)
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert emulator.count("GetMetricData") <= 75 // 5 + 1  # at most one per 5 minutes


def test_status_shows_the_work_running(chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock) -> None:
    publish(emulator, seeded.managed_id, 0, 30, 0)
    run_until(chat, clock, 0, 30, every=3)  # read at most every 5 minutes: at 10:30, the 10:25 period
    status = chat.say("!emr status")
    assert "activity: busy (YARN work at 10:25)" in status
    assert "next: terminated at 19:00 (end of day)" in status  # busy: never idle


def test_a_stale_isidle_is_said_to_have_stopped_and_since_when(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")  # held: nothing is terminated meanwhile
    publish(emulator, seeded.managed_id, 0, 40, 0)  # YARN work 10:00–10:40; then EMR publishes nothing more
    run_until(chat, clock, 0, 60)
    status = chat.say("!emr status")  # at 11:00 the latest datapoint (10:35) is 25 minutes old
    assert "activity: activity unknown (IsIdle stopped: no datapoint since 10:35, 25m ago)" in status, status
    assert "no IsIdle datapoint yet" not in status


@pytest.mark.parametrize(
    ("overrides", "publish_busy", "unknown"),
    [
        ({"ACTIVITY": "off"}, True, "activity unknown (ACTIVITY=off)"),
        ({}, False, "activity unknown (no IsIdle datapoint yet)"),
    ],
)
def test_without_activity_the_idle_rule_goes_by_the_cluster_state_and_status_says_so(
    start_bot: Any,
    emulator: Emulator,
    seeded: Seeded,
    clock: Clock,
    overrides: dict[str, str],
    publish_busy: bool,
    unknown: str,
) -> None:
    bot = start_bot(**overrides)
    if publish_busy:
        publish(emulator, seeded.managed_id, 0, 60, 0)  # ignored with ACTIVITY=off
    bot.say("!emr status")
    clock.set(minutes(10))
    bot.tick()
    assert unknown in bot.say("!emr status")
    run_until(bot, clock, 25, 30)
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    if "ACTIVITY" in overrides:
        assert emulator.count("GetMetricData") == 0


def test_cloudwatch_denied_is_announced_once_and_the_idle_rule_goes_by_the_cluster_state(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=["cloudwatch:GetMetricData"]))
    publish(emulator, seeded.managed_id, 0, 60, 0)  # work the bot cannot see
    keys = emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr status")
        run_until(bot, clock, 0, 20)
        (_, text), *more = bot.announced("⚠️ Cannot read the clusters' activity")
        assert more == [] and "cloudwatch:GetMetricData" in text  # once, not every tick
        assert "activity unknown (CloudWatch: AccessDenied; see !emr doctor)" in bot.say("!emr status")
        run_until(bot, clock, 21, 30)
        assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
        assert len(bot.announced("⚠️ Cannot read the clusters' activity")) == 1
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


# -- hold reminders and expiry ----------------------------------------------------------------


def test_a_forgotten_hold_is_questioned_then_ends_and_the_idle_rule_takes_over(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock nightly report", user="alice")
    publish(emulator, seeded.managed_id, 0, 240, 1)  # no work at all
    run_until(chat, clock, 0, 119, every=5)
    assert chat.announced("⏰") == []
    run_until(chat, clock, 120, 120)
    (_, reminder), *_ = chat.announced("⏰")
    assert reminder == (
        "⏰ @alice, you hold analytics since 10:00 and it has done no work since 10:00. Still using it? "
        "`!emr lock analytics` keeps your hold; otherwise it ends at 12:15."
    )
    assert "reminder: alice: asked at 12:00, hold ends 12:15" in chat.say("!emr status")
    run_until(chat, clock, 121, 135)
    (_, expired), *more = chat.announced("⌛")
    assert more == [] and expired.startswith(f"⌛ @alice's hold on analytics ({seeded.managed_id}) ended")
    assert "Nobody holds it now: terminated at 12:45 unless someone locks it" in expired
    history = chat.say("!emr history")
    assert "reminder analytics" in history and "expired analytics" in history
    run_until(chat, clock, 136, 165)
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert len(chat.announced("⏰")) == 1


def test_a_hold_confirmed_in_time_is_kept_with_its_reason(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock nightly report", user="alice")
    run_until(chat, clock, 0, 125, every=5)
    assert len(chat.announced("⏰")) == 1 and chat.announced("⌛") == []  # asked at 12:00; ends 12:15 unless…
    clock.set(minutes(130))
    assert "nightly report" in chat.say("!emr lock", user="alice")  # confirms, keeps the reason
    run_until(chat, clock, 130, 200, every=5)
    assert chat.announced("⌛") == [] and "alice since 10:00: nightly report" in chat.say("!emr status")


def test_a_cluster_busy_in_between_gets_no_reminder(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")
    publish(emulator, seeded.managed_id, 60, 90, 0)  # a Hive query 11:00–11:30, no step
    run_until(chat, clock, 0, 205, every=5)
    assert chat.announced("⏰") == []  # no work since 11:30: asked at 13:30, not before
    run_until(chat, clock, 210, 210)
    assert "no work since 11:30" in chat.announced("⏰")[0][1]


def test_two_holders_are_each_reminded_for_their_own_hold(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")
    clock.set(minutes(40))
    chat.say("!emr lock", user="bob")
    run_until(chat, clock, 40, 180, every=5)
    reminders = [text for _, text in chat.announced("⏰")]
    assert [r.split(",")[0] for r in reminders] == ["⏰ @alice", "⏰ @bob"]
    expired = [text for _, text in chat.announced("⌛")]
    assert [e.split("'")[0] for e in expired] == ["⌛ @alice", "⌛ @bob"]
    assert "Still held by bob" in expired[0]


def test_a_restart_between_reminder_and_expiry_sends_no_second_reminder_and_expires_on_time(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr lock", user="alice")
        run_until(bot, clock, 0, 120, every=5)
        assert len(bot.announced("⏰")) == 1
        bot.restart()
        run_until(bot, clock, 121, 134)
        assert bot.announced("⏰") == [] and bot.announced("⌛") == []
        run_until(bot, clock, 135, 135)
        assert len(bot.announced("⌛ @alice")) == 1
    finally:
        bot.stop()


def test_reminders_can_be_switched_off(start_bot: Any, emulator: Emulator, seeded: Seeded, clock: Clock) -> None:
    bot = start_bot(HOLD_REMIND_MINUTES="off")
    bot.say("!emr lock", user="alice")
    run_until(bot, clock, 0, 480, every=15)  # until 18:00
    assert bot.announced("⏰") == [] and "alice since 10:00" in bot.say("!emr status")


# -- the doctor ---------------------------------------------------------------------------------

ACTIVITY_LINE = "CloudWatch GetMetricData (IsIdle: YARN work)"


def doctor_line(bot: Chat) -> str:
    report = bot.say("!emr doctor", user="admin", timeout=30)
    return next(line for line in report.splitlines() if ACTIVITY_LINE in line)


def test_the_doctor_reads_isidle_and_warns_when_there_is_no_datapoint_yet(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    assert doctor_line(chat).startswith(f"⚠ {ACTIVITY_LINE}: readable, but no IsIdle datapoint in the last hour")
    publish(emulator, seeded.managed_id, 0, 10, 0)
    clock.set(minutes(12))
    assert doctor_line(chat) == f"✓ {ACTIVITY_LINE}: IsIdle read: analytics busy"


def test_the_doctor_warns_on_a_stale_isidle_instead_of_calling_the_cluster_busy(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    publish(emulator, seeded.managed_id, 0, 40, 0)  # YARN work until 10:40, then the metric stops
    clock.set(minutes(60))  # the latest datapoint (10:35, IsIdle = 0) is 25 minutes old: the rules ignore it
    line = doctor_line(chat)
    assert line.startswith(
        f"⚠ {ACTIVITY_LINE}: readable, but IsIdle stopped for analytics (no datapoint since 10:35, 25m ago)"
    ), line
    assert "busy" not in line


def test_the_doctor_says_activity_off_is_risky(start_bot: Any, seeded: Seeded) -> None:
    line = doctor_line(start_bot(ACTIVITY="off"))
    assert line.startswith(f"⚠ {ACTIVITY_LINE}: ACTIVITY=off")


def test_the_doctor_names_the_missing_cloudwatch_permission(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["cloudwatch:GetMetricData"]))
    keys = emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        line = doctor_line(bot)
        assert line.startswith(f"✗ {ACTIVITY_LINE}: AWS denied cloudwatch:GetMetricData"), line
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)
