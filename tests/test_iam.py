"""IAM enforced: the shipped policies are exactly enough, and a missing action is named.

moto enforces the actions and, with demo/moto_emr_resources.py, the account and region of each
cluster ARN in the policies and iam:PassRole on the roles RunJobFlow passes; it treats the managed-tag
condition (``elasticmapreduce:ResourceTag/…``, ``RequestTag/…``) and ``iam:PassedToService`` as
satisfied (it has no value for them), which tests below pin down. What those conditions refuse is
checked in tests/test_policies.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import Chat, Clock, emr_config
from demo import policies
from demo.emulator import Emulator
from emrchatops.aws.adapter import PERMISSIONS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = str(ROOT / "deploy" / "templates")  # the shipped analytics.json


def iam_bot(tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch, **config: Any) -> Chat:
    """Account A's IAM user with exactly the shipped AssumeRole policy; enforcement on."""
    keys = emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)
    emulator.reset_counts()
    return Chat(tmp_path / "data", emr_config(emulator, **config), clock).start()


def test_the_shipped_policy_lists_exactly_the_actions_the_code_calls() -> None:
    document = json.loads((ROOT / "deploy/iam/account-b-permissions.json").read_text())
    shipped = {action for statement in document["Statement"] for action in statement["Action"]}
    assert shipped == set(PERMISSIONS)


def test_the_whole_flow_passes_with_exactly_the_shipped_policies(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.reset()
    seeded = emulator.seed()  # role cre: the shipped trust and permission policies
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, TEMPLATES_DIR=TEMPLATES)
    try:
        bot.tick()  # the backstop goes on (PutAutoTerminationPolicy)
        assert emulator.backstop(seeded.managed_id) == 10800
        status = bot.say("!emr status")
        assert "analytics" in status and "cost: ≈ $" in status  # ListInstanceGroups allowed (read at the tick)
        assert emulator.count("ListInstanceGroups") == 1 and "cannot read the instances" not in caplog.text
        assert bot.say("!emr lock check enforcement").startswith("🔒 alice holds analytics")
        assert bot.say("!emr unlock").startswith("🔓 You released analytics")
        clock.advance(minutes=26)  # the idle warning is due: the steps are read first (ListSteps)
        bot.tick()
        assert emulator.count("ListSteps") == 1 and "cannot read the steps" not in caplog.text
        assert emulator.count("GetMetricData") == 2 and "cannot read IsIdle" not in caplog.text  # one per tick
        assert [text for text in bot.announcements() if text.startswith("⏳ analytics")]
        assert bot.say("!emr terminate").startswith("🛑 Terminating analytics")
        assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
        assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
        assert bot.say("!emr status").startswith("No managed EMR cluster is running")
        assert emulator.backstop(seeded.managed_id) == 10800  # on at the first tick, off at the lock, on again
        assert (emulator.count("PutAutoTerminationPolicy"), emulator.count("RemoveAutoTerminationPolicy")) == (2, 1)
        # Starting: RunJobFlow with the managed tag, the two roles passed (the emulator checks iam:PassRole).
        assert bot.say("!emr start analytics").startswith("🚀 Starting analytics")
        [started] = emulator.started
        assert emulator.count("RemoveAutoTerminationPolicy") == 2 and emulator.backstop(started) is None
        assert "AWS denied" not in " ".join(bot.announcements())
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
        assert reply.startswith(
            f"✗ AWS denied elasticmapreduce:TerminateJobFlows on analytics ({seeded.managed_id}), "
            "which is tagged emr-chatops=true (account 210987654321, ap-northeast-1): "
            "allow elasticmapreduce:TerminateJobFlows on clusters tagged emr-chatops=true"
        )
        assert "deploy/iam" in reply and "\n" not in reply
        assert emulator.cluster_state(seeded.managed_id) == "WAITING"
        assert bot.plugin.get("state") == before
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_role_without_list_instance_groups_shows_no_cost_and_the_doctor_names_the_action(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:ListInstanceGroups"]))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch)
    try:
        bot.tick()
        status = bot.say("!emr status")
        assert (
            "cost: cost unknown (its instances could not be read: AWS denied elasticmapreduce:ListInstanceGroups"
            in (status)
        )
        assert "$" not in status  # never a guess
        assert "cannot read the instances" in caplog.text
        doctor = bot.say("!emr doctor")
        assert "✗ EMR ListInstanceGroups / ListInstanceFleets (cost)" in doctor
        assert "elasticmapreduce:ListInstanceGroups" in doctor
        assert bot.say("!emr lock").startswith("🔒 alice holds analytics")  # the rest works on
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_report_never_shows_an_unknown_cost_as_a_number(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()  # a role from before part two: no ListInstanceGroups
    emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:ListInstanceGroups"]))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, HOLD_REMIND_MINUTES="off")
    try:
        assert bot.say("!emr lock").startswith("🔒 alice holds analytics")
        start = clock.now
        for minute in range(0, 181, 5):  # held 10:00–13:00, the poller every 5 minutes
            clock.set(start + timedelta(minutes=minute))
            bot.tick()
        report = bot.say("!emr report 1")
        [row] = [line for line in report.splitlines() if line.startswith("12-01 Tue")]
        [total] = [line for line in report.splitlines() if line.startswith("total")]
        assert row.split()[2:4] == ["3:00", "3:00"] and row.split()[7] == "unknown", row  # up and held, no $0.00
        assert total.split()[6] == "unknown", total
        assert (
            "Cost of analytics unknown: its instances could not be read "
            "(AWS denied elasticmapreduce:ListInstanceGroups; see !emr doctor)"
        ) in report, report
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


def test_a_denied_termination_of_a_cluster_without_the_managed_tag_says_which_tags_it_has(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CLUSTER_TAG `*` makes the untagged etl-nightly managed; the shipped role would refuse it in AWS by
    # its tag condition. moto does not evaluate that condition, so the role here lacks the action: AWS
    # answers both the same way, and the reply is about the cluster's tags either way.
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:TerminateJobFlows"]))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, CLUSTER_TAG="*")
    try:
        assert "etl-nightly" in bot.say("!emr status")
        before = bot.plugin.get("state")
        reply = bot.say("!emr terminate etl-nightly")  # as the chat shows it: `code` without its backticks
        assert reply == (
            f"✗ AWS denied elasticmapreduce:TerminateJobFlows on etl-nightly ({seeded.unmanaged_id}) "
            "(account 210987654321, ap-northeast-1): the role may only terminate clusters tagged "
            "emr-chatops=true: this cluster's tags are team=etl. Tag it (aws emr add-tags --resource-id "
            f"{seeded.unmanaged_id} --tags emr-chatops=true) if the bot should manage it, or widen the role's "
            "tag condition (deploy/iam/; docs/operator-guide.md, IAM)."
        )
        assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
        assert bot.plugin.get("state") == before
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_the_emulator_does_not_evaluate_the_tag_condition(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pinned so that the README stays true: with the shipped policy, AWS refuses to terminate an
    # untagged cluster (tests/test_policies.py), moto lets it through. If moto learns the condition,
    # this fails, and the refusal can be tested here, end to end.
    emulator.reset()
    seeded = emulator.seed()
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, CLUSTER_TAG="*")
    try:
        assert bot.say("!emr terminate etl-nightly").startswith("🛑 Terminating etl-nightly")
        assert emulator.cluster_state(seeded.unmanaged_id) == "TERMINATED"
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


@pytest.mark.parametrize(
    "elsewhere", [{"region": "eu-west-1"}, {"account_b_id": "333333333333"}], ids=["region", "account"]
)
def test_a_policy_for_another_region_or_account_refuses_the_clusters(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch, elsewhere: dict[str, str]
) -> None:
    # The shipped policy filled in for another region (or account) than the clusters': ListClusters
    # (no resource) is allowed, reading a cluster's tags is not. The emulator checks the cluster ARN.
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(**elsewhere))
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch)
    try:
        assert bot.say("!emr status").startswith("✗ AWS denied elasticmapreduce:DescribeCluster")
        assert emulator.count("ListClusters") == 1
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


# -- starting under IAM --------------------------------------------------------------------------------


def start_refused(tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> str:
    """`!emr start analytics` (the seeded analytics terminated first) as the role; asserts nothing started."""
    emulator.emr_b().terminate_job_flows(JobFlowIds=[c["Id"] for c in emulator.emr_b().list_clusters()["Clusters"]])
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, TEMPLATES_DIR=TEMPLATES)
    try:
        bot.say("!emr status")
        before = bot.plugin.get("state")
        reply = bot.say("!emr start analytics")
        assert emulator.count("RunJobFlow") == 1 and emulator.started == []
        assert bot.plugin.get("state") == before and "\n" not in reply
        return reply
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_a_role_that_may_not_pass_the_cluster_roles_is_named_and_nothing_starts(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["iam:PassRole"]))
    reply = start_refused(tmp_path, emulator, clock, monkeypatch)
    assert reply == (
        "✗ Could not start analytics: AWS denied iam:PassRole (account 210987654321, ap-northeast-1): the role may "
        "pass only the two roles given to deploy/cloudformation/account-b.yaml as ClusterServiceRoleName and "
        "ClusterInstanceRoleName, and analytics.json passes EMR_DefaultRole (ServiceRole) and EMR_EC2_DefaultRole "
        "(JobFlowRole): make them match, then try again. Nothing was started."
    )


