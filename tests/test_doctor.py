"""`!emr doctor` against the emulator: a working chain says all ✓, each broken link says ✗ and the fix.

The broken setups are real ones, made in moto with IAM enforcement where IAM decides: a role ARN
that account A may not assume, a role missing one EMR action, credentials AWS does not know, a
region with no EMR, no managed cluster, an unreachable endpoint, risky settings.

What moto cannot show: a real but wrong region. moto's server files every EMR request made through
an endpoint URL under one region, so the clusters are seen whatever EMR_REGION says. In AWS a
wrong region looks like "no active cluster at all", which is tested (and whose fix names
EMR_REGION), and a made-up region is caught offline from the SDK's endpoint data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import ROOT, Chat, Clock
from demo import policies
from demo.emulator import ACCOUNT_B, EXTERNAL_ID, Emulator, Seeded


def doctor(bot: Chat) -> list[str]:
    reply = bot.say("!emr doctor", timeout=60)
    assert EXTERNAL_ID not in reply, "the ExternalId is a shared secret"
    return reply.splitlines()


def line(lines: list[str], start: str) -> str:
    """The line starting with *start*, with its fix line (if any) appended."""
    for i, text in enumerate(lines):
        if text.startswith(start):
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("    fix: ") else ""
            return text + ("\n" + fix if fix else "")
    raise AssertionError(f"no line starting with {start!r} in:\n" + "\n".join(lines))


def marks(lines: list[str]) -> set[str]:
    return {text[0] for text in lines[1:-1] if not text.startswith("    fix: ")}


def enforce_iam(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, keys: dict[str, str] | None = None) -> None:
    """Account A's identity: the IAM user with exactly the shipped AssumeRole policy (or *keys*); IAM on."""
    keys = keys or emulator.create_bot_user()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)


def test_a_working_chain_is_all_ticks(start_bot: Any, seeded: Seeded, emulator: Emulator) -> None:
    emulator.put_is_idle(seeded.managed_id, datetime.now(UTC) - timedelta(minutes=5), 1)  # EMR publishes IsIdle
    bot = start_bot(POLL_SECONDS=30)
    bot.tick()  # the backstop goes on the unheld cluster
    lines = doctor(bot)
    assert lines[0].startswith(f"EMR doctor: role arn:aws:iam::{ACCOUNT_B}:role/cre (ExternalId set)")
    assert lines[-1] == "All checks passed."
    assert marks(lines) == {"✓", "–"}
    assert line(lines, "✓ Region ap-northeast-1").endswith("EMR is offered there (partition aws)")
    assert line(lines, "✓ Bot identity (account A").startswith(
        "✓ Bot identity (account A, sts:GetCallerIdentity): account 123456789012"
    )
    assert f"✓ AssumeRole into account {ACCOUNT_B}: arn:aws:sts::{ACCOUNT_B}:assumed-role/cre/" in line(
        lines, "✓ AssumeRole"
    )
    assert line(lines, "✓ EMR ListClusters") == "✓ EMR ListClusters (ap-northeast-1): 2 active clusters"
    assert line(lines, "✓ EMR DescribeCluster") == "✓ EMR DescribeCluster (reads the tags): read the tags of 2 clusters"
    assert line(lines, "✓ Clusters") == "✓ Clusters: 1 managed (analytics WAITING), 1 unmanaged (not touched)"
    assert line(lines, "– EMR TerminateJobFlows").startswith("– EMR TerminateJobFlows: not checked (only terminating")
    assert line(lines, "✓ EMR auto-termination (backstop)") == (
        "✓ EMR auto-termination (backstop): matches the holds of 1 managed cluster (unheld: 180 idle minutes; held: none)"
    )
    assert line(lines, "– EMR RunJobFlow and iam:PassRole").endswith(
        "not needed: TEMPLATES_DIR is not set (!emr start is off)"
    )
    assert line(lines, "– Templates (!emr start)").endswith("TEMPLATES_DIR not set: !emr start is off")
    assert line(lines, "✓ NOTIFY_CHANNEL #emr-alerts")
    assert (
        line(lines, "– AWS's Price List (PRICES=api)")
        == (
            "– AWS's Price List (PRICES=api): not used (PRICES=file): costs come from the shipped price table of "
            "2026-11-29, whose prices are estimates (status and report say so); to read AWS's own: EMR_PRICES=api, "
            "or a PRICES_FILE written by make prices (docs/operator-guide.md, Prices)"  # as the chat shows it: `code` without backticks
        )
    )
    # The doctor looks, never touches: no termination, no state, no policy changed.
    assert emulator.count("TerminateJobFlows") == 0
    assert emulator.count("PutAutoTerminationPolicy") == 1  # the tick's, not the doctor's
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_the_doctor_assumes_the_role_afresh_instead_of_trusting_the_cached_token(
    start_bot: Any, seeded: Seeded, emulator: Emulator
) -> None:
    bot = start_bot()
    bot.say("!emr status")
    assert emulator.count("AssumeRole") == 1
    doctor(bot)
    assert emulator.count("AssumeRole") == 2
    bot.say("!emr status")
    assert emulator.count("AssumeRole") == 2, "the commands' cached token is untouched"


