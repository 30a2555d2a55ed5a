"""The chat on Slack (errbot-backend-slackv3): cards, charts, buttons and Slack's markup.

Everything the plugin does only on Slack is here, behind :class:`emrchatops.chat.base.Chat`:
status as attachments with a plain-text fallback (``chat.postMessage``), the report's
chart (``files_upload_v2`` by channel id), warnings and reminders with Block Kit buttons
(watched until moot by :class:`emrchatops.chat.slack.clicks.Clicks`), the doctor's
membership check (``conversations.info``), and the typed text behind Slack's markup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from emrchatops.app.service import ReportData, Status
from emrchatops.chat.base import Poster
from emrchatops.chat.chart import preload as preload_chart
from emrchatops.chat.chart import render as render_chart
from emrchatops.chat.markup import Markup
from emrchatops.chat.slack import clicks as slack_clicks
from emrchatops.chat.slack.blocks import message_blocks
from emrchatops.chat.slack.markup import SlackMarkup
from emrchatops.chat.words import View
from emrchatops.domain.buttons import Buttons
from emrchatops.domain.ledger import CostSoFar
from emrchatops.domain.state import ClusterInfo, ClusterRecord, State

log = logging.getLogger("errbot.plugins.emr.slack")

#: Backend modes that speak Slack markup (errbot-backend-slackv3 says "slackv3").
SLACK_MODES = frozenset({"slack", "slackv3", "slack_rtm"})


def on_slack(backend: Any) -> bool:
    """Whether *backend* is a Slack backend (asked once, when the plugin picks its chat)."""
    return getattr(backend, "mode", "") in SLACK_MODES


def status_message(
    view: View,
    state: State,
    record: ClusterRecord,
    cluster: ClusterInfo,
    now: datetime,
    activity_problem: str | None,
    cost: CostSoFar | None = None,
) -> dict[str, Any]:
    """``chat.postMessage`` arguments: the status card as an attachment, and a plain-text fallback.

    The fallback (the message's ``text`` and the attachment's ``fallback``) is what
    notifications, search and screen readers get: the essentials in one line, holders by
    name (a status asked by someone must not ping the holders again).
    """
    card = view.status_card(state, record, cluster, now, activity_problem, cost)
    attachment: dict[str, Any] = {
        "fallback": view.status_fallback(record, cluster, dict(card["fields"])["Next action"]),
        "color": card["color"],
        "title": card["title"],
        "text": card["body"],
        "fields": [{"title": title, "value": value, "short": True} for title, value in card["fields"]],
    }
    if card["link"]:
        attachment["title_link"] = card["link"]
    return {"text": attachment["fallback"], "attachments": [attachment]}


class SlackChat:
    """Answers, announcements and clicks on Slack, through the SlackV3 backend and its Web client."""

    def __init__(self, plugin: Any, backend: Any, first: Callable[[str], bool] | None = None) -> None:
        self.first = first  # a Socket Mode envelope id seen for the first time (redeliveries are handled once)
        self.plugin = plugin  # the Errbot plugin: its commands run a click (Clicks), its send/build_identifier post
        self.poster: Poster = plugin
        self.backend = backend
        self.markup: Markup = SlackMarkup(self._slack_name)
        self.clicks: slack_clicks.Clicks | None = None

    def message_key(self, msg: Any) -> str | None:
        """A Slack message is its channel and ``ts`` (the same in a redelivered Socket Mode envelope)."""
        event = getattr(msg, "extras", {}).get("slack_event")
        if not isinstance(event, dict):
            return None
        channel, ts = event.get("channel"), event.get("ts")
        return f"slack-message:{channel}:{ts}" if isinstance(channel, str) and isinstance(ts, str) else None

    # -- answers ------------------------------------------------------------------------
    def status(self, msg: Any, view: View, status: Status) -> str | None:
        """One card (a Slack attachment with a plain-text fallback) per cluster."""
        for record, cluster in status.records:
            cost = status.costs[record.id]
            self._reply(
                msg, status_message(view, status.state, record, cluster, status.now, status.activity_problem, cost)
            )
        return None

    def report(self, msg: Any, view: View, figures: ReportData, days: int) -> str | None:
        """The table as a reply, then the chart uploaded to the same channel."""
        self.poster.send(msg.to if msg.is_group else msg.frm, view.report(figures.report, days, figures.now))
        return self._upload_chart(msg, render_chart(figures.report, view.report_title(days)), days, view)

    def _upload_chart(self, msg: Any, png: bytes, days: int, view: View) -> str | None:
        """Upload the chart to the channel the report was asked in, by its id (DESIGN §13).

        Through the Web API's ``files_upload_v2``: the SlackV3 backend's own stream upload names the
        channel as ``<#C…|name>``, which Slack's upload refuses.
        """
        channel = msg.to.id if msg.is_group else getattr(msg.frm, "channelid", None)
        try:
            self.backend.slack_web.files_upload_v2(
                channel=channel, file=png, filename=f"emr-report-{days}d.png", title=view.report_title(days)
            )
        except Exception as error:
            log.warning("!emr report: chart not uploaded to %s: %s", channel, error)
            return view.chart_failed(error)
        return None

    def _reply(self, msg: Any, payload: dict[str, Any]) -> None:
        """Post a Slack message (``text`` fallback + attachments or blocks) where *msg* came from.

        The backend's ``send_card`` sends no ``text`` and no ``fallback`` (notifications and
        screen readers get nothing), so cards go through ``chat.postMessage`` here: in the
        channel the command came from, or the DM (not a thread).
        """
        channel = msg.to.id if msg.is_group else msg.frm.channelid
        self.backend.slack_web.chat_postMessage(channel=channel, **payload)

    # -- announcements --------------------------------------------------------------------
    def announce(self, channel: str, text: str, buttons: Buttons | None) -> None:
        """*buttons* make it a Block Kit message whose buttons run the commands the text names
        (DESIGN §14); the text stays its plain-text fallback."""
        to = self.poster.build_identifier(channel)
        if buttons is None:
            self.poster.send(to, text)
            return
        blocks = message_blocks(text, buttons)
        posted = self._send_blocks(to, text, blocks)
        if posted is not None and self.clicks is not None:  # watched until its buttons are moot (Clicks.sweep)
            self.clicks.remember(*posted, buttons, blocks)

    def _send_blocks(self, to: Any, text: str, blocks: list[dict[str, Any]]) -> tuple[str, str] | None:
        """A Block Kit message through the backend (which keeps *text*, converted like any reply, as its fallback).

        Returns (channel id, ts) of the message Slack made, None if it said none.
        """
        msg = self.backend.build_message(text)
        msg.to, msg.frm = to, self.backend.bot_identifier
        msg.extras["blocks"] = blocks
        self.backend.send_message(msg)
        stamps = msg.extras.get("ts") or []
        channel = getattr(to, "id", None)
        return (str(channel), str(stamps[-1])) if stamps and channel else None

    # -- the doctor -----------------------------------------------------------------------
    def member_check(self) -> Callable[[str], bool | None] | None:
        return self._member_of

    def _member_of(self, channel: str) -> bool | None:
        """Whether the bot is in *channel*: ``conversations.info`` on the channel's id.

        Not the backend's ``room.joined``: it reads one page of ``conversations.list`` only,
        so in a workspace with more channels than a page it says "not a member" wrongly.
        Resolving the name to an id pages through the whole list (the backend's room does).
        """
        room = self.poster.build_identifier(channel)
        info = self.backend.slack_web.conversations_info(channel=room.id)
        member = info["channel"].get("is_member")
        return None if member is None else bool(member)

    def _slack_name(self, user_id: str) -> str | None:
        """A mentioned person's Slack name (users.info, cached by the backend); None if Slack does not say."""
        try:
            return str(self.backend.userid_to_username(user_id))
        except Exception:
            log.info("no Slack name for the mentioned %s", user_id, exc_info=True)
            return None

    # -- lifecycle and buttons ------------------------------------------------------------
    def start(self) -> None:
        # The report's chart: matplotlib imported meanwhile, not at the first report.
        threading.Thread(target=preload_chart, name="emr-chart-preload", daemon=True).start()
        # Slack buttons: one click listener on the backend's Socket Mode client.
        self.clicks = slack_clicks.Clicks(self.plugin)
        slack_clicks.attach(self.backend, self.clicks, self.first)

    def stop(self) -> None:
        slack_clicks.detach(self.backend)  # no click reaches a deactivated plugin

    def after_tick(self, state: Callable[[], State], now: datetime) -> None:
        """Take the buttons off warnings and reminders that became moot. Never raises."""
        clicks = self.clicks
        if clicks is None or not clicks.watching:
            return  # nothing posted with buttons: no state to read
        try:
            clicks.sweep(state(), now)
        except Exception:
            log.warning("Slack buttons: the sweep of moot buttons failed", exc_info=True)


__all__ = ["SLACK_MODES", "SlackChat", "on_slack", "status_message"]
