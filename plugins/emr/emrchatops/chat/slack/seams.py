"""Where the plugin reaches into Errbot's or the SlackV3 backend's private parts: here only, once each.

Each seam is checked by ``tests/test_seams.py`` against the pinned errbot and
errbot-backend-slackv3: an upgrade that renames or reshapes one fails that test,
not a click in production.
"""

from __future__ import annotations

import sys
from typing import Any

from errbot.backends.base import Message


def backend_of(plugin: Any) -> Any:
    """The backend a plugin runs on: ``BotPlugin._bot`` (Errbot offers no public accessor)."""
    return plugin._bot


def command_allowed(backend: Any, msg: Message, command: str, args: str) -> bool:
    """Whether ACCESS_CONTROLS let *msg*'s sender run *command* (``emr_lock``…), without running it.

    Errbot's own check (``ErrBot._process_command_filters``, with ``dry_run``): a button obeys
    exactly the rules the typed command obeys.
    """
    allowed, _, _ = backend._process_command_filters(msg, command, args, dry_run=True)
    return allowed is not None


def message_from(backend: Any, user: str, channel: str, body: str) -> Message:
    """A message from *user* in *channel*, built with the SlackV3 backend's own identifier classes.

    The backend builds these only from an incoming event; its module is found from the
    backend's class (``slackv3.slackv3`` loaded by Errbot's plugin manager, not importable by name).
    """
    module = sys.modules[type(backend).__module__]
    web = backend.slack_web
    if channel.startswith("D"):
        return Message(body, frm=module.SlackPerson(web, user, channel), to=backend.bot_identifier)
    room = module.SlackRoom(webclient=web, channelid=channel, bot=backend)
    return Message(body, frm=module.SlackRoomOccupant(web, user, channel, bot=backend), to=room)


__all__ = ["backend_of", "command_allowed", "message_from"]