def test_a_role_account_a_may_not_assume_is_named_with_the_fix(
    start_bot: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed()
    enforce_iam(emulator, monkeypatch)
    wrong = f"arn:aws:iam::{ACCOUNT_B}:role/no-such-role"
    lines = doctor(start_bot(ROLE_ARN=wrong))
    assert line(lines, "✓ Bot identity").endswith("arn:aws:iam::123456789012:user/emr-chatops-bot")
    failed = line(lines, f"✗ AssumeRole into account {ACCOUNT_B}")
    assert f"AWS denied sts:AssumeRole on {wrong} to arn:aws:iam::123456789012:user/emr-chatops-bot" in failed
    assert "fix: the role must exist" in failed and "RoleArn output of deploy/cloudformation/account-b.yaml" in failed
    assert "account-a.yaml" in failed and "EMR_EXTERNAL_ID" in failed
    assert line(lines, "– EMR ListClusters").endswith("not checked: AssumeRole failed")
    assert lines[-1].startswith("1 problem: fix the ✗ lines")


@pytest.mark.parametrize(
    ("missing", "failed_line", "not_checked"),
    [
        ("elasticmapreduce:ListClusters", "✗ EMR ListClusters (ap-northeast-1)", "– EMR DescribeCluster"),
        ("elasticmapreduce:DescribeCluster", "✗ EMR DescribeCluster (reads the tags)", "– Clusters"),
    ],
)
def test_a_missing_emr_permission_is_named_with_the_fix(
    start_bot: Any,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
    failed_line: str,
    not_checked: str,
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=[missing]))
    enforce_iam(emulator, monkeypatch)
    lines = doctor(start_bot())
    assert line(lines, f"✓ AssumeRole into account {ACCOUNT_B}")
    failed = line(lines, failed_line)
    assert f": AWS denied {missing}\n" in failed
    assert f"fix: allow {missing} in the role's permission policy in account {ACCOUNT_B}" in failed
    assert "deploy/iam/account-b-permissions.json" in failed
    assert "for the clusters of the stack's own region: deploy it in ap-northeast-1" in failed
    assert "not checked" in line(lines, not_checked)
    assert lines[-1].startswith("1 problem")


def test_credentials_aws_does_not_know_are_named_and_nothing_further_is_tried(
    start_bot: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed()
    emulator.create_bot_user()  # IAM has a user, but not these keys
    enforce_iam(
        emulator,
        monkeypatch,
        {"aws_access_key_id": "AKIAUNKNOWNKEY000001", "aws_secret_access_key": "not-a-key-aws-knows"},
    )
    emulator.reset_counts()
    lines = doctor(start_bot())
    failed = line(lines, "✗ Bot identity (account A")
    assert "InvalidClientTokenId" in failed
    assert "fix: give the bot valid credentials of account A" in failed and "instance profile" in failed
    assert line(lines, f"– AssumeRole into account {ACCOUNT_B}").endswith("the bot's own identity must work first")
    assert emulator.count("AssumeRole") == 0
    assert "not-a-key-aws-knows" not in "\n".join(lines)


def test_a_region_without_emr_is_caught_before_any_call(start_bot: Any, seeded: Seeded) -> None:
    lines = doctor(start_bot(REGION="ap-northeast-9"))
    failed = line(lines, "✗ Region ap-northeast-9")
    assert "EMR is not offered in ap-northeast-9 (partition aws)" in failed
    assert "fix: set EMR_REGION to the cluster's region, e.g. ap-northeast-1" in failed


def test_no_managed_cluster_names_the_tag_to_put_on(start_bot: Any, seeded: Seeded, emulator: Emulator) -> None:
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id])
    lines = doctor(start_bot())
    failed = line(lines, "✗ Clusters")
    assert "0 managed, 1 unmanaged (not touched): no active cluster carries the tag emr-chatops=true" in failed
    assert "aws emr add-tags --resource-id j-… --tags emr-chatops=true" in failed
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"