def test_a_policy_for_other_cluster_roles_refuses_the_templates_roles(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(roles=("DataEmrService", "DataEmrNodes")))
    assert "AWS denied iam:PassRole" in start_refused(tmp_path, emulator, clock, monkeypatch)


def test_a_role_without_runjobflow_is_named_and_nothing_starts(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:RunJobFlow"]))
    reply = start_refused(tmp_path, emulator, clock, monkeypatch)
    assert reply == (
        "✗ Could not start analytics: AWS denied elasticmapreduce:RunJobFlow (account 210987654321, ap-northeast-1): "
        "allow it in the role's permission policy for clusters tagged emr-chatops=true (its RequestTag condition "
        "must name EMR_CLUSTER_TAG; see deploy/iam/), then try again. Nothing was started."
    )


def test_the_emulator_does_not_evaluate_the_request_tag_or_passed_to_service_conditions(
    tmp_path: Path, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pinned so that the README stays true: the shipped policy filled in for another tag would refuse a
    # start tagged emr-chatops=true in AWS (tests/test_policies.py); moto lets it through.
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(tag=("team", "data")))
    emulator.emr_b().terminate_job_flows(JobFlowIds=[c["Id"] for c in emulator.emr_b().list_clusters()["Clusters"]])
    bot = iam_bot(tmp_path, emulator, clock, monkeypatch, TEMPLATES_DIR=TEMPLATES)
    try:
        assert bot.say("!emr start analytics").startswith("🚀 Starting analytics")
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)
