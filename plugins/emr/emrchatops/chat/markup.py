"""How one chat marks text up: mentions and escaping, chosen once per backend.

:class:`~emrchatops.chat.words.View` words every sentence the same way for every
chat and asks its :class:`Markup` only how a person is mentioned and how text
from users or from AWS is escaped. :class:`PlainMarkup` serves the Text console and
Errbot's test backend; ``chat/slack/markup.py`` serves Slack. Another chat
(Mattermost, Teams) is another markup in its own folder under ``chat/``.
"""

from __future__ import annotations

from typing import Protocol


class Markup(Protocol):
    """What a chat does to text: the only questions the wording asks about the chat it is on."""

    #: A mention notifies the person (so reminders and warnings mention holders, and status names them).
    pings: bool

    def mention(self, user: str, name: str) -> str:
        """A person the message is about (*user* the chat's id, *name* what people call them)."""
        ...

    def escape(self, text: str) -> str:
        """Text the chat must show as it is (a cluster name, an AWS reason): its markup characters escaped."""
        ...

    def inert(self, text: str) -> str:
        """User-supplied text inside code quotes: escaped so that nothing in it pings or links."""
        ...

    def typed(self, text: str) -> str:
        """What the person typed, from the text the chat delivers (its markup undone, once)."""
        ...


class PlainMarkup:
    """The Text console and Errbot's test backend: no markup to escape, a mention is ``@name``."""

    pings = False

    def mention(self, user: str, name: str) -> str:
        return f"@{name}"

    def escape(self, text: str) -> str:
        return text

    def inert(self, text: str) -> str:
        return text

    def typed(self, text: str) -> str:
        return text


__all__ = ["Markup", "PlainMarkup"]
