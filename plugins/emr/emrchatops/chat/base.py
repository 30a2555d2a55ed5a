"""The Chat protocol: what the plugin asks of the chat it runs on, chosen once per backend.

``emr.py`` picks one chat at activation (:class:`PlainChat` for the Text console and
Errbot's test backend, :class:`emrchatops.chat.slack.chat.SlackChat` on SlackV3) and
never asks "am I on Slack?" again: replies that are cards, charts, buttons and the
typed text behind a chat's markup are the chat's business. Another chat (Mattermost,
Teams) is another implementation in its own folder under ``chat/``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from emrchatops.app.service import ReportData, Status
from emrchatops.chat.markup import Markup, PlainMarkup
from emrchatops.chat.words import View
from emrchatops.domain.buttons import Buttons
from emrchatops.domain.state import ClusterInfo, ClusterRecord, State


class Poster(Protocol):
    """What a chat needs of the Errbot plugin: its public API for sending (``BotPlugin.send``, …)."""

    def send(self, identifier: Any, text: str) -> Any: ...

    def build_identifier(self, text: str) -> Any: ...


class Chat(Protocol):
    """One chat's way of answering, announcing and taking clicks."""

    markup: Markup
    #: Several instances on one chat app: whether an id (a click's envelope, a message) is seen for the first
    #: time, so that a redelivery is handled once; None with one instance.
    first: Callable[[str], bool] | None

    def message_key(self, msg: Any) -> str | None:
        """What identifies a message across redeliveries (None: the chat does not redeliver)."""
        ...

    def status(self, msg: Any, view: View, status: Status) -> str | None:
        """Answer ``!emr status`` for the clusters of *status*; None when the chat posted it itself."""
        ...

    def report(self, msg: Any, view: View, figures: ReportData, days: int) -> str | None:
        """Answer ``!emr report DAYS``; None when the chat posted it itself."""
        ...

    def announce(self, channel: str, text: str, buttons: Buttons | None) -> None:
        """Post *text* to *channel* (with *buttons* where the chat has them)."""
        ...

    def member_check(self) -> Callable[[str], bool | None] | None:
        """How the doctor asks whether the bot is in a channel, or None where the chat cannot tell."""
        ...

    def start(self) -> None:
        """At activation: whatever the chat listens to (clicks) and warms up."""
        ...

    def stop(self) -> None:
        """At deactivation: nothing reaches a deactivated plugin."""
        ...

    def after_tick(self, state: Callable[[], State], now: datetime) -> None:
        """After each poller tick (take moot buttons off messages). Never raises."""
        ...


class PlainChat:
    """The Text console and Errbot's test backend: text replies, text announcements, no buttons."""

    def __init__(self, poster: Poster) -> None:
        self.poster = poster
        self.markup: Markup = PlainMarkup()
        self.first: Callable[[str], bool] | None = None

    def message_key(self, msg: Any) -> str | None:
        return None

    def status(self, msg: Any, view: View, status: Status) -> str | None:
        def lines(record: ClusterRecord, cluster: ClusterInfo) -> str:
            return view.status_lines(
                status.state, record, cluster, status.now, status.activity_problem, status.costs[record.id]
            )

        if not view.several:
            return "\n".join(lines(record, cluster) for record, cluster in status.records)
        # Several targets and regions: grouped by them, each under its heading (DESIGN §17).
        shown = sorted(status.records, key=lambda rc: view.where_order(rc[0]))
        groups = itertools.groupby(shown, key=lambda rc: (rc[0].target, rc[0].region))
        return "\n".join(
            "\n".join([view.where_title(*where), *(lines(record, cluster) for record, cluster in group)])
            for where, group in groups
        )

    def report(self, msg: Any, view: View, figures: ReportData, days: int) -> str | None:
        return view.report(figures.report, days, figures.now)

    def announce(self, channel: str, text: str, buttons: Buttons | None) -> None:
        self.poster.send(self.poster.build_identifier(channel), text)

    def member_check(self) -> Callable[[str], bool | None] | None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def after_tick(self, state: Callable[[], State], now: datetime) -> None:
        return None


__all__ = ["Chat", "PlainChat", "Poster"]