def test_no_cluster_at_all_points_at_the_region_and_the_account(
    start_bot: Any, seeded: Seeded, emulator: Emulator
) -> None:
    # What a wrong (but real) EMR_REGION looks like in AWS: the account has no cluster there.
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id, seeded.unmanaged_id])
    lines = doctor(start_bot())
    assert line(lines, "✓ EMR ListClusters") == "✓ EMR ListClusters (ap-northeast-1): 0 active clusters"
    assert line(lines, "– EMR DescribeCluster").endswith("not checked: no active cluster to describe")
    failed = line(lines, "✗ Clusters")
    assert f"no active cluster at all in account {ACCOUNT_B}, ap-northeast-1" in failed
    assert "another region (EMR_REGION) or account (EMR_ROLE_ARN)" in failed


def test_an_unreachable_endpoint_is_one_failure_not_a_cascade(start_bot: Any, seeded: Seeded) -> None:
    lines = doctor(start_bot(ENDPOINT_URL="http://127.0.0.1:9"))  # discard port: connection refused
    failed = line(lines, "✗ Bot identity")
    assert "AWS unreachable" in failed and "fix: the host cannot reach AWS STS" in failed
    assert line(lines, "– AssumeRole")
    assert lines[-1].startswith("1 problem")


def test_risky_settings_are_flagged(start_bot: Any, seeded: Seeded) -> None:
    lines = doctor(start_bot(NOTIFY_CHANNEL=None, CLUSTER_TAG="*", END_OF_DAY="off", POLL_SECONDS=30))
    notify = line(lines, "✗ NOTIFY_CHANNEL")
    assert "only logged" in notify and "fix: set EMR_NOTIFY_CHANNEL=#emr-alerts" in notify
    assert f"every active cluster of account {ACCOUNT_B} in ap-northeast-1 is managed" in line(lines, "⚠ CLUSTER_TAG *")
    assert "a held cluster runs all night" in line(lines, "⚠ END_OF_DAY off")
    assert line(lines, "– EMR DescribeCluster").endswith("not needed: CLUSTER_TAG is *")
    assert "2 managed (analytics WAITING, etl-nightly WAITING), 0 unmanaged" in line(lines, "✓ Clusters")
    assert lines[-1].startswith("1 problem")


