"""Two instances of the bot on one DynamoDB table (DESIGN §18), through Errbot's real test backend.

Both bots run in this process on the emulator's DynamoDB (one table, created at the first start),
each with its own plugin, storage connection and lease owner. The poller is driven by hand and
time is moved: "kill -9" is a bot that never ticks again, "paused" is one whose tick comes late.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import NOTIFY, Chat, Clock, emr_config
from demo.emulator import Emulator, Seeded


@pytest.fixture
def two(tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock) -> Iterator[tuple[Chat, Chat]]:
    table = "two-" + uuid.uuid4().hex[:10]
    storage = {"table": table, "region": "ap-northeast-1", "endpoint_url": emulator.url, "create": True}
    bots = []
    try:
        for name in ("a", "b"):
            bot = Chat(
                tmp_path / f"data-{name}",
                emr_config(emulator, POLL_SECONDS=30, LEASE_SECONDS=60),  # ticks are driven by hand here
                clock,
                storage="DynamoDB",
                extra_config={"STORAGE_CONFIG": storage},
            )
            bots.append(bot.start())
            bot.drain()
        yield bots[0], bots[1]
    finally:
        for bot in bots:
            bot.stop()


def warnings(bot: Chat) -> list[str]:
    return [body for to, body in bot.sent if to == NOTIFY and body.startswith("⏳")]


def holders(bot: Chat, cluster_id: str) -> set[str]:
    return {hold.user for hold in bot.plugin.service.state().clusters[cluster_id].holds}


def test_a_hold_taken_on_one_instance_is_seen_by_the_other(two: tuple[Chat, Chat], seeded: Seeded) -> None:
    a, b = two
    assert "alice holds analytics" in a.say("!emr lock analytics", user="alice")
    assert "alice since 10:00" in b.say("!emr status", user="bob"), "no stale copy on the other instance"
    b.say("!emr lock analytics", user="bob")
    assert holders(a, seeded.managed_id) == {"alice", "bob"}, "a sees the hold b acknowledged"


def test_two_holds_taken_at_the_same_moment_on_two_instances_are_both_kept(
    two: tuple[Chat, Chat], seeded: Seeded
) -> None:
    a, b = two
    a.say("!emr status")  # both have listed the cluster
    b.say("!emr status")
    start = threading.Barrier(2)
    done: dict[str, Any] = {}

    def lock(bot: Chat, user: str) -> None:
        start.wait()
        done[user] = bot.plugin.service.lock(_who(user), "analytics")

    threads = [threading.Thread(target=lock, args=(bot, user)) for bot, user in ((a, "alice"), (b, "bob"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(done) == {"alice", "bob"}
    assert holders(a, seeded.managed_id) == holders(b, seeded.managed_id) == {"alice", "bob"}, "no lost update"


def _who(user: str) -> Any:
    from emrchatops.app.service import Who

    return Who(user, user, admin=False)


def test_only_the_lease_holder_runs_the_rules_and_warns_once(
    two: tuple[Chat, Chat], seeded: Seeded, clock: Clock
) -> None:
    a, b = two
    a.tick()  # a takes the lease
    b.tick()  # b finds it held: runs nothing
    clock.advance(minutes=26)  # 4 minutes before the idle deadline: the warning is due
    a.tick()
    b.tick()
    assert len(warnings(a)) == 1 and warnings(b) == [], "one warning, from the lease holder"


def test_after_the_holder_dies_the_other_takes_over_within_the_lease_and_repeats_nothing(
    two: tuple[Chat, Chat], seeded: Seeded, clock: Clock
) -> None:
    a, b = two
    a.tick()  # a holds the lease (60 s) and has seen the cluster
    clock.advance(minutes=26)
    a.tick()  # a warns, then "dies" (kill -9: it never ticks or releases again)
    assert len(warnings(a)) == 1
    clock.advance(seconds=30)
    b.tick()  # the lease is still a's: b waits
    assert warnings(b) == []
    clock.advance(seconds=31)  # past a's lease
    b.tick()
    assert warnings(b) == [], "the warning a gave is not repeated"
    clock.advance(minutes=5)  # past the idle deadline
    b.tick()
    said = [body for to, body in b.sent if to == NOTIFY]
    assert [body for body in said if body.startswith("🛑 Terminated analytics")], "b ran the rules after a died"
    assert not [body for to, body in a.sent if to == NOTIFY and body.startswith("🛑")], "a said nothing more"


def test_an_instance_paused_past_its_lease_acts_on_nothing_it_decided(
    two: tuple[Chat, Chat], seeded: Seeded, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    a.tick()  # a holds the lease and has seen the cluster
    lease = a.plugin.service._lease
    term = lease.acquire(clock.now)  # a's fence for this term
    assert term is not None
    clock.advance(seconds=61)  # a is paused (a long GC, a frozen VM): its lease expires ...
    b.tick()  # ... and b takes it over; nothing is due, so b writes no state: a's copy stays current
    clock.advance(minutes=25)  # the idle warning is due
    monkeypatch.setattr(lease, "acquire", lambda now: term)  # a wakes up inside its old term
    a.tick()
    assert warnings(a) == [], "a decided the warning on the current state, but its fenced save was refused"
    b.tick()
    assert len(warnings(b)) == 1, "the lease holder gives it, once"


def test_a_redelivered_slack_envelope_is_handled_once(two: tuple[Chat, Chat], clock: Clock) -> None:
    from emrchatops.store.seams import storage_backend
    from emrchatops.store.versioned import StoredOnce

    a, b = two
    once_a = StoredOnce(storage_backend(a.plugin), 3600)
    once_b = StoredOnce(storage_backend(b.plugin), 3600)
    assert once_a.first("slack-envelope:E1", clock.now) is True
    assert once_b.first("slack-envelope:E1", clock.now) is False, "the other instance sees it handled"
    clock.advance(minutes=61)
    assert once_b.first("slack-envelope:E1", clock.now) is True, "forgotten after an hour"


def test_a_hold_asked_on_the_other_instance_while_the_leader_terminates_is_never_acknowledged_then_lost(
    two: tuple[Chat, Chat], seeded: Seeded, clock: Clock, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    a.tick()  # a holds the lease and has seen the cluster idle since 10:00
    b.say("!emr status")
    clock.advance(minutes=31)  # past the idle deadline: a's next tick terminates it
    replies: list[str] = []
    adapter = a.plugin.service.adapter
    terminate = adapter.terminate

    def a_lock_races_the_termination(record: Any) -> None:
        replies.append(b.say("!emr lock analytics", user="carol"))  # between a's decision and TerminateJobFlows
        terminate(record)

    monkeypatch.setattr(adapter, "terminate", a_lock_races_the_termination)
    a.tick()
    state = emulator.emr_b().describe_cluster(ClusterId=seeded.managed_id)["Cluster"]["Status"]["State"]
    [reply] = replies
    ended = state in ("TERMINATING", "TERMINATED")
    assert not ("carol holds analytics" in reply and ended), f"carol was told she holds it, then it ended: {reply}"
    assert ended and reply.startswith("✗"), reply


def test_a_message_slack_redelivers_to_the_other_instance_runs_its_command_once(
    two: tuple[Chat, Chat], seeded: Seeded
) -> None:
    from errbot.backends.base import Message

    from emrchatops.chat.slack.chat import SlackChat

    a, b = two
    for bot in (a, b):  # as on Slack: the chat that knows messages by channel and ts
        slack = SlackChat(bot.plugin, bot.plugin._bot, bot.plugin.chat.first)
        bot.plugin.chat = slack
    event = {"type": "message", "channel": "C0DATA", "ts": "1764550800.000100", "text": "!emr lock"}
    msg = Message("!emr lock", extras={"slack_event": event})
    assert a.plugin.emr_once(msg, "emr_lock", "", False) == (msg, "emr_lock", "")
    assert b.plugin.emr_once(msg, "emr_lock", "", False) == (None, None, None), "the redelivery is not run"
    assert b.plugin.emr_once(msg, "emr_lock", "", True) == (msg, "emr_lock", ""), "an ACL dry run records nothing"
    other = Message("!emr lock", extras={"slack_event": {**event, "ts": "1764550801.000200"}})
    assert b.plugin.emr_once(other, "emr_lock", "", False) == (other, "emr_lock", ""), "another message runs"
