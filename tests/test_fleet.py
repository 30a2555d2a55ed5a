"""One bot for several AWS accounts and regions (DESIGN §17), end to end on the emulator.

Three moto accounts: A (the bot's own identity), B (target ``game-a``: ``analytics`` managed and
``etl-nightly`` unmanaged, in ap-northeast-1) and C (target ``game-b``: an ``analytics`` in
ap-northeast-1 and another in us-west-2). Each target has its own channel and admins; the
poller lists the three (target, region)s at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Chat, Clock, emr_config
from demo.emulator import ACCOUNT_B, ACCOUNT_C, EXTERNAL_ID, Emulator, Seeded
from deploy.account_a_policy import policy_for
from emrchatops.domain.targets import load_targets

REGION = "ap-northeast-1"
WEST = "us-west-2"
TEMPLATES = Path(__file__).resolve().parent.parent / "deploy" / "templates"


def targets_toml(tmp_path: Path) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(
        f"""
[defaults]
role = "cre"
external_id = "{EXTERNAL_ID}"
regions = ["{REGION}"]
cluster_tag = "emr-chatops=true"

[[targets]]
name = "game-a"
account = "{ACCOUNT_B}"
notify = "#game-a"
admins = ["alice"]
templates_dir = "{TEMPLATES}"