def test_a_denied_automatic_termination_seen_by_the_poller_is_reported(
    start_bot: Any, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:TerminateJobFlows"]))
    enforce_iam(emulator, monkeypatch)
    bot = start_bot()
    bot.tick()
    clock.advance(minutes=31)
    bot.tick()  # the idle rule tries, and AWS says no
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    lines = doctor(bot)
    failed = line(lines, "✗ EMR TerminateJobFlows")
    assert f"the automatic termination of analytics ({seeded.managed_id}) failed: AccessDenied" in failed
    assert "fix: allow elasticmapreduce:TerminateJobFlows" in failed


def test_a_termination_denied_by_the_tag_condition_is_explained_with_the_cluster_s_tags(
    start_bot: Any, emulator: Emulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CLUSTER_TAG `*`: the untagged etl-nightly is managed, and in AWS the shipped role refuses to
    # terminate it (its tag condition). moto does not evaluate the condition, so the role lacks the
    # action here; AWS's answer is the same, and the doctor reads the cluster's tags to explain it.
    emulator.reset()
    seeded = emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:TerminateJobFlows"]))
    enforce_iam(emulator, monkeypatch)
    bot = start_bot(CLUSTER_TAG="*")
    bot.say("!emr lock analytics")  # held: only etl-nightly goes idle
    bot.tick()
    clock.advance(minutes=31)
    bot.tick()
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
    failed = line(doctor(bot), "✗ EMR TerminateJobFlows")
    first, fix = failed.split("\n")
    assert first == (
        f"✗ EMR TerminateJobFlows: the automatic termination of etl-nightly ({seeded.unmanaged_id}) failed: "
        "AccessDenied: the role may only terminate clusters tagged emr-chatops=true: this cluster's tags are team=etl"
    )
    assert fix.startswith(
        f"    fix: tag it (aws emr add-tags --resource-id {seeded.unmanaged_id} --tags emr-chatops=true) "
        "if the bot should manage it; or make the role's tag condition name EMR_CLUSTER_TAG"
    )
    assert "account-b.yaml" in fix
    assert emulator.count("TerminateJobFlows") >= 1 and emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_the_doctor_says_which_clusters_the_role_may_terminate(start_bot: Any, seeded: Seeded) -> None:
    skipped = line(doctor(start_bot()), "– EMR TerminateJobFlows")
    assert f"allows it on the clusters of account {ACCOUNT_B} in ap-northeast-1 tagged emr-chatops=true" in skipped


# -- the backstop, and starting ---------------------------------------------------------------------

BACKSTOP_LINE = "EMR auto-termination (backstop)"


def test_a_policy_not_yet_set_is_a_warning_that_the_next_tick_sets_it(start_bot: Any, seeded: Seeded) -> None:
    assert line(doctor(start_bot()), "⚠ " + BACKSTOP_LINE) == (
        f"⚠ {BACKSTOP_LINE}: analytics ({seeded.managed_id}) has no auto-termination policy, should have 180 min "
        "(nobody holds it); the poller sets it at its next tick"
    )


def test_policies_changed_outside_the_bot_are_listed_with_the_fix(
    start_bot: Any, seeded: Seeded, emulator: Emulator
) -> None:
    adhoc = emulator.run_cluster("adhoc")
    bot = start_bot()
    bot.say("!emr lock adhoc", user="alice")
    bot.tick()
    emr = emulator.emr_b()
    emr.remove_auto_termination_policy(ClusterId=seeded.managed_id)  # someone in the console
    emr.put_auto_termination_policy(ClusterId=adhoc, AutoTerminationPolicy={"IdleTimeout": 3600})
    failed = line(doctor(bot), "✗ " + BACKSTOP_LINE)
    first, fix = failed.split("\n")
    assert first == (  # oldest first, then by name (as listed)
        f"✗ {BACKSTOP_LINE}: adhoc ({adhoc}) has an idle timeout of 60 min, should have none (someone holds it); "
        f"changed outside the bot; analytics ({seeded.managed_id}) has no auto-termination policy, should have "
        "180 min (nobody holds it); changed outside the bot"
    )
    assert "aws emr put-auto-termination-policy --cluster-id j-… --auto-termination-policy IdleTimeout=10800" in fix
    assert "aws emr remove-auto-termination-policy" in fix


def test_a_denied_policy_read_is_named_with_the_fix(
    start_bot: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    emulator.seed(permissions=policies.permission_policy(without=["elasticmapreduce:GetAutoTerminationPolicy"]))
    enforce_iam(emulator, monkeypatch)
    failed = line(doctor(start_bot()), "✗ " + BACKSTOP_LINE)
    assert ": AWS denied elasticmapreduce:GetAutoTerminationPolicy\n" in failed
    assert "fix: allow elasticmapreduce:GetAutoTerminationPolicy in the role's permission policy" in failed


def test_a_failing_backstop_change_is_reported_with_the_permission_to_add(
    start_bot: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.reset()
    seeded = emulator.seed(
        permissions=policies.permission_policy(without=["elasticmapreduce:PutAutoTerminationPolicy"])
    )
    enforce_iam(emulator, monkeypatch)
    bot = start_bot()
    bot.tick()
    failed = line(doctor(bot), "✗ " + BACKSTOP_LINE)
    assert f"analytics ({seeded.managed_id}) has no auto-termination policy, should have 180 min" in failed
    assert "the bot's last change failed: AccessDenied, it keeps trying" in failed
    assert (
        "fix: allow elasticmapreduce:PutAutoTerminationPolicy and RemoveAutoTerminationPolicy on clusters tagged"
        in failed
    )


def test_backstop_off_is_flagged(start_bot: Any, seeded: Seeded) -> None:
    assert line(doctor(start_bot(BACKSTOP_MINUTES="off")), "⚠ " + BACKSTOP_LINE).startswith(
        f"⚠ {BACKSTOP_LINE}: BACKSTOP_MINUTES off: if the bot is down, an unheld cluster runs"
    )


def test_the_templates_are_listed_and_passrole_is_said_to_be_unprovable(start_bot: Any, seeded: Seeded) -> None:
    templates = str(ROOT / "deploy" / "templates")
    lines = doctor(start_bot(TEMPLATES_DIR=templates))
    assert line(lines, "✓ Templates") == (
        f"✓ Templates (!emr start) {templates}: analytics (cluster analytics, emr-7.5.0); "
        "at most 2 managed clusters at once"
    )
    start = line(lines, "– EMR RunJobFlow and iam:PassRole (!emr start)")
    assert "not checked (only starting a cluster would tell)" in start
    assert "RunJobFlow for clusters tagged emr-chatops=true and iam:PassRole on two roles, to EMR and EC2 only" in start
    assert "the templates pass EMR_DefaultRole (ServiceRole) and EMR_EC2_DefaultRole (JobFlowRole)" in start
    assert "ClusterServiceRoleName and ClusterInstanceRoleName" in start
