"""A TARGETS_FILE of one target in the running bot (DESIGN §17): served as the part-one keys were
(several targets and regions: tests/test_fleet.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import NOTIFY, Chat, Clock, emr_config
from demo.emulator import ACCOUNT_B, EXTERNAL_ID, Emulator, Seeded


def targets_file(tmp_path: Path, *, regions: str = '["ap-northeast-1"]', more: str = "") -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(
        f"""
[defaults]
role = "cre"
external_id = "{EXTERNAL_ID}"
regions = {regions}

[[targets]]
name = "game-a"
account = "{ACCOUNT_B}"
notify = "{NOTIFY}"
admins = ["bob"]
{more}
"""
    )
    return path


def file_config(emulator: Emulator, path: Path) -> dict[str, object]:
    config = emr_config(emulator, TARGETS_FILE=str(path))
    for key in ("ROLE_ARN", "EXTERNAL_ID", "REGION", "CLUSTER_TAG", "NOTIFY_CHANNEL"):
        config.pop(key)
    return config


def test_a_targets_file_of_one_target_is_served_like_the_part_one_keys_and_its_admins_may_release_holds(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", file_config(emulator, targets_file(tmp_path)), clock).start()
    try:
        assert "analytics" in bot.say("!emr status")
        bot.say("!emr lock analytics", user="carol")
        assert bot.say("!emr unlock --user carol", user="dave") == "✗ Only admins can release someone else's hold."
        assert "carol" in bot.say("!emr unlock --user carol", user="bob"), "bob is the target's admin"
        assert bot.plugin.service.state().clusters[seeded.managed_id].holds == ()
    finally:
        bot.stop()
