"""Slack's markup: mentions that ping, escaping as Slack asks, and the typed text behind Slack's markup."""

from __future__ import annotations

import re
from collections.abc import Callable

#: Slack's markup tokens: ``<@U…|label>``, ``<#C…|name>``, ``<!here>``, ``<url|label>``.
SLACK_TOKEN_RE = re.compile(r"<([@#!])([^<>|]*)(?:\|([^<>]*))?>|<([^<>|]+)(?:\|([^<>]*))?>")


def typed_from_slack(text: str, name_of: Callable[[str], str | None]) -> str:
    """What the person typed, from the text Slack delivers (and the backend passes on).

    Slack sends ``&``, ``<`` and ``>`` as ``&amp;``, ``&lt;`` and ``&gt;``, and turns what it
    recognises into markup: ``@channel`` into ``<!channel>``, a mention into ``<@U…>``, a
    channel into ``<#C…|name>``, a link into ``<url|label>``. The commands read (and holds
    keep) the typed text: markup becomes its words (a mention the person's name, via
    ``name_of``; a broadcast its plain ``@word``, never a ping when shown again), and the
    escapes are undone exactly once; :meth:`SlackMarkup.inert` escapes again when it is shown.
    """

    def word(match: re.Match[str]) -> str:
        sigil, ref, label, target, link_label = match.groups()
        if sigil is None:  # a link: what the person typed is its label, or the address
            return _unescape(link_label or target)
        if sigil == "@":
            return "@" + (name_of(ref) or _unescape(label or "") or ref)
        if sigil == "#":
            return "#" + _unescape(label or ref)
        if label:  # <!subteam^S…|@team>, <!date^…|fallback>
            return _unescape(label)
        return "@" + ref.split("^", 1)[0]  # <!here>, <!channel>, <!everyone>

    out: list[str] = []
    at = 0
    for match in SLACK_TOKEN_RE.finditer(text):
        out.append(_unescape(text[at : match.start()]))
        out.append(word(match))
        at = match.end()
    out.append(_unescape(text[at:]))
    return "".join(out)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class SlackMarkup:
    """Slack: a mention is ``<@U…>`` (it pings), and ``&``, ``<``, ``>`` are escaped as Slack asks."""

    pings = True

    def __init__(self, name_of: Callable[[str], str | None] = lambda user: None) -> None:
        self._name_of = name_of  # a Slack user id -> the person's name (the backend's user cache)

    def mention(self, user: str, name: str) -> str:
        return f"<@{user}>"

    def escape(self, text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def inert(self, text: str) -> str:
        """Slack parses ``<!channel>``, ``<@U…>`` and ``<url|text>`` everywhere, code spans included:
        escaped as Slack asks, and a word joiner after each ``@`` keeps a bare ``@here`` from
        becoming a ping under ``link_names``."""
        return self.escape(text).replace("@", "@\u2060")

    def typed(self, text: str) -> str:
        return typed_from_slack(text, self._name_of)


__all__ = ["SLACK_TOKEN_RE", "SlackMarkup", "typed_from_slack"]
