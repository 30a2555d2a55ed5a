"""Fuzz every command (Hypothesis): always one answer, never a traceback, refusals change nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Chat
from demo.emulator import Emulator, Seeded

NASTY = [
    "--force",
    "--user",
    "--forse",
    "-f",
    "analytics",
    "etl-nightly",
    "j-ABCDEFGH1234",
    "<@U0ALICE>",
    "<!channel>",
    "@here",
    "`",
    "```",
    "'",
    '"',
    "\\",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "$(id)",
    "; rm -rf /",
    "|",
    "*bold*",
    "25:00",
    "19:30",
    "-1",
    "99999999999999999999",
    "🚀",
    "解析",
    "\u202e",
    "x" * 5000,
]
words = st.one_of(st.text(max_size=40), st.sampled_from(NASTY))
arguments = st.lists(words, max_size=6).map(" ".join)
commands = st.sampled_from(
    ["status", "lock", "unlock", "terminate", "overtime", "history", "doctor", "", "frobnicate", "lock analytics"]
)
users = st.sampled_from(["alice", "bob", "admin"])


@pytest.mark.slow
@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=commands, args=arguments, user=users)
def test_every_command_answers_one_line_or_acts(
    chat: Chat, emulator: Emulator, seeded: Seeded, command: str, args: str, user: str
) -> None:
    chat.say("!emr status")  # the bot has seen whatever clusters are running
    before = chat.plugin.get("state")
    reply = chat.say(f"!emr {command} {args}".rstrip(), user=user)
    assert reply, "no answer"
    assert "Traceback" not in reply and "Computer says nooo" not in reply
    if reply.startswith("✗"):
        assert "\n" not in reply, reply
        assert len(reply) <= 400, reply
        assert chat.plugin.get("state") == before
        assert emulator.count("TerminateJobFlows") == 0
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
    if emulator.count("TerminateJobFlows"):
        # An accepted terminate: start a fresh cluster for the next example.
        emulator.run_cluster("analytics")
        emulator.reset_counts()
