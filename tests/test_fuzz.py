"""Fuzz every command (Hypothesis): always one answer, never a crash, refusals change nothing.

A crash is a failure here even though the plugin survives it: the apology the
plugin answers an unexpected exception with ("Something unexpected went wrong"),
or any ERROR record logged while the example runs (the traceback goes there).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import APOLOGY, Chat, LoggedErrors
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
    "²",  # str.isdigit() is True, int() refuses it
    "١٢",  # Arabic-Indic 12: a decimal number to int(), not ASCII
    "١٩:٣٠",  # an Arabic-Indic HH:MM for !emr overtime
    "٢٥:٠٠",
    "\u202e",
    "x" * 5000,
]
words = st.one_of(st.text(max_size=40), st.sampled_from(NASTY))
# Often a single word, so that `history ²` or `overtime 25:00` is likely, not a rare draw.
arguments = st.one_of(st.sampled_from(NASTY), st.lists(words, max_size=6).map(" ".join))
commands = st.sampled_from(
    [
        "status",
        "lock",
        "unlock",
        "terminate",
        "overtime",
        "history",
        "report",
        "start",
        "doctor",
        "",
        "frobnicate",
        "lock analytics",
    ]
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
@example(command="history", args="²", user="alice")  # a known crash: "²".isdigit() but int("²") raises
@example(command="history", args="١٢", user="alice")
@example(command="overtime", args="١٩:٣٠", user="alice")
def test_every_command_answers_one_line_or_acts(
    chat: Chat, emulator: Emulator, seeded: Seeded, command: str, args: str, user: str
) -> None:
    with LoggedErrors() as errors:
        chat.say("!emr status")  # the bot has seen whatever clusters are running
        before = chat.plugin.get("state")
        reply = chat.say(f"!emr {command} {args}".rstrip(), user=user)
    assert reply, "no answer"
    assert "Traceback" not in reply and "Computer says nooo" not in reply
    assert APOLOGY not in reply, f"the command crashed: {reply}"
    assert not errors.records, errors.summary()
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
