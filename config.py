"""Errbot bot config for emr-chatops, built from environment variables.

A systemd ``EnvironmentFile`` (see ``deploy/emr-chatops.env.example``) is the
only thing an operator edits. The backend is the Text console unless both
``SLACK_BOT_TOKEN`` and ``SLACK_APP_TOKEN`` are set, then Slack (SlackV3, Socket
Mode). The plugin's settings come from ``EMR_<KEY>`` variables and are
validated by the plugin when it activates (a bad value stops activation with
a message naming the key).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_env = os.environ.get


def _route_slack_sdk_to(url: str) -> None:
    """Tests only: send slack_sdk Web API calls made with the default base URL to *url* (a local fake).

    The SlackV3 backend offers no setting for slack_sdk's base URL, and errbot
    reads this file before it loads the backend, so this is where the seam goes.
    """
    from slack_sdk.web.base_client import BaseClient

    url = url if url.endswith("/") else url + "/"
    original_init = BaseClient.__init__

    def __init__(self: BaseClient, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.base_url == BaseClient.BASE_URL:
            self.base_url = url

    BaseClient.__init__ = __init__  # type: ignore[method-assign]


if _env("EMR_CHATOPS_SLACK_API_URL"):
    _route_slack_sdk_to(os.environ["EMR_CHATOPS_SLACK_API_URL"])


def _list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    return items or default


# -- chat backend -------------------------------------------------------------------------
SLACK = bool(_env("SLACK_BOT_TOKEN") and _env("SLACK_APP_TOKEN"))
if SLACK:
    BACKEND = "SlackV3"  # found through the package's errbot.backend_plugins entry point
    BOT_IDENTITY = {"token": _env("SLACK_BOT_TOKEN"), "app_token": _env("SLACK_APP_TOKEN")}
    BOT_ADMINS = _list(_env("BOT_ADMINS"), ())  # Slack user ids, e.g. U012ABCDEF
    # SlackV3 cannot build an identifier from a bare user id: admins are notified by mention.
    BOT_ADMINS_NOTIFICATIONS = tuple(f"<@{admin}>" for admin in BOT_ADMINS)
    CHATROOM_PRESENCE: tuple[str, ...] = ()
else:
    BACKEND = "Text"
    BOT_IDENTITY: dict[str, str | None] = {}  # type: ignore[no-redef]
    BOT_ADMINS = _list(_env("BOT_ADMINS"), ("@admin",))
    CHATROOM_PRESENCE = ()
    TEXT_DEMO_MODE = True

BOT_PREFIX = "!"
AUTOINSTALL_DEPS = False  # never pip-install at start-up: requirements.txt is pinned (and /opt is read-only)
BOT_DATA_DIR = _env("EMR_CHATOPS_DATA_DIR", str(ROOT / "data"))
BOT_EXTRA_PLUGIN_DIR = str(ROOT / "plugins")
BOT_LOG_FILE = _env("EMR_CHATOPS_LOG_FILE", str(Path(BOT_DATA_DIR) / "errbot.log"))
BOT_LOG_LEVEL = getattr(logging, _env("EMR_CHATOPS_LOG_LEVEL", "INFO").upper(), logging.INFO)
Path(BOT_DATA_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)

# Durable storage: see storage/sqlite.py (Shelf falls back to dbm.dumb here, which loses updates on a crash).
# EMR_CHATOPS_STORAGE=dynamodb: one DynamoDB table shared by two or more instances (storage/dynamodb.py, DESIGN §18).
# The name is matched without regard to case; any other name is passed to errbot as is (its own Shelf, Memory …).
_STORAGES = {"sqlite": "SQLite", "dynamodb": "DynamoDB"}
_storage = _env("EMR_CHATOPS_STORAGE", "SQLite")
STORAGE = _STORAGES.get(_storage.strip().lower(), _storage)
BOT_EXTRA_STORAGE_PLUGINS_DIR = str(ROOT / "storage")


def _flag(name: str, default: bool) -> bool:
    value = (_env(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value in ("1", "true", "yes", "on")
    raise ValueError(f"{name} must be true or false, not {value!r}")


if STORAGE == "DynamoDB":
    STORAGE_CONFIG = {
        "table": _env("EMR_CHATOPS_DYNAMODB_TABLE") or "emr-chatops",
        "region": _env("EMR_CHATOPS_DYNAMODB_REGION") or None,  # None: boto3's (AWS_REGION, AWS_DEFAULT_REGION …)
        "endpoint_url": _env("EMR_CHATOPS_DYNAMODB_ENDPOINT_URL") or None,  # a local emulator; never in production
        # Create a missing table (demo, tests). Off: a missing table stops the bot at start, naming
        # deploy/cloudformation/dynamodb.yaml, where the table has point-in-time recovery and its KMS key.
        "create": _flag("EMR_CHATOPS_DYNAMODB_CREATE", False),
    }

CORE_PLUGINS = ("ACLs", "Help", "Health", "Plugins", "Utils", "CommandNotFoundFilter", "TextCmds")
SUPPRESS_CMD_NOT_FOUND = False
HIDE_RESTRICTED_COMMANDS = True
HIDE_RESTRICTED_ACCESS = False
DIVERT_TO_PRIVATE = ()
DIVERT_TO_THREAD = ()

# Who may run what. Errbot's ACLs work per command, not per argument: "allowargs"/"denyargs"
# would apply to every user alike, so "only admins may `!emr terminate --force` a cluster held
# by others" and "only admins may `!emr unlock --user NAME`" cannot be said here. The plugin
# checks those two itself, against BOT_ADMINS.
ACCESS_CONTROLS_DEFAULT: dict[str, object] = {}
ACCESS_CONTROLS = {
    "Plugins:*": {"allowusers": BOT_ADMINS},
    "Utils:*": {"allowusers": BOT_ADMINS},
    "Health:*": {"allowusers": BOT_ADMINS},
    "ACLs:*": {"allowusers": BOT_ADMINS},
    "Help:*": {},
    "TextCmds:*": {"allowusers": BOT_ADMINS},
}
# Optional, off: restrict the EMR plugin further. Errbot applies the FIRST pattern that
# matches a command ("EMR:emr_doctor" is the command `!emr doctor`), so the specific
# commands come before "EMR:*". On Slack, users are matched by user id (U…) and channels by
# channel id (C…, from the channel's "About" tab), never by @name or #name. Direct messages
# stay allowed unless a rule says "allowprivate": False. tests/test_acl.py runs this block.
# EMR_USERS = ("U0AAAAAAAAA", "U0BBBBBBBBB")  # the data team
# EMR_ROOMS = ("C0CCCCCCCCC",)  # their channel, e.g. #data
# ACCESS_CONTROLS.update(
#     {
#         "EMR:emr_doctor": {"allowusers": BOT_ADMINS},  # account ids, ARNs, setup details
#         "EMR:*": {"allowusers": EMR_USERS + BOT_ADMINS, "allowrooms": EMR_ROOMS},
#     }
# )

# -- the EMR plugin -----------------------------------------------------------------------
# Every EMR_<KEY> variable fills the plugin's EMR dict (EMR_CHATOPS_* are the bot's own, above). The plugin
# validates the dict and refuses an unknown key by name: a misspelt EMR_IDEL_MINUTES stops activation instead
# of being ignored, and the list of keys lives in one place (emr_settings.KEYS).
EMR = {
    name.removeprefix("EMR_"): value
    for name, value in os.environ.items()
    if name.startswith("EMR_") and not name.startswith("EMR_CHATOPS_")
}