[[targets]]
name = "game-b"
account = "{ACCOUNT_C}"
regions = ["{REGION}", "{WEST}"]
notify = "#game-b"
admins = ["bob"]
"""
    )
    return path


def fleet_config(emulator: Emulator, path: Path, **overrides: Any) -> dict[str, Any]:
    config = emr_config(emulator, TARGETS_FILE=str(path), **overrides)
    for key in ("ROLE_ARN", "EXTERNAL_ID", "REGION", "CLUSTER_TAG", "NOTIFY_CHANNEL"):
        config.pop(key)
    return config


class Fleet:
    """The seeded clusters: ``a`` (game-a), ``b_east`` and ``b_west`` (game-b), all called analytics."""

    def __init__(self, emulator: Emulator, seeded: Seeded) -> None:
        emulator.seed_account(ACCOUNT_C, (REGION, WEST))
        self.a = seeded.managed_id
        self.etl = seeded.unmanaged_id
        self.b_east = emulator.run_cluster("analytics", account=ACCOUNT_C, region=REGION)
        self.b_west = emulator.run_cluster("analytics", account=ACCOUNT_C, region=WEST)


@pytest.fixture
def fleet(emulator: Emulator, seeded: Seeded) -> Fleet:
    return Fleet(emulator, seeded)


@pytest.fixture
def bot(tmp_path: Path, emulator: Emulator, fleet: Fleet, clock: Clock) -> Iterator[Chat]:
    chat = Chat(tmp_path / "data", fleet_config(emulator, targets_toml(tmp_path)), clock).start()
    try:
        yield chat
    finally:
        chat.stop()


def holds(bot: Chat) -> dict[str, list[str]]:
    state = bot.plugin.service.state()
    return {cid: [h.name for h in r.holds] for cid, r in state.clusters.items()}


def posted(bot: Chat, channel: str) -> list[str]:
    return [body for to, body in bot.sent if to == channel]


def test_each_region_lists_only_its_own_clusters_on_the_emulator(emulator: Emulator, fleet: Fleet) -> None:
    """The emulator keeps EMR regional (as AWS does): the ground the other tests stand on."""

    def listed(account: str, region: str) -> set[str]:
        return {c["Id"] for c in emulator.emr_in(account, region).list_clusters()["Clusters"]}

    assert listed(ACCOUNT_C, REGION) == {fleet.b_east}
    assert listed(ACCOUNT_C, WEST) == {fleet.b_west}
    assert listed(ACCOUNT_B, REGION) == {fleet.a, fleet.etl}


def test_status_is_grouped_by_target_and_region_with_the_account(bot: Chat, fleet: Fleet) -> None:
    reply = bot.say("!emr status")
    lines = reply.splitlines()
    headings = [line for line in lines if " — account " in line]
    assert headings == [
        f"game-a — account {ACCOUNT_B}, {REGION}",
        f"game-b — account {ACCOUNT_C}, {REGION}",
        f"game-b — account {ACCOUNT_C}, {WEST}",
    ]
    for heading, cluster in zip(headings, (fleet.a, fleet.b_east, fleet.b_west), strict=True):
        below = lines[lines.index(heading) + 1]
        assert below.startswith(f"analytics ({cluster})"), (heading, below)
    assert "etl-nightly" not in reply
    one = bot.say("!emr status game-b")
    assert fleet.a not in one and fleet.b_east in one and fleet.b_west in one


def test_an_ambiguous_name_is_refused_with_every_qualified_name_and_changes_nothing(bot: Chat, fleet: Fleet) -> None:
    reply = bot.say("!emr lock analytics", user="carol")
    assert reply == (
        "✗ Several managed clusters are called analytics: name one of game-a/analytics, "
        f"game-b/{REGION}/analytics, game-b/{WEST}/analytics."
    ), reply
    assert all(not names for names in holds(bot).values())


def test_a_qualified_lock_holds_that_cluster_only(bot: Chat, fleet: Fleet) -> None:
    reply = bot.say(f"!emr lock game-b/{WEST}/analytics spark on the west logs", user="carol")
    assert "🔒" in reply or "hold" in reply.lower(), reply
    assert holds(bot)[fleet.b_west] == ["carol"]
    assert holds(bot)[fleet.b_east] == [] and holds(bot)[fleet.a] == []
    bot.say("!emr lock game-a/analytics", user="dave")
    assert holds(bot)[fleet.a] == ["dave"] and holds(bot)[fleet.b_east] == []
    # A name unique across every target needs no qualification; a cluster of another target is never taken.
    assert "No target" in bot.say("!emr status game-c/analytics") or "No managed" in bot.say(
        "!emr status game-c/analytics"
    )


def test_the_rules_run_per_target_and_each_notice_goes_to_its_target_s_channel(
    bot: Chat, fleet: Fleet, clock: Clock, emulator: Emulator
) -> None:
    bot.say(f"!emr lock game-b/{WEST}/analytics", user="carol")
    bot.tick()
    clock.advance(minutes=25)
    bot.tick()
    warnings_a = [t for t in posted(bot, "#game-a") if "terminated at" in t]
    warnings_b = [t for t in posted(bot, "#game-b") if "terminated at" in t]
    assert len(warnings_a) == 1 and fleet.a in warnings_a[0]
    assert len(warnings_b) == 1 and fleet.b_east in warnings_b[0], "the held west cluster gets no warning"
    assert not any(fleet.a in t for t in posted(bot, "#game-b")) and not any(
        fleet.b_east in t for t in posted(bot, "#game-a")
    )
    clock.advance(minutes=6)
    bot.tick()
    emulator.wait_until(fleet.a, "TERMINATED")
    emulator.wait_until(fleet.b_east, "TERMINATED")
    assert emulator.cluster_state(fleet.b_west) == "WAITING"
    assert emulator.cluster_state(fleet.etl) == "WAITING"
    assert any(fleet.b_east in t for t in posted(bot, "#game-b") if "terminat" in t.lower())


def test_a_target_s_admin_may_force_there_only(bot: Chat, fleet: Fleet) -> None:
    bot.say("!emr lock game-a/analytics", user="carol")
    bot.say(f"!emr lock game-b/{REGION}/analytics", user="carol")
    refused = bot.say(f"!emr unlock game-b/{REGION}/analytics --user carol", user="alice")
    assert refused == "✗ Only admins can release someone else's hold.", "alice is game-a's admin, not game-b's"
    assert "carol" in bot.say("!emr unlock game-a/analytics --user carol", user="alice")
    assert holds(bot)[fleet.a] == [] and holds(bot)[fleet.b_east] == ["carol"]
    assert "carol" in bot.say(f"!emr unlock game-b/{REGION}/analytics --user carol", user="bob")


def allow(emulator: Emulator, policy: dict[str, Any]) -> None:
    """Replace the bot user's AssumeRole policy (as an operator would, from outside the bot)."""
    emulator.set_iam_enforcement(False)
    emulator.client("iam").put_user_policy(
        UserName="emr-chatops-bot", PolicyName="assume-cre", PolicyDocument=json.dumps(policy)
    )
    emulator.set_iam_enforcement(True)


