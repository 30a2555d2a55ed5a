"""Configuration: env variables → the EMR dict → validated settings; bad values stop activation."""

from __future__ import annotations

import importlib
import sys
from datetime import time
from pathlib import Path

import pytest

from conftest import ROOT, Chat, Clock, emr_config
from demo.emulator import Emulator
from emrchatops.domain.errors import ConfigError
from emrchatops.domain.settings import KEYS, Settings, from_mapping

ARN = "arn:aws:iam::210987654321:role/cre"


def test_defaults_follow_the_design() -> None:
    settings = from_mapping({"ROLE_ARN": ARN})
    assert settings == Settings(role_arn=ARN)
    assert settings.account_id == "210987654321"
    assert settings.idle_minutes == 30 and settings.warn_minutes == 5
    assert settings.end_of_day == time(19, 0) and str(settings.timezone) == "Asia/Tokyo"
    assert str(settings.cluster_tag) == "emr-chatops=true"


def test_strings_from_the_environment_are_parsed() -> None:
    settings = from_mapping(
        {
            "ROLE_ARN": ARN,
            "IDLE_MINUTES": "45",
            "POLL_SECONDS": "0.5",
            "END_OF_DAY": "off",
            "CLUSTER_TAG": "team",
            "EXTERNAL_ID": "none",
            "NOTIFY_CHANNEL": "#emr-alerts",
        }
    )
    assert settings.idle_minutes == 45 and settings.poll_seconds == 0.5
    assert settings.end_of_day is None and settings.external_id is None
    assert settings.cluster_tag.matches({"team": "anything"}) and not settings.cluster_tag.matches({"other": "x"})
    assert from_mapping({"ROLE_ARN": ARN, "CLUSTER_TAG": "*"}).cluster_tag.matches({})


def test_prices_come_from_the_table_or_from_aws_s_price_list_at_one_of_its_endpoints() -> None:
    assert from_mapping({"ROLE_ARN": ARN}).prices_api is None  # the shipped table (or PRICES_FILE)
    for file in ("file", "off", "", None):
        assert from_mapping({"ROLE_ARN": ARN, "PRICES": file}).prices_api is None
    assert from_mapping({"ROLE_ARN": ARN, "PRICES": "api"}).prices_api == "us-east-1"
    assert from_mapping({"ROLE_ARN": ARN, "PRICES": " API:eu-central-1 "}).prices_api == "eu-central-1"
    assert from_mapping({"ROLE_ARN": ARN, "PRICES": "api:ap-south-1"}).prices_api == "ap-south-1"
    with pytest.raises(ConfigError) as caught:
        from_mapping({"ROLE_ARN": ARN, "PRICES": "api:us-west-2"})
    assert str(caught.value) == (
        "EMR config PRICES: 'api:us-west-2' is not file, api, or api:ENDPOINT with ENDPOINT one of us-east-1, "
        "eu-central-1, ap-south-1 (where AWS's Price List answers)"
    )


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "ROLE_ARN"),
        ({"ROLE_ARN": "arn:aws:iam::12345:role/cre"}, "ROLE_ARN"),
        ({"ROLE_ARN": "cre"}, "ROLE_ARN"),
        ({"ROLE_ARN": ARN, "TIMEZONE": "Mars/Olympus"}, "TIMEZONE"),
        ({"ROLE_ARN": ARN, "END_OF_DAY": "25:00"}, "END_OF_DAY"),
        ({"ROLE_ARN": ARN, "END_OF_DAY": "7pm"}, "END_OF_DAY"),
        ({"ROLE_ARN": ARN, "IDLE_MINUTES": "-5"}, "IDLE_MINUTES"),
        ({"ROLE_ARN": ARN, "IDLE_MINUTES": "ten"}, "IDLE_MINUTES"),
        ({"ROLE_ARN": ARN, "IDLE_MINUTES": 2.5}, "IDLE_MINUTES"),
        ({"ROLE_ARN": ARN, "WARN_MINUTES": "-1"}, "WARN_MINUTES"),
        ({"ROLE_ARN": ARN, "WARN_MINUTES": "30"}, "WARN_MINUTES"),
        ({"ROLE_ARN": ARN, "POLL_SECONDS": "0"}, "POLL_SECONDS"),
        ({"ROLE_ARN": ARN, "SESSION_SECONDS": "900"}, "SESSION_SECONDS"),
        ({"ROLE_ARN": ARN, "REGION": "tokyo"}, "REGION"),
        ({"ROLE_ARN": ARN, "ENDPOINT_URL": "ftp://x"}, "ENDPOINT_URL"),
        ({"ROLE_ARN": ARN, "CLUSTER_TAG": "=x"}, "CLUSTER_TAG"),
        ({"ROLE_ARN": ARN, "IDLE_MINUTE": "30"}, "IDLE_MINUTE"),
        ({"ROLE_ARN": ARN, "PRICES": "aws"}, "PRICES"),
        ({"ROLE_ARN": ARN, "PRICES": "api:us-west-2"}, "PRICES"),
        ({"ROLE_ARN": ARN, "PRICES": True}, "PRICES"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"EMR config {key}:")


