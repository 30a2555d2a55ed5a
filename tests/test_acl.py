"""Who may do what: the plugin's own admin checks, and the ACCESS_CONTROLS example of config.py.

Two users on Errbot's test backend: alice is a bot admin, bob is not (carol holds the cluster).
Errbot's ACLs decide per command, so the admin-only *arguments* (``terminate --force`` on a
cluster held by others, ``unlock --user``) are the plugin's own checks; the commented
``ACCESS_CONTROLS.update(...)`` block of config.py is taken from the file and applied for real.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
from errbot.backends.base import Message

from conftest import ROOT, Chat
from demo.emulator import Emulator, Seeded

ADMINS = ("alice",)
FORBIDDEN_USER = "You're not allowed to access this command from this user"
FORBIDDEN_ROOM = "You're not allowed to access this command from this room"


def config_acl_example(**names: Any) -> dict[str, Any]:
    """The commented ``ACCESS_CONTROLS.update({...})`` block of config.py, uncommented and run."""
    text = (ROOT / "config.py").read_text(encoding="utf-8")
    block = re.search(r"^# ACCESS_CONTROLS\.update\($.*?^# \)$", text, re.MULTILINE | re.DOTALL)
    assert block is not None, "config.py lost its ACCESS_CONTROLS example"
    code = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.group(0).splitlines())
    namespace: dict[str, Any] = {"ACCESS_CONTROLS": {}, **names}
    exec(compile(code, "config.py (ACCESS_CONTROLS example)", "exec"), namespace)  # noqa: S102 - our own file
    acl: dict[str, Any] = namespace["ACCESS_CONTROLS"]
    return acl


@pytest.fixture
def start_bot(start_bot: Callable[..., Chat], seeded: Seeded) -> Callable[..., Chat]:
    """The shared bot starter, with alice as the only admin, plus *extra* bot config (e.g. ACCESS_CONTROLS)."""
    return lambda **extra: start_bot(extra_config={"BOT_ADMINS": ADMINS, **extra})


def say_in_room(bot: Chat, text: str, user: str, room_name: str) -> str:
    """*text* from *user* in the chat room *room_name* (a group message), and the reply."""
    backend = bot.testbot.bot
    module = sys.modules[type(backend).__module__]
    room = module.TestRoom(room_name, bot=backend)
    backend.callback_message(Message(text, frm=module.TestOccupant(user, room), to=room))
    reply = str(bot.testbot.pop_message(timeout=10))
    bot.sent.pop()  # keep Chat's bookkeeping in step with the queue
    return reply


def test_only_an_admin_may_force_the_termination_of_a_cluster_held_by_others(
    start_bot: Callable[..., Chat], emulator: Emulator, seeded: Seeded
) -> None:
    bot = start_bot()
    bot.say("!emr lock overnight backfill", user="carol")
    before = bot.plugin.get("state")

    refused = bot.say("!emr terminate --force", user="bob")
    assert refused == "✗ Only admins can --force the termination of a cluster held by others (analytics)."
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert bot.plugin.get("state") == before
    assert emulator.count("TerminateJobFlows") == 0

    done = bot.say("!emr terminate --force", user="alice")
    assert done.startswith(f"🛑 Terminating analytics ({seeded.managed_id}) at alice's request.")
    assert "Its holders were @carol." in done
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert any(text.startswith("🛑 alice force-terminated analytics") for text in bot.announcements())
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"


def test_without_force_even_an_admin_is_refused_and_told_who_holds_it(
    start_bot: Callable[..., Chat], emulator: Emulator, seeded: Seeded
) -> None:
    bot = start_bot()
    bot.say("!emr lock", user="carol")
    reply = bot.say("!emr terminate", user="alice")
    assert reply.startswith("✗ analytics is held by carol since 10:00: ask them, or an admin can add --force.")
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_only_an_admin_may_release_someone_elses_hold(start_bot: Callable[..., Chat]) -> None:
    bot = start_bot()
    bot.say("!emr lock nightly report", user="carol")
    before = bot.plugin.get("state")
    assert bot.say("!emr unlock --user carol", user="bob") == "✗ Only admins can release someone else's hold."
    assert bot.say("!emr unlock --user @carol", user="bob") == "✗ Only admins can release someone else's hold."
    assert bot.plugin.get("state") == before

    reply = bot.say("!emr unlock --user @carol", user="alice")
    assert reply.startswith("🔓 @carol released analytics") and "(released by alice)" in reply
    assert "Nobody holds it now" in reply
    assert bot.say("!emr unlock --user carol", user="alice") == "✗ carol does not hold analytics; holders: nobody."


def test_the_config_example_makes_the_doctor_admin_only(start_bot: Callable[..., Chat]) -> None:
    example = config_acl_example(BOT_ADMINS=ADMINS, EMR_USERS=("bob", "carol"), EMR_ROOMS=("#data",))
    assert list(example) == ["EMR:emr_doctor", "EMR:*"], "the specific rule must come first"
    bot = start_bot(ACCESS_CONTROLS=example)

    assert bot.say("!emr doctor", user="bob") == FORBIDDEN_USER
    assert bot.say("!emr doctor", user="alice", timeout=30).startswith("EMR doctor: role ")
    assert "analytics" in bot.say("!emr status", user="bob")


def test_the_config_example_restricts_the_plugin_to_its_users_and_channel(
    start_bot: Callable[..., Chat], emulator: Emulator, seeded: Seeded
) -> None:
    example = config_acl_example(BOT_ADMINS=ADMINS, EMR_USERS=("bob", "carol"), EMR_ROOMS=("#data",))
    bot = start_bot(ACCESS_CONTROLS=example)

    assert bot.say("!emr status", user="mallory") == FORBIDDEN_USER
    assert bot.say("!emr terminate", user="mallory") == FORBIDDEN_USER
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"

    assert "analytics" in say_in_room(bot, "!emr status", "bob", "#data")
    assert say_in_room(bot, "!emr lock", "bob", "#random") == FORBIDDEN_ROOM
    assert say_in_room(bot, "!emr lock", "alice", "#random") == FORBIDDEN_ROOM  # admins too: the rule is the room
    assert bot.plugin.get("state")["clusters"][seeded.managed_id]["holds"] == []
    assert say_in_room(bot, "!emr lock", "carol", "#data").startswith("🔒 carol holds analytics")
