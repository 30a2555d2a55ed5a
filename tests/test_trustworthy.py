"""What an adversarial tryout of part one broke, end to end: real Errbot, moto's server, moved time.

Each test is named after the behaviour that failed before the "trustworthy core"
change: tags changed while the bot runs, stale listings, pending terminations
that outlived their reason, ambiguous and spaced names, overtime after
midnight, steps between two ticks, pollers after deactivate/activate, clusters
terminated outside the bot, and input at its edges.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import MORNING, Chat, Clock, emr_config
from demo.emulator import Emulator, Seeded
from emrchatops.aws.adapter import EmrAdapter
from emrchatops.domain.settings import TagSelector

TAG = {"Key": "emr-chatops", "Value": "true"}
EOD = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 19:00 JST


def jst(day: int, hour: int, minute: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(UTC)


def state_of(chat: Chat) -> Any:
    return chat.plugin.get("state")


# -- 1. tags change while the bot runs ----------------------------------------------------------


def test_an_untagged_cluster_is_left_alone_within_five_minutes_and_never_terminated(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")
    emulator.emr_b().remove_tags(ResourceId=seeded.managed_id, TagKeys=["emr-chatops"])  # kept overnight
    clock.advance(minutes=5, seconds=1)
    chat.tick()
    assert chat.say("!emr status").startswith("No managed EMR cluster is running")
    assert len(chat.announced("🏷️ analytics")) == 1 and "@alice" in chat.announced("🏷️ analytics")[0][1]
    chat.say("!emr unlock", user="alice")
    clock.set(EOD + timedelta(minutes=1))  # past the idle deadline and the end of day
    chat.tick()
    clock.set(jst(2, 9))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert emulator.count("TerminateJobFlows") == 0
    assert len(chat.announced("🏷️")) == 1  # said once


def test_a_cluster_tagged_while_the_bot_runs_is_managed_within_five_minutes(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    later = emulator.run_cluster("adhoc", managed=False)
    assert "adhoc" not in chat.say("!emr status")
    emulator.emr_b().add_tags(ResourceId=later, Tags=[TAG])  # the README's own step
    clock.advance(minutes=5)
    assert "adhoc" in chat.say("!emr status")


def test_the_cluster_is_re_read_right_before_an_idle_termination_and_spared_if_untagged(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr status")  # first seen 10:00
    clock.set(MORNING + timedelta(minutes=29))
    chat.tick()  # the tag cache is fresh from this tick
    emulator.emr_b().remove_tags(ResourceId=seeded.managed_id, TagKeys=["emr-chatops"])
    clock.set(MORNING + timedelta(minutes=30))
    chat.tick()  # the cached tag still says managed: the re-read says otherwise
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert emulator.count("TerminateJobFlows") == 0
    (_, text), *_ = chat.announced("✋ Not terminating analytics")
    assert "no longer carries the managed tag" in text


def test_the_cluster_is_re_read_right_before_a_terminate_command_and_spared_if_untagged(
    chat: Chat, emulator: Emulator, seeded: Seeded
) -> None:
    chat.say("!emr status")
    emulator.emr_b().remove_tags(ResourceId=seeded.managed_id, TagKeys=["emr-chatops"])
    reply = chat.say("!emr terminate analytics")
    assert reply.startswith("✗ Not terminating analytics") and "no longer carries the managed tag" in reply
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_a_cluster_that_became_busy_is_not_terminated_by_the_idle_rule(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr status")
    clock.set(MORNING + timedelta(minutes=30))
    real = chat.plugin.adapter.list_clusters

    def listing_then_a_step_starts() -> Any:
        listing = real()
        emulator.set_cluster_state(seeded.managed_id, "RUNNING")  # right after the listing
        return listing

    chat.plugin.adapter.list_clusters = listing_then_a_step_starts
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "RUNNING"
    assert "it is RUNNING now" in chat.announced("✋")[0][1]


# -- 2. a stale listing never erases a cluster or a hold ------------------------------------------


def test_a_stale_listing_from_a_tick_does_not_erase_a_new_cluster_or_its_hold(
    chat: Chat, emulator: Emulator, seeded: Seeded
) -> None:
    chat.say("!emr status")
    adapter = chat.plugin.adapter
    real = adapter.list_clusters
    listed, release = threading.Event(), threading.Event()

    def slow_listing() -> Any:
        listing = real()
        if threading.current_thread().name == "tick":
            listed.set()
            release.wait(10)  # the tick's listing is now older than what the command will see
        return listing

    adapter.list_clusters = slow_listing
    ticking = threading.Thread(target=chat.tick, name="tick")
    ticking.start()
    assert listed.wait(10)
    adhoc = emulator.run_cluster("adhoc")
    reply = chat.say("!emr lock adhoc urgent", user="alice")
    assert reply.startswith("🔒 alice holds adhoc")
    release.set()
    ticking.join(10)
    adapter.list_clusters = real
    record = state_of(chat)["clusters"][adhoc]
    assert [h["name"] for h in record["holds"]] == ["alice"] and record["absent"] == ""
    chat.tick()
    assert "alice since 10:00" in chat.say("!emr status adhoc")


def test_a_restart_with_a_wrong_cluster_tag_keeps_clusters_and_holds(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr lock long query", user="alice")
        bot.emr["CLUSTER_TAG"] = "emr-chatops=yes"  # a typo in the env file
        bot.restart()
        reply = bot.say("!emr status")
        assert reply.startswith("No managed EMR cluster is running") and "Holds are kept on analytics" in reply
        for _ in range(3):
            clock.advance(minutes=6)
            bot.tick()
        bot.emr["CLUSTER_TAG"] = "emr-chatops=true"  # fixed
        bot.restart()
        assert "alice since 10:00: long query" in bot.say("!emr status")
        assert emulator.count("TerminateJobFlows") == 0
    finally:
        bot.stop()


# -- 3. a pending termination is re-decided -----------------------------------------------------


def test_a_retried_idle_termination_is_dropped_when_the_cluster_becomes_busy(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    emulator.set_termination_protection(seeded.managed_id, True)
    chat.say("!emr status")
    clock.set(MORNING + timedelta(minutes=30))
    chat.tick()
    assert len(chat.announced("⚠️ Could not terminate analytics")) == 1
    emulator.set_cluster_state(seeded.managed_id, "RUNNING")  # someone started a step
    clock.advance(seconds=30)
    chat.tick()
    assert "it is busy (RUNNING)" in chat.announced("✋ Not terminating analytics")[0][1]
    emulator.set_termination_protection(seeded.managed_id, False)
    emulator.set_cluster_state(seeded.managed_id, "WAITING")
    clock.advance(seconds=30)
    chat.tick()  # back to WAITING: a fresh idle clock, not the old pending termination
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert "terminated at 11:01 unless someone locks it" in chat.say("!emr status")


def test_a_retried_end_of_day_termination_is_dropped_the_next_morning(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    emulator.set_termination_protection(seeded.managed_id, True)
    chat.say("!emr lock", user="alice")
    clock.set(EOD)
    chat.tick()
    assert len(chat.announced("⚠️ Could not terminate analytics")) == 1
    emulator.set_termination_protection(seeded.managed_id, False)  # fixed the next morning
    clock.set(jst(2, 9))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"  # tomorrow's morning is not tonight's end of day
    assert "that working night is over" in chat.announced("✋")[0][1]
    assert "terminated at 19:00 (end of day)" in chat.say("!emr status")


# -- 4./5. names ----------------------------------------------------------------------------------


def test_two_managed_clusters_with_the_same_name_are_refused_with_both_ids(
    chat: Chat, emulator: Emulator, seeded: Seeded
) -> None:
    twin = emulator.run_cluster("analytics")
    chat.say("!emr status")
    before = state_of(chat)
    for command in ("!emr lock analytics", "!emr terminate analytics", "!emr status analytics"):
        reply = chat.say(command, user="admin")
        assert reply.startswith("✗ Several managed clusters are called analytics"), reply
        assert seeded.managed_id in reply and twin in reply
    assert state_of(chat) == before and emulator.count("TerminateJobFlows") == 0
    assert chat.say(f"!emr lock {twin}").startswith(f"🔒 alice holds analytics ({twin})")


def test_a_cluster_name_with_spaces_works_in_every_command(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    log_id = emulator.run_cluster("Log Analysis")
    reply = chat.say("!emr lock Log Analysis report for Q3", user="alice")
    assert reply.startswith(f"🔒 alice holds Log Analysis ({log_id})") and "report for Q3" in reply
    assert "analytics" not in chat.say("!emr status log analysis")
    assert chat.say("!emr overtime Log Analysis 21:00", user="alice").startswith("🌙 Log Analysis")
    assert chat.say('!emr unlock "Log Analysis"', user="alice").startswith("🔓 You released Log Analysis")
    assert chat.say("!emr terminate log analysis").startswith("🛑 Terminating Log Analysis")
    assert emulator.cluster_state(log_id) == "TERMINATED"
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_an_unmanaged_clusters_name_is_refused_never_read_as_a_reason(chat: Chat, seeded: Seeded) -> None:
    chat.say("!emr status")
    before = state_of(chat)
    reply = chat.say("!emr lock etl-nightly", user="alice")
    assert reply.startswith("✗ No managed cluster called etl-nightly is running (managed: analytics)")
    assert state_of(chat) == before


# -- 6. overtime around midnight ------------------------------------------------------------------


def test_overtime_asked_after_midnight_extends_tonights_overtime(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock night batch", user="alice")
    clock.set(jst(1, 18))
    assert "until 23:00" in chat.say("!emr overtime 23:00", user="alice")
    clock.set(jst(1, 22, 30))
    assert "until 00:30" in chat.say("!emr overtime 00:30", user="alice")  # extended while it runs
    clock.set(jst(2, 0, 10))
    chat.tick()
    reply = chat.say("!emr overtime 01:30", user="alice")
    assert reply.startswith("🌙 analytics") and "until 01:30" in reply  # 80 minutes away, not tomorrow night
    clock.set(jst(2, 1, 29))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    clock.set(jst(2, 1, 30))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert len(chat.announced("🛑 Terminated analytics")) == 1


def test_the_lock_reply_never_promises_overtime_that_overtime_refuses(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    emulator.set_termination_protection(seeded.managed_id, True)
    chat.say("!emr lock", user="alice")
    clock.set(EOD)
    chat.tick()  # doomed by the end of day, and the termination fails
    reply = chat.say("!emr lock", user="bob")
    assert "being terminated (end of day (19:00)); a holder can still ask for !emr overtime" in reply
    assert chat.say("!emr overtime 03:00", user="bob").startswith("🌙 analytics")
    clock.set(jst(2, 3))  # the longest overtime ends: terminated (protection is still on: the retry fails)
    chat.tick()
    reply = chat.say("!emr lock", user="bob")
    assert "being terminated (its overtime ended)." in reply and "can still ask" not in reply
    assert chat.say("!emr overtime", user="bob").startswith("✗ No overtime")


# -- 7. steps between two ticks ------------------------------------------------------------------


def test_a_step_between_two_ticks_restarts_the_idle_clock(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr status")  # idle since 10:00
    emulator.add_finished_step(seeded.managed_id, MORNING + timedelta(minutes=10), MORNING + timedelta(minutes=20))
    clock.set(MORNING + timedelta(minutes=25))
    chat.tick()  # the listing says WAITING, as before: only the steps show the work
    assert chat.announced("⏳") == []
    assert emulator.count("ListSteps") == 1
    clock.set(MORNING + timedelta(minutes=45))
    chat.tick()
    assert "idle since 10:20" in chat.announced("⏳")[0][1]
    clock.set(MORNING + timedelta(minutes=50))
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert emulator.count("ListSteps") == 3  # only when the idle rule was about to act


def test_steps_that_ran_while_the_bot_was_down_count(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr status")
        bot.stop()
        emulator.add_finished_step(seeded.managed_id, MORNING + timedelta(minutes=5), MORNING + timedelta(minutes=40))
        clock.set(MORNING + timedelta(minutes=45))
        bot.start()
        bot.tick()
        assert emulator.cluster_state(seeded.managed_id) == "WAITING"
        assert "unless someone locks it (idle since 10:40)" in bot.say("!emr status")
    finally:
        bot.stop()


# -- 8. one poller, always ----------------------------------------------------------------------


def test_deactivate_and_activate_while_a_tick_runs_leave_exactly_one_poller(
    start_bot: Any, emulator: Emulator, seeded: Seeded
) -> None:
    bot = start_bot(POLL_SECONDS=0.2)
    plugin = bot.plugin
    entered, release = threading.Event(), threading.Event()
    real = plugin.adapter.list_clusters
    old_ticks: list[threading.Thread] = []

    def slow_listing() -> Any:
        if threading.current_thread().name.startswith("Poller") and not release.is_set():
            old_ticks.append(threading.current_thread())
            entered.set()
            release.wait(10)
        return real()

    plugin.adapter.list_clusters = slow_listing
    assert entered.wait(10), "no tick started"
    assert bot.say("!plugin deactivate EMR", user="admin") == "Plugin EMR deactivated."
    assert bot.say("!plugin activate EMR", user="admin") == "Plugin EMR activated."
    release.set()  # the old tick returns now: Errbot re-arms its timer once (it checked before the tick)
    old_ticks[0].join(10)
    time.sleep(0.5)  # that last timer of the old poller fires, finds itself stopped, and ends
    # Real poller timers (0.2 s): sample the live ones for 2 s. A timer leaves the list while its tick
    # runs, so one poller shows 0 or 1; two pollers would show 2 most of the time.
    samples = []
    for _ in range(40):
        samples.append(len([t for t in plugin.current_timers if t.is_alive()]))
        time.sleep(0.05)
    assert max(samples) == 1, samples
    assert len(plugin.current_pollers) == 1


def test_a_tick_in_flight_across_deactivate_and_activate_keeps_a_hold_taken_meanwhile(
    start_bot: Any, emulator: Emulator, seeded: Seeded
) -> None:
    bot = start_bot()
    plugin = bot.plugin
    bot.tick()
    entered, release = threading.Event(), threading.Event()
    real = plugin.adapter.list_clusters

    def slow_listing() -> Any:
        if threading.current_thread().name == "old-tick" and not release.is_set():
            entered.set()
            release.wait(10)
        return real()

    plugin.adapter.list_clusters = slow_listing
    old_tick = threading.Thread(target=plugin.tick, name="old-tick")  # the poller's tick, mid-listing
    old_tick.start()
    assert entered.wait(10), "the tick did not start listing"
    assert bot.say("!plugin deactivate EMR", user="admin") == "Plugin EMR deactivated."
    assert bot.say("!plugin activate EMR", user="admin") == "Plugin EMR activated."
    assert bot.say("!emr lock", user="alice").startswith("🔒")
    emulator.run_cluster("team-2", managed=True)  # the old tick's listing has news: it saves a state
    release.set()
    old_tick.join(10)
    holds = plugin.get("state")["clusters"][seeded.managed_id]["holds"]
    assert [h["user"] for h in holds] == ["alice"], "the old tick saved a state from before the hold"


# -- 9. a held cluster terminated outside the bot ------------------------------------------------


def test_a_held_cluster_terminated_outside_the_bot_is_announced_once_with_its_holders(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id])  # the console, the CLI, …
    for _ in range(3):
        clock.advance(seconds=30)
        chat.tick()
    (_, text), *more = chat.announced("🛑 analytics")
    assert more == [] and "terminated outside the bot" in text and "@alice" in text
    history = chat.say("!emr history")
    assert "ended analytics" in history and "outside the bot" in history and "by the bot" not in history
    assert state_of(chat)["clusters"] == {}


# -- 10. edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["²", "١٢", "٣", "1²", "𝟙"])
def test_history_with_other_scripts_digits_gets_a_usage_answer(chat: Chat, count: str) -> None:
    assert chat.say(f"!emr history {count}") == "✗ !emr history takes one number N (1–50)."


class _Pages:
    """Recorded ListClusters answers (a cluster without a creation time: moto cannot make one)."""

    def __init__(self, clusters: list[dict[str, Any]]) -> None:
        self.clusters = clusters

    def call(self, service: str, operation: str, action: str, **params: Any) -> dict[str, Any]:
        assert operation == "list_clusters"
        return {"Clusters": self.clusters}


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "UTC", "America/New_York"])
def test_a_cluster_without_a_creation_time_does_not_break_the_listing(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        pages = _Pages(
            [
                {"Id": "j-B", "Name": "b", "Status": {"State": "WAITING", "Timeline": {"CreationDateTime": MORNING}}},
                {"Id": "j-A", "Name": "a", "Status": {"State": "WAITING"}},
            ]
        )
        listing = EmrAdapter(pages, TagSelector(None, None)).list_clusters()  # type: ignore[arg-type]
        assert [c.id for c in listing.managed] == ["j-A", "j-B"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_no_error_is_logged_through_a_whole_day_of_edges(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Tag churn, a twin, a step, an outside termination and midnight, all in one day: no ERROR line."""
    caplog.set_level(logging.INFO)
    twin = emulator.run_cluster("analytics")
    chat.say(f"!emr lock {twin}")
    emulator.emr_b().remove_tags(ResourceId=seeded.managed_id, TagKeys=["emr-chatops"])
    for minute in range(0, 24 * 60, 7):
        clock.set(MORNING + timedelta(minutes=minute))
        if minute == 70:
            emulator.emr_b().add_tags(ResourceId=seeded.managed_id, Tags=[TAG])
        if minute == 200:
            emulator.emr_b().terminate_job_flows(JobFlowIds=[twin])
        chat.tick()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
