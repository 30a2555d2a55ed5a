"""The commands end to end: Errbot's test backend, moto's server on loopback, two accounts."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Chat
from demo.emulator import ACCOUNT_B, Emulator, Seeded


def stored_state(chat: Chat) -> Any:
    return chat.plugin.get("state")


def test_the_cluster_lives_in_account_b_and_is_reached_through_assume_role(
    chat: Chat, emulator: Emulator, seeded: Seeded
) -> None:
    # Account A's own credentials see no cluster at all: only the assumed role does.
    assert emulator.client("emr").list_clusters()["Clusters"] == []
    reply = chat.say("!emr status")
    assert "analytics" in reply
    assert emulator.count("AssumeRole") == 1
    token = chat.plugin.get("sts")
    assert token["role_arn"] == f"arn:aws:iam::{ACCOUNT_B}:role/cre"


def test_status_lists_the_managed_cluster_only(chat: Chat, seeded: Seeded) -> None:
    reply = chat.say("!emr status")
    assert "analytics" in reply and seeded.managed_id in reply
    assert "etl-nightly" not in reply and seeded.unmanaged_id not in reply
    assert "WAITING" in reply
    assert "held by nobody" in reply
    assert "terminated at 10:30 unless someone locks it (idle since 10:00)" in reply


def test_status_without_a_managed_cluster_names_account_and_region(
    chat: Chat, emulator: Emulator, seeded: Seeded
) -> None:
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id])
    reply = chat.say("!emr status")
    assert reply == (
        f"No managed EMR cluster is running in account {ACCOUNT_B} (ap-northeast-1, tag emr-chatops=true)."
    )


def test_lock_unlock_round_trip_with_shared_holds(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    reply = chat.say("!emr lock spark job on logs", user="alice")
    assert reply.startswith("🔒 alice holds analytics")
    assert "spark job on logs" in reply
    reply = chat.say("!emr lock analytics", user="bob")
    assert "alice" in reply and "bob" in reply
    status = chat.say("!emr status")
    assert "alice since 10:00" in status and "bob since 10:00" in status
    assert "terminated at 19:00 (end of day)" in status
    reply = chat.say("!emr unlock", user="alice")
    assert "Still held by bob" in reply
    reply = chat.say("!emr unlock", user="bob")
    assert "Nobody holds it now: terminated at 10:30 unless someone locks it" in reply
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"


def test_lock_refreshes_an_existing_hold(chat: Chat) -> None:
    chat.say("!emr lock first reason", user="alice")
    reply = chat.say("!emr lock second reason", user="alice")
    assert "second reason" in reply and "first reason" not in reply
    assert len(stored_state(chat)["clusters"][next(iter(stored_state(chat)["clusters"]))]["holds"]) == 1


def test_unlock_without_holding_is_refused_and_changes_nothing(chat: Chat) -> None:
    chat.say("!emr lock", user="alice")
    before = stored_state(chat)
    reply = chat.say("!emr unlock", user="bob")
    assert reply.startswith("✗ You don't hold analytics; holders: alice")
    assert stored_state(chat) == before


def test_terminate_refuses_while_others_hold_it_and_names_them(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    chat.say("!emr lock long query", user="alice")
    before = stored_state(chat)
    reply = chat.say("!emr terminate", user="bob")
    assert reply.startswith("✗ analytics is held by alice since 10:00")
    assert "--force" in reply
    assert "\n" not in reply
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert stored_state(chat) == before
    assert emulator.count("TerminateJobFlows") == 0


def test_force_needs_an_admin(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    chat.say("!emr lock", user="alice")
    reply = chat.say("!emr terminate --force", user="bob")
    assert reply.startswith("✗ Only admins can --force")
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    reply = chat.say("!emr terminate analytics --force", user="admin")
    assert reply.startswith(f"🛑 Terminating analytics ({seeded.managed_id}) at admin's request")
    assert "@alice" in reply
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert any("force-terminated" in text for text in chat.announcements())


def test_a_holder_alone_may_terminate(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    chat.say("!emr lock", user="alice")
    reply = chat.say("!emr terminate", user="alice")
    assert reply.startswith("🛑 Terminating analytics")
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert chat.say("!emr lock", user="alice").startswith("✗ No managed EMR cluster is running")
    history = chat.say("!emr history")
    assert "terminated analytics" in history and "by alice" in history


def test_termination_protection_is_a_clear_refusal(chat: Chat, emulator: Emulator) -> None:
    emulator.emr_b().terminate_job_flows(JobFlowIds=[c["Id"] for c in emulator.emr_b().list_clusters()["Clusters"]])
    protected = emulator.run_cluster("analytics", protected=True)
    reply = chat.say("!emr terminate")
    assert reply.startswith(f"✗ analytics ({protected}) has termination protection on")
    assert "\n" not in reply
    assert emulator.cluster_state(protected) == "WAITING"
    assert chat.say("!emr status").count("held by nobody") == 1


def test_unmanaged_cluster_is_invisible_even_by_id(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    for command in (
        f"!emr terminate {seeded.unmanaged_id}",
        f"!emr terminate {seeded.unmanaged_id} --force",
        "!emr terminate etl-nightly --force",
        f"!emr lock {seeded.unmanaged_id} mine now",
        f"!emr status {seeded.unmanaged_id}",
        "!emr unlock etl-nightly",
    ):
        reply = chat.say(command, user="admin")
        assert reply.startswith("✗ No managed cluster called"), (command, reply)
        assert "\n" not in reply
    assert emulator.cluster_state(seeded.unmanaged_id) == "WAITING"
    assert seeded.unmanaged_id not in str(stored_state(chat))
    assert emulator.count("TerminateJobFlows") == 0


def test_several_clusters_must_be_named(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    second = emulator.run_cluster("adhoc")
    reply = chat.say("!emr lock")
    assert reply == "✗ Several clusters are running (adhoc, analytics): name one."
    reply = chat.say("!emr lock adhoc big join")
    assert reply.startswith(f"🔒 alice holds adhoc ({second})")
    assert "big join" in reply
    status = chat.say("!emr status")
    assert status.count("held by nobody") == 1


def test_admin_releases_someone_elses_hold_and_they_are_told(chat: Chat) -> None:
    chat.say("!emr lock", user="alice")
    assert chat.say("!emr unlock --user alice", user="bob") == "✗ Only admins can release someone else's hold."
    reply = chat.say("!emr unlock --user alice", user="admin")
    assert reply.startswith("🔓 @alice released analytics") and "(released by admin)" in reply


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("!emr", "✗ Say what to do: !emr status | start | lock"),
        ("!emr frobnicate", "✗ Unknown subcommand frobnicate"),
        ("!emr status analytics extra", "✗ No managed cluster called analytics extra is running (managed: analytics)"),
        ("!emr status nosuch", "✗ No managed cluster called nosuch is running (managed: analytics)"),
        ("!emr unlock analytics extra", "✗ No managed cluster called analytics extra is running"),
        ("!emr terminate --now", "✗ Unknown option --now."),
        ("!emr terminate a b", "✗ No managed cluster called a b is running"),
        ("!emr lock j-NOTACLUSTER1 x", "✗ No managed cluster called j-NOTACLUSTER1"),
        ("!emr lock " + "x" * 10_000, "✗ That is 10000 characters of arguments; the limit is 1000."),
        ("!emr lock " + "y" * 300, "✗ The reason is 300 characters long; keep it under 200."),
        ("!emr history many", "✗ !emr history takes one number N (1–50)."),
        ("!emr history 0", "✗ N must be between 1 and 50."),
        (
            "!emr terminate $(rm -rf /); `reboot` | cat",
            "✗ No managed cluster called $(rm -rf /); 'reboot' | cat is running",
        ),
        ("!emr status ;rm -rf /", "✗ No managed cluster called ;rm -rf / is running"),
        ("!emr status 'analytics", "✗ No managed cluster called 'analytics is running"),
        ("!emr overtime 25:00", "✗ The time must be HH:MM, 00:00–23:59."),
        ("!emr overtime", "✗ Only holders can ask for overtime"),
        ("!emr doctor now", "✗ !emr doctor takes no arguments."),
    ],
)
def test_bad_input_gets_one_line_and_changes_nothing(
    chat: Chat, emulator: Emulator, seeded: Seeded, command: str, expected: str
) -> None:
    chat.say("!emr status")  # the bot has seen the cluster
    before = stored_state(chat)
    reply = chat.say(command, user="bob")
    assert reply.startswith(expected), reply
    assert "\n" not in reply
    assert "Traceback" not in reply
    assert stored_state(chat) == before
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    assert emulator.count("TerminateJobFlows") == 0


@pytest.mark.parametrize(
    "reason",
    ["解析中です 🚀 ログ調査", "$(rm -rf /) `id` && echo pwned; DROP TABLE holds;", "*bold* _it_ <@U123> <!channel>"],
)
def test_reasons_are_stored_as_given_and_never_interpreted(chat: Chat, reason: str) -> None:
    reply = chat.say(f"!emr lock {reason}")
    assert reply.startswith("🔒 alice holds analytics")
    holds = next(iter(stored_state(chat)["clusters"].values()))["holds"]
    assert holds[0]["reason"] == reason
    assert "`" + reason.replace("`", "'") + "`" in chat.sent[-1][1]


def test_lock_with_no_cluster_running_stores_nothing(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id])
    reply = chat.say("!emr lock")
    assert reply.startswith("✗ No managed EMR cluster is running in account")
    assert (stored_state(chat) or {}).get("clusters", {}) == {}


def test_help_shows_the_command_docstrings(chat: Chat) -> None:
    reply = chat.say("!help EMR")
    for word in ("status", "start", "lock", "unlock", "terminate", "overtime", "history", "doctor"):
        assert f"emr {word}" in reply
