"""The backstop end to end (DESIGN §12): EMR's own AutoTerminationPolicy follows the holds.

An unheld managed cluster carries ``IdleTimeout`` = BACKSTOP_MINUTES, so it still ends when the bot
host is down; a held one carries none, so EMR never kills it under someone. One request per change:
off at the first hold, back at the last release. moto lacks the auto-termination API, so the
emulator stores and returns the policy per cluster (demo/moto_emr_resources.py); the bot is tested
against that, not against a mocked adapter.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import MORNING, Chat, Clock, emr_config
from demo import policies
from demo.emulator import ACCOUNT_B, ROLE_NAME, Emulator, Seeded

HOUR3 = 180 * 60
PUT, REMOVE, GET = "PutAutoTerminationPolicy", "RemoveAutoTerminationPolicy", "GetAutoTerminationPolicy"


def requests(emulator: Emulator) -> tuple[int, int]:
    return emulator.count(PUT), emulator.count(REMOVE)


def test_the_policy_is_off_at_the_first_hold_and_back_at_the_last_release_one_request_each(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    cluster = seeded.managed_id
    chat.tick()  # first seen, unheld: EMR's idle timeout goes on
    assert emulator.backstop(cluster) == HOUR3 and requests(emulator) == (1, 0)
    chat.tick()
    assert requests(emulator) == (1, 0)  # in step: nothing to ask
    assert chat.say("!emr lock", user="alice").startswith("🔒 alice holds analytics")
    assert emulator.backstop(cluster) is None and requests(emulator) == (1, 1)
    chat.say("!emr lock", user="bob")  # a second hold: no request
    chat.say("!emr unlock", user="alice")  # someone still holds it: no request
    chat.tick()
    assert emulator.backstop(cluster) is None and requests(emulator) == (1, 1)
    assert "Nobody holds it now" in chat.say("!emr unlock", user="bob")  # the last release
    assert emulator.backstop(cluster) == HOUR3 and requests(emulator) == (2, 1)
    chat.tick()
    assert requests(emulator) == (2, 1) and chat.announcements() == []  # nothing to say when all is well
    chat.say("!emr lock", user="alice")
    chat.say("!emr unlock --user alice", user="admin")  # an admin's release is a release too
    assert emulator.backstop(cluster) == HOUR3 and requests(emulator) == (3, 2)
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING" and emulator.backstop(seeded.unmanaged_id) is None


def test_a_restart_between_hold_and_release_asks_nothing_twice_and_a_change_lost_to_a_crash_is_made_later(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr lock", user="alice")  # first seen and held: only the removal, nothing was put
        assert requests(emulator) == (0, 1)
        bot.restart()
        clock.advance(minutes=1)
        bot.tick()
        assert requests(emulator) == (0, 1)  # the state knows EMR holds no policy
        bot.say("!emr unlock", user="alice")
        bot.restart()
        bot.tick()
        assert requests(emulator) == (1, 1) and emulator.backstop(seeded.managed_id) == HOUR3
        bot.plugin.service._sync_backstop = lambda only=None: None  # the bot dies right after storing the next hold
        bot.say("!emr lock", user="bob")
        assert emulator.backstop(seeded.managed_id) == HOUR3
        bot.restart()
        bot.tick()  # the first tick after the restart makes the change
        assert emulator.backstop(seeded.managed_id) is None and requests(emulator) == (1, 2)
    finally:
        bot.stop()


def test_a_hold_that_expires_puts_the_policy_back_at_that_tick(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock", user="alice")
    for minutes in (60, 120, 134):
        clock.set(MORNING + timedelta(minutes=minutes))
        chat.tick()
    assert emulator.backstop(seeded.managed_id) is None
    clock.set(MORNING + timedelta(minutes=135))
    chat.tick()  # unconfirmed since its reminder: the hold ends
    assert chat.announced("⌛ @alice") and emulator.backstop(seeded.managed_id) == HOUR3


def enforce_iam(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)


def test_a_failed_put_never_blocks_the_command_is_announced_once_and_retried_across_a_restart(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=[f"elasticmapreduce:{PUT}"]))
    enforce_iam(emulator, monkeypatch)
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr lock", user="alice")
        assert requests(emulator) == (0, 1) and bot.announcements() == []  # the removal is allowed
        reply = bot.say("!emr unlock", user="alice")
        assert reply.startswith("🔓 You released analytics") and "terminated at 10:30 unless someone locks it" in reply
        assert emulator.count(PUT) == 1 and emulator.backstop(seeded.managed_id) is None
        [(_, failed)] = bot.announced("⚠️ Could not set EMR's auto-termination policy")
        assert failed.startswith(
            f"⚠️ Could not set EMR's auto-termination policy (180 idle minutes) on analytics ({seeded.managed_id}), "
            f"which nobody holds: AWS denied elasticmapreduce:{PUT} on analytics ({seeded.managed_id}), which is "
            "tagged emr-chatops=true"
        )
        assert failed.endswith("If the bot goes down, nothing ends it. I will keep trying.")
        clock.advance(minutes=1)
        bot.tick()
        assert emulator.count(PUT) == 1  # retried at most every 5 minutes
        clock.advance(minutes=4)
        bot.tick()
        assert emulator.count(PUT) == 2 and len(bot.announced("⚠️ Could not set")) == 1  # retried, said once
        bot.restart()
        clock.advance(minutes=1)
        bot.tick()
        assert emulator.count(PUT) == 3 and bot.announced("⚠️") == []  # at once after a restart, not said again
        emulator.set_iam_enforcement(False)  # the operator fixes the role's policy (as an admin of account B)
        emulator.client("iam", ACCOUNT_B).put_role_policy(
            RoleName=ROLE_NAME, PolicyName="emr-chatops", PolicyDocument=json.dumps(policies.permission_policy())
        )
        emulator.set_iam_enforcement(True)
        clock.advance(minutes=5)
        bot.tick()
        assert emulator.backstop(seeded.managed_id) == HOUR3
        assert bot.announced("✓ EMR's auto-termination policy") == [
            (
                bot.announced("✓")[0][0],
                f"✓ EMR's auto-termination policy on analytics ({seeded.managed_id}) is set (180 idle minutes, "
                "nobody holds it) now.",
            )
        ]
        clock.advance(minutes=5)
        bot.tick()
        assert emulator.count(PUT) == 4
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_failed_removal_says_the_held_cluster_is_at_risk_and_the_lock_still_answers(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=[f"elasticmapreduce:{REMOVE}"]))
    enforce_iam(emulator, monkeypatch)
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.tick()
        assert bot.say("!emr lock nightly report", user="alice").startswith("🔒 alice holds analytics")
        [(_, failed)] = bot.announced("⚠️ Could not remove")
        assert f"from analytics ({seeded.managed_id}), held by @alice: AWS denied elasticmapreduce:{REMOVE}" in failed
        assert "EMR may terminate it when it has been idle for 180 minutes although it is held" in failed
        assert emulator.backstop(seeded.managed_id) == HOUR3
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_backstop_off_leaves_emr_s_policy_alone(
    start_bot: Any, emulator: Emulator, seeded: Seeded, clock: Clock, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "adhoc.json").write_text(
        json.dumps({**json.loads(Path("deploy/templates/analytics.json").read_text()), "Name": "adhoc"})
    )
    emulator.hold_starts()
    bot = start_bot(BACKSTOP_MINUTES="off", TEMPLATES_DIR=str(folder))
    bot.tick()
    bot.say("!emr lock")
    bot.say("!emr unlock")
    bot.say("!emr start adhoc")
    bot.tick()
    assert "AutoTerminationPolicy" not in emulator.start_requests[emulator.started[0]]
    assert (emulator.count(PUT), emulator.count(REMOVE), emulator.count(GET)) == (0, 0, 0)