def test_a_target_that_cannot_be_reached_is_announced_once_in_its_channel_and_its_clusters_kept(
    tmp_path: Path, emulator: Emulator, fleet: Fleet, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Account A's identity may assume both targets' roles (the policy `make account-a-policy` writes), IAM on.
    path = targets_toml(tmp_path)
    both = policy_for(load_targets(path))
    keys = emulator.create_bot_user(both)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    emulator.set_iam_enforcement(True)
    bot = Chat(tmp_path / "data", fleet_config(emulator, path), clock).start()
    try:
        bot.say(f"!emr lock game-b/{WEST}/analytics", user="carol")
        bot.tick()
        # Then account A may assume game-a's role only: game-b's token expires, and AssumeRole is denied.
        only_a = policy_for([t for t in load_targets(path) if t.name == "game-a"])
        allow(emulator, only_a)
        bot.plugin.sessions[(f"arn:aws:iam::{ACCOUNT_C}:role/cre", EXTERNAL_ID)].invalidate()
        for _ in range(3):
            clock.advance(minutes=1)
            bot.tick()
        down = [t for t in posted(bot, "#game-b") if "cannot list the clusters of game-b" in t]
        assert len(down) == 1, posted(bot, "#game-b")
        assert f"account {ACCOUNT_C}" in down[0] and REGION in down[0] and WEST in down[0]
        assert "sts:AssumeRole" in down[0]
        assert not any("game-b" in t for t in posted(bot, "#game-a"))
        state = bot.plugin.service.state()
        assert [h.name for h in state.clusters[fleet.b_west].holds] == ["carol"], "kept as it was"
        assert state.clusters[fleet.b_east].listed, "its absence from the listing proves nothing"
        # game-a's rules still run on time: idle for 30 minutes, warned, terminated.
        clock.advance(minutes=27)
        bot.tick()
        clock.advance(minutes=6)
        bot.tick()
        emulator.wait_until(fleet.a, "TERMINATED")
        assert emulator.cluster_state(fleet.b_east) == "WAITING", "nothing is decided on what could not be read"
        # Allowed again: the recovery is announced once, and game-b is watched again.
        allow(emulator, both)
        bot.tick()
        bot.tick()
        back = [t for t in posted(bot, "#game-b") if "lists the clusters of game-b" in t]
        assert len(back) == 1, posted(bot, "#game-b")
    finally:
        bot.stop()
        emulator.set_iam_enforcement(False)


def test_each_role_has_its_own_token_in_storage(bot: Chat, fleet: Fleet) -> None:
    bot.say("!emr status")
    keys = [k for k in bot.plugin if k.startswith("sts")]
    assert sorted(keys) == sorted(["sts", next(k for k in keys if k != "sts")])
    other = next(k for k in keys if k != "sts")
    assert ACCOUNT_C in other and EXTERNAL_ID not in other, other
    assert bot.plugin["sts"]["role_arn"].split(":")[4] == ACCOUNT_B
    assert bot.plugin[other]["role_arn"].split(":")[4] == ACCOUNT_C


def test_the_report_is_per_target_when_asked_and_a_wrong_target_is_one_line(
    bot: Chat, fleet: Fleet, clock: Clock
) -> None:
    bot.tick()
    clock.advance(minutes=10)
    bot.tick()
    every = bot.say("!emr report 1")
    assert every.startswith("Usage of the managed clusters, last 1 day") and ", 3 clusters" in every.splitlines()[0]
    one = bot.say("!emr report 1 game-b")
    assert one.startswith("Usage of the managed clusters of game-b, last 1 day") and ", 2 clusters" in one
    assert bot.say("!emr report game-a").startswith("Usage of the managed clusters of game-a, last 7 days")
    assert bot.say("!emr report 1 game-z") == "✗ No target is called game-z (targets: game-a, game-b)."
    assert bot.say("!emr report 0 game-a").startswith("✗ !emr report takes one number of days")


def test_start_names_the_template_and_the_cluster_starts_in_its_target(
    bot: Chat, fleet: Fleet, emulator: Emulator
) -> None:
    refused = bot.say("!emr start analytics", user="carol")
    assert "is already WAITING" in refused, "game-a has its analytics running: counted in game-a only"
    bot.say("!emr terminate game-a/analytics", user="carol")
    emulator.wait_until(fleet.a, "TERMINATED")
    bot.tick()
    reply = bot.say("!emr start analytics trying targets", user="carol")
    assert "Starting analytics" in reply, reply
    started = emulator.started[-1]
    record = bot.plugin.service.state().clusters[started]
    assert (record.target, record.region) == ("game-a", REGION)
    assert [h.name for h in record.holds] == ["carol"]
    assert started in {c["Id"] for c in emulator.emr_in(ACCOUNT_B, REGION).list_clusters()["Clusters"]}
    assert bot.say("!emr start game-b/analytics").startswith("✗"), "game-b has no templates"