def test_config_py_builds_the_emr_dict_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMR_ROLE_ARN", ARN)
    monkeypatch.setenv("EMR_IDLE_MINUTES", "20")
    monkeypatch.setenv("EMR_CHATOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("config", None)
    config = importlib.import_module("config")
    try:
        assert config.EMR == {"ROLE_ARN": ARN, "IDLE_MINUTES": "20"}  # EMR_CHATOPS_* are the bot's own
        assert config.BACKEND == "Text"
        assert from_mapping(config.EMR).idle_minutes == 20
    finally:
        sys.modules.pop("config", None)


def test_a_misspelt_environment_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMR_ROLE_ARN", ARN)
    monkeypatch.setenv("EMR_IDEL_MINUTES", "20")
    monkeypatch.setenv("EMR_CHATOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("config", None)
    config = importlib.import_module("config")
    try:
        with pytest.raises(ConfigError, match="EMR config IDEL_MINUTES: unknown key"):
            from_mapping(config.EMR)
        assert set(KEYS) >= {"ROLE_ARN", "IDLE_MINUTES"}  # the one list of keys: emr_settings.KEYS
    finally:
        sys.modules.pop("config", None)


def test_the_plugin_does_not_activate_on_a_bad_value(
    tmp_path: Path, emulator: object, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator, END_OF_DAY="25:00"), clock)  # type: ignore[arg-type]
    from errbot.backends.test import TestBot

    bot.testbot = TestBot(
        extra_plugin_dir=str(ROOT / "plugins"),
        extra_config={"BOT_DATA_DIR": str(tmp_path), "BOT_ADMINS": ("admin",), "EMR": bot.emr},
    )
    bot.testbot.start(timeout=10)
    try:
        assert not bot.plugin.is_activated
        bot.testbot.push_message("!emr status")
        reply = bot.testbot.pop_message(timeout=10)
        assert "not found" in reply.lower()
        assert "EMR config END_OF_DAY: '25:00' is not a time of day" in caplog.text
    finally:
        bot.stop()


def test_a_malformed_role_arn_is_rejected_before_any_aws_call(tmp_path: Path, emulator: Emulator, clock: Clock) -> None:
    from errbot.backends.test import TestBot

    emulator.reset_counts()
    testbot = TestBot(
        extra_plugin_dir=str(ROOT / "plugins"),
        extra_config={
            "BOT_DATA_DIR": str(tmp_path),
            "BOT_ADMINS": ("admin",),
            "EMR": emr_config(emulator, ROLE_ARN="arn:aws:iam::21098765432:role/cre"),
        },
    )
    testbot.start(timeout=10)
    try:
        assert not testbot.bot.plugin_manager.get_plugin_obj_by_name("EMR").is_activated
    finally:
        testbot.stop()
    assert sum(emulator.requests.values()) == 0


def test_storage_files_are_private(chat: Chat) -> None:
    chat.say("!emr lock")
    files = list(chat.data_dir.glob("*.sqlite3*"))
    assert files, "no SQLite storage file"
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path
