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


def _list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    return items or default


# -- chat backend -------------------------------------------------------------------------
SLACK = bool(_env("SLACK_BOT_TOKEN") and _env("SLACK_APP_TOKEN"))
if SLACK:
    import slackv3  # the SlackV3 backend package: fail early when it is missing

    BACKEND = "SlackV3"
    BOT_EXTRA_BACKEND_DIR = str(Path(slackv3.__file__).resolve().parent.parent)
    BOT_IDENTITY = {"token": _env("SLACK_BOT_TOKEN"), "app_token": _env("SLACK_APP_TOKEN")}
    BOT_ADMINS = _list(_env("BOT_ADMINS"), ())
    CHATROOM_PRESENCE: tuple[str, ...] = ()
else:
    BACKEND = "Text"
    BOT_IDENTITY: dict[str, str | None] = {}  # type: ignore[no-redef]
    BOT_ADMINS = _list(_env("BOT_ADMINS"), ("@admin",))
    CHATROOM_PRESENCE = ()
    TEXT_DEMO_MODE = True

BOT_PREFIX = "!"
BOT_DATA_DIR = _env("EMR_CHATOPS_DATA_DIR", str(ROOT / "data"))
BOT_EXTRA_PLUGIN_DIR = str(ROOT / "plugins")
BOT_LOG_FILE = _env("EMR_CHATOPS_LOG_FILE", str(Path(BOT_DATA_DIR) / "errbot.log"))
BOT_LOG_LEVEL = getattr(logging, _env("EMR_CHATOPS_LOG_LEVEL", "INFO").upper(), logging.INFO)
Path(BOT_DATA_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)

# Durable storage: see storage/sqlite.py (Shelf falls back to dbm.dumb here, which loses updates on a crash).
STORAGE = _env("EMR_CHATOPS_STORAGE", "SQLite")
BOT_EXTRA_STORAGE_PLUGINS_DIR = str(ROOT / "storage")

CORE_PLUGINS = ("ACLs", "Help", "Health", "Plugins", "Utils", "CommandNotFoundFilter", "TextCmds")
SUPPRESS_CMD_NOT_FOUND = False
HIDE_RESTRICTED_COMMANDS = True
HIDE_RESTRICTED_ACCESS = False
DIVERT_TO_PRIVATE = ()
DIVERT_TO_THREAD = ()

# Who may run what. `!emr terminate --force` on a cluster held by others and
# `!emr unlock --user NAME` are also checked by the plugin itself (admins only).
ACCESS_CONTROLS_DEFAULT: dict[str, object] = {}
ACCESS_CONTROLS = {
    "Plugins:*": {"allowusers": BOT_ADMINS},
    "Utils:*": {"allowusers": BOT_ADMINS},
    "Health:*": {"allowusers": BOT_ADMINS},
    "ACLs:*": {"allowusers": BOT_ADMINS},
    "Help:*": {},
    "TextCmds:*": {"allowusers": BOT_ADMINS},
}

# -- the EMR plugin -----------------------------------------------------------------------
EMR_KEYS = (
    "ROLE_ARN",
    "EXTERNAL_ID",
    "REGION",
    "ENDPOINT_URL",
    "CLUSTER_TAG",
    "IDLE_MINUTES",
    "END_OF_DAY",
    "TIMEZONE",
    "WARN_MINUTES",
    "NOTIFY_CHANNEL",
    "POLL_SECONDS",
    "SESSION_SECONDS",
)
EMR = {key: os.environ[f"EMR_{key}"] for key in EMR_KEYS if f"EMR_{key}" in os.environ}
