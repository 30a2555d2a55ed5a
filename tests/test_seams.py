"""The private parts of Errbot and the SlackV3 backend the plugin uses, as the pinned versions have them.

All of them are reached through ``emrchatops/chat/slack/seams.py`` only; an upgrade of errbot or
errbot-backend-slackv3 that changes one fails here, by name, before a click fails in production.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from errbot.botplugin import BotPluginBase
from errbot.core import ErrBot

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "emr"
PRIVATE = re.compile(r"\._(bot|process_command_filters|store)\b")


def test_a_plugin_keeps_its_backend_in_bot() -> None:
    assert "self._bot = bot" in inspect.getsource(BotPluginBase.__init__)


def test_errbot_checks_access_controls_without_running_the_command() -> None:
    parameters = inspect.signature(ErrBot._process_command_filters).parameters
    assert list(parameters)[:4] == ["self", "msg", "cmd", "args"] and "dry_run" in parameters
    assert "return None, None, None" in inspect.getsource(ErrBot._process_command_filters)  # a refusal's shape


def test_the_slackv3_backend_module_has_the_identifier_classes_we_build() -> None:
    module = importlib.import_module("slackv3.slackv3")
    assert list(inspect.signature(module.SlackPerson).parameters) == ["webclient", "userid", "channelid"]
    assert list(inspect.signature(module.SlackRoom).parameters) == ["webclient", "name", "channelid", "bot"]
    assert list(inspect.signature(module.SlackRoomOccupant).parameters) == ["webclient", "userid", "channelid", "bot"]


def test_a_plugin_keeps_its_storage_in_store() -> None:
    from errbot.storage import StoreMixin

    assert "self._store = storage_plugin.open(namespace)" in inspect.getsource(StoreMixin.open_storage)


def test_no_private_part_is_reached_outside_the_seams_modules() -> None:
    seams = {PLUGIN / "emrchatops" / "chat" / "slack" / "seams.py", PLUGIN / "emrchatops" / "store" / "seams.py"}
    for path in [PLUGIN / "emr.py", *PLUGIN.joinpath("emrchatops").rglob("*.py")]:
        if path not in seams:
            assert not PRIVATE.search(path.read_text()), f"{path.name} reaches a private part of errbot"
