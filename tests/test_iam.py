"""IAM enforced: the shipped policies are exactly enough, and a missing action is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Chat, Clock, emr_config
from demo import policies
from demo.emulator import Emulator
from emr_adapter import PERMISSIONS

ROOT = Path(__file__).resolve().parent.parent


def iam_bot(tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Chat:
    """Account A's IAM user with exactly the shipped AssumeRole policy; enforcement on."""
    keys = emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)
    emulator.reset_counts()
    return Chat(tmp_path / "data", emr_config(emulator), clock).start()


def test_the_shipped_policy_lists_exactly_the_actions_the_code_calls() -> None:
    document = json.loads((ROOT / "deploy/iam/account-b-permissions.json").read_text())
    shipped = {action for statement in document["Statement"] for action in statement["Action"]}
    assert shipped == set(PERMISSIONS)


def test_the_whole_flow_passes_with_exactly_the_shipped_policies(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.reset()
    seeded = emulator.seed()  # role cre: the shipped trust and permission policies
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch)
    try:
        assert "analytics" in bot.say("!emr status")
        assert bot.say("!emr lock check enforcement").startswith("🔒 alice holds analytics")
        assert bot.say("!emr unlock").startswith("🔓 You released analytics")
        clock.advance(minutes=26)  # the idle warning is due: the steps are read first (ListSteps)
        bot.tick()
        assert emulator.count("ListSteps") == 1 and "cannot read the steps" not in caplog.text
        assert [text for text in bot.announcements() if text.startswith("⏳ analytics")]
        assert bot.say("!emr terminate").startswith("🛑 Terminating analytics")
        assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
        assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
        assert bot.say("!emr status").startswith("No managed EMR cluster is running")
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_role_without_terminate_permission_gets_a_one_line_answer_naming_it(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:TerminateJobFlows"]))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch)
    try:
        assert "analytics" in bot.say("!emr status")
        before = bot.plugin.get("state")
        reply = bot.say("!emr terminate")
        assert reply.startswith("✗ AWS denied elasticmapreduce:TerminateJobFlows")
        assert "deploy/iam" in reply and "\n" not in reply
        assert emulator.cluster_state(seeded.managed_id) == "WAITING"
        assert bot.plugin.get("state") == before
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_role_without_list_permission_is_named_in_status(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:ListClusters"]))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch)
    try:
        assert bot.say("!emr status").startswith("✗ AWS denied elasticmapreduce:ListClusters")
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)
