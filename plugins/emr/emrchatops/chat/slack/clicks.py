"""Slack buttons, the glue (DESIGN §14): a Socket Mode listener on the SlackV3 backend's client.

A click arrives as a Socket Mode ``interactive`` envelope (``block_actions``). The backend
acknowledges every envelope and routes this kind nowhere, so the plugin adds its own
:class:`ClickListener` to the backend's ``SocketModeClient.socket_mode_request_listeners``
(:func:`attach`, from ``activate``) and takes it off again (:func:`detach`, from
``deactivate``). Listeners of ours are recognised by a marker attribute, not by identity:
after ``!plugin reload EMR`` the class itself is a new one, and a listener left by an
activation that failed half-way must go too — so exactly one runs.

The listener never acknowledges (the backend did) and never raises (slack_sdk would log an
ERROR with a traceback): anything that is not a click on one of our buttons is ignored —
silently when it is not ours, with one WARNING line when it claims to be ours but is
malformed. A click is handled by :class:`Clicks`, which asks the plugin to run the very
command the button stands for, as the person who clicked:

1. authorization: Errbot's own command filters (the ACLs core plugin and ``ACCESS_CONTROLS``)
   in dry-run mode, on a message from the clicker in the clicked message's channel — a user
   who may not run ``!emr lock`` there may not click "Keep it" there either;
2. stale: the cluster is gone, or the message's deadline has passed → say so, change nothing;
3. the command's own code path (its lock, its refusals, its announcements);
4. outcome: ``chat.update`` of the clicked message ("🔒 kept by @someone at 14:31", buttons
   gone once moot); a refusal is ``chat.postEphemeral`` to the clicker only.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emrchatops.chat.slack.blocks import (
    ACTIONS_BLOCK,
    TEXT_BLOCK,
    apology,
    fallback,
    gone_line,
    kept_blocks,
    moot_line,
    not_allowed,
    outcome,
    refused,
    stale_text,
    updated_blocks,
)
from emrchatops.chat.slack.seams import backend_of, command_allowed, message_from
from emrchatops.chat.words import View
from emrchatops.domain.buttons import (
    BUTTONS,
    USER_ID_RE,
    Buttons,
    Click,
    is_ours,
    moot_after,
    moot_now,
    parse_click,
    stale,
)
from emrchatops.domain.errors import EmrChatopsError, one_line
from emrchatops.domain.state import State

log = logging.getLogger("errbot.plugins.emr.slack")

MARKER = "emr_chatops_click_listener"  # the attribute that says "this listener is the EMR plugin's"
CHANNEL_ID_RE = re.compile(r"[CDG][A-Z0-9]{2,20}")
TS_RE = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
_REGISTRATION = threading.Lock()  # attach and detach from two plugin threads at once still leave one listener
POSTED_KEY = "slack_posted"  # plugin storage: the messages whose buttons are not moot yet
POSTED_LIMIT = 50  # of those, the latest kept (a warning or reminder a day is the usual pace)
SHOWN_LIMIT = 200  # messages whose current blocks are remembered (for clicks arriving at the same time)


def socket_client(backend: Any) -> Any | None:
    """The SlackV3 backend's Socket Mode client, or None (another backend, or the Events API over HTTP)."""
    client = getattr(backend, "slack_socket_mode", None)
    return client if client is not None and hasattr(client, "socket_mode_request_listeners") else None


def ours(listeners: list[Any]) -> list[Any]:
    return [listener for listener in listeners if getattr(listener, MARKER, False)]


def attach(
    backend: Any, handle: Callable[[ClickEnvelope], None], first: Callable[[str], bool] | None = None
) -> ClickListener | None:
    """Register one click listener on the backend's Socket Mode client (any of ours left over goes first).

    *first* tells whether an envelope id is seen for the first time (several instances on one app
    token: Slack may redeliver an envelope to another connection; it is handled once).
    """
    client = socket_client(backend)
    if client is None:
        return None
    listener = ClickListener(handle, first)
    with _REGISTRATION:
        # A new list, swapped in whole: slack_sdk may be iterating the old one on a worker thread.
        others = [other for other in client.socket_mode_request_listeners if not getattr(other, MARKER, False)]
        client.socket_mode_request_listeners = [*others, listener]
    log.info("Slack buttons: click listener registered")
    return listener


def detach(backend: Any) -> int:
    """Remove every click listener of ours from the backend's Socket Mode client; how many were removed."""
    client = socket_client(backend)
    if client is None:
        return 0
    with _REGISTRATION:
        listeners = client.socket_mode_request_listeners
        found = ours(listeners)
        if found:
            client.socket_mode_request_listeners = [other for other in listeners if other not in found]
    return len(found)


def cluster_words(view: View, state: State, cluster_id: str) -> str:
    """``analytics (j-…)``: from the state, or for a cluster that ended and was forgotten, from the history."""
    record = state.clusters.get(cluster_id)
    if record is not None:
        return view.cluster(record)
    named = [e for e in state.history if e.cluster == cluster_id]
    return f"{view.named(named[-1])} ({cluster_id})" if named else cluster_id


@dataclass(frozen=True)
class ClickEnvelope:
    """What a click on one of our buttons says, as far as it is believed: the click, who, where."""

    click: Click
    user: str  # the clicker's Slack user id (from Slack's envelope, never from the button's value)
    channel: str
    ts: str  # the clicked message
    blocks: Any  # the message's blocks as Slack sent them (only our own are reused, see kept_blocks)


def parse_envelope(payload: Mapping[str, Any]) -> ClickEnvelope | bool | None:
    """A ``block_actions`` payload → the click; False when no action is ours (not for us); None when malformed."""
    actions = payload.get("actions")
    if not isinstance(actions, list):
        return False
    mine = [a for a in actions if isinstance(a, Mapping) and is_ours(a.get("action_id"))]
    if not mine:
        return False
    action = mine[0]
    click = parse_click(action.get("action_id"), action.get("value"))
    user = _field(payload, "user", "id")
    container = _mapping(payload.get("container"))
    channel = _field(payload, "channel", "id") or container.get("channel_id")
    message = _mapping(payload.get("message"))
    ts = container.get("message_ts") or message.get("ts")
    if (
        click is None
        or not (isinstance(user, str) and USER_ID_RE.fullmatch(user))
        or not (isinstance(channel, str) and CHANNEL_ID_RE.fullmatch(channel))
        or not (isinstance(ts, str) and TS_RE.fullmatch(ts))
    ):
        return None
    return ClickEnvelope(click, user, channel, ts, message.get("blocks"))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _field(payload: Mapping[str, Any], key: str, sub: str) -> Any:
    value = payload.get(key)
    return value.get(sub) if isinstance(value, Mapping) else None


class ClickListener:
    """A ``socket_mode_request_listeners`` entry: clicks on our buttons go to *handle*, the rest is ignored."""

    emr_chatops_click_listener = True  # MARKER

    def __init__(self, handle: Callable[[ClickEnvelope], None], first: Callable[[str], bool] | None = None) -> None:
        self.handle = handle
        self.first = first

    def __call__(self, client: Any, request: Any) -> None:
        try:
            if getattr(request, "type", None) != "interactive":
                return
            payload = getattr(request, "payload", None)
            if not isinstance(payload, Mapping) or payload.get("type") != "block_actions":
                return
            envelope = parse_envelope(payload)
            if envelope is False:
                return
            if not isinstance(envelope, ClickEnvelope):
                log.warning(
                    "Slack buttons: ignored a malformed click (envelope %s)", getattr(request, "envelope_id", "?")
                )
                return
            envelope_id = getattr(request, "envelope_id", None)
            if (
                self.first is not None
                and isinstance(envelope_id, str)
                and not self.first(f"slack-envelope:{envelope_id}")
            ):
                log.info("Slack buttons: envelope %s was handled already (a redelivery)", envelope_id)
                return
            self.handle(envelope)
        except Exception:
            log.exception("Slack buttons: a click could not be handled")


class Clicks:
    """Handle clicks for one plugin activation: authorize, check staleness, run the command, update the message."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self._lock = threading.Lock()  # one update of a message at a time, each on the latest blocks
        self._shown: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
        # Messages posted with buttons and not yet moot: kept in the plugin's storage (bounded), so
        # a reload or a restart still takes their buttons away when they become moot.
        self._posted: OrderedDict[tuple[str, str], Buttons] = OrderedDict()
        self._load_posted()

    def __call__(self, envelope: ClickEnvelope) -> None:
        try:
            self._handle(envelope)
        except Exception:
            log.exception("Slack buttons: the click of %s on %s failed", envelope.user, envelope.click.cluster_id)
            self._ephemeral(envelope, apology)

    def _handle(self, envelope: ClickEnvelope) -> None:
        plugin, click = self.plugin, envelope.click
        view: View = plugin.view
        backend = backend_of(plugin)
        state: State = plugin.service.state()
        record = state.clusters.get(click.cluster_id)
        cluster = cluster_words(view, state, click.cluster_id)
        name = record.name if record is not None else click.cluster_id
        msg = self._message(backend, envelope.user, envelope.channel, f"!emr {click.action.command} {name}")
        if not command_allowed(backend, msg, f"emr_{click.action.command}", name):
            log.info("Slack buttons: %s may not %s %s (ACCESS_CONTROLS)", envelope.user, click.action.command, name)
            self._ephemeral(envelope, not_allowed(click, name))
            return
        why = stale(click, running=record is not None and record.listed, now=plugin.clock())
        if why is not None:
            log.info("Slack buttons: a click on a stale message (%s) about %s", why, click.cluster_id)
            self._ephemeral(envelope, stale_text(view, click, why, cluster))
            if why == "gone":
                self._update(envelope, gone_line(cluster), moot=True)
            return
        log.info(
            "Slack buttons: %s clicked %r on the %s message about %s",
            envelope.user,
            click.action.label,
            click.buttons.kind,
            click.cluster_id,
        )
        try:
            plugin.run_click_command(click.action.command, msg, click.cluster_id)
        except EmrChatopsError as error:
            self._ephemeral(envelope, refused(one_line(plugin.view.error_text(error))))
            now_gone = plugin.service.state().clusters.get(click.cluster_id)
            if record is not None and (now_gone is None or not now_gone.listed):  # a termination won the race
                self._update(envelope, gone_line(cluster), moot=True)
            return
        user, shown = plugin.sender(msg)
        now = plugin.clock()
        after = plugin.service.state().clusters.get(click.cluster_id)
        until = after.overtime.until if after is not None and after.overtime is not None else None
        line = outcome(view, click, user, shown, now, until)
        self._update(envelope, line, moot=moot_after(click, user))

    @staticmethod
    def _message(backend: Any, user: str, channel: str, body: str) -> Any:
        """The clicker's message (a seam: the test backend builds its own identifiers)."""
        return message_from(backend, user, channel, body)

    def _update(self, envelope: ClickEnvelope, line: str, *, moot: bool) -> None:
        """``chat.update`` the clicked message: its words, the outcomes so far, this one, the buttons unless moot."""
        key = (envelope.channel, envelope.ts)
        with self._lock:
            base = self._shown.get(key) or kept_blocks(envelope.blocks)
            if not any(b.get("block_id") == TEXT_BLOCK for b in base):
                log.warning("Slack buttons: message %s has none of our words; not updated", envelope.ts)
                return
            if moot and self._posted.pop(key, None) is not None:  # the sweep has nothing left to do on it
                self._save_posted()
            self._post_update(envelope.channel, envelope.ts, base, line, None if moot else envelope.click.buttons)

    def _post_update(
        self, channel: str, ts: str, base: list[dict[str, Any]], line: str, buttons: Buttons | None
    ) -> int:
        """``chat.update`` one message (call under ``self._lock``); 1 if Slack took it."""
        key = (channel, ts)
        blocks = updated_blocks(base, line, buttons)
        try:
            backend_of(self.plugin).slack_web.chat_update(channel=channel, ts=ts, text=fallback(blocks), blocks=blocks)
        except Exception as error:  # SlackApiError, or Slack unreachable: the action itself stands
            log.warning("Slack buttons: could not update message %s: %s", ts, one_line(str(error)))
            return 0
        self._shown[key] = [b for b in blocks if b.get("block_id") != ACTIONS_BLOCK]
        self._shown.move_to_end(key)
        while len(self._shown) > SHOWN_LIMIT:
            self._shown.popitem(last=False)
        return 1

    # -- messages posted with buttons: cleared when moot, click or no click -----------------------
    def _load_posted(self) -> None:
        """The watched messages from storage (entries that do not parse are dropped: never trusted)."""
        try:
            entries = self.plugin.get(POSTED_KEY, [])
        except Exception:  # no storage (a plugin not activated)
            return
        for entry in entries if isinstance(entries, list) else []:
            try:
                channel, ts, value, blocks = entry["channel"], entry["ts"], entry["value"], entry["blocks"]
                kind = value.split("|")[1]
                click = parse_click(BUTTONS[kind][0].id, value)
            except (KeyError, TypeError, AttributeError, IndexError):
                continue
            if click is None or not isinstance(blocks, list):
                continue
            self._posted[(channel, ts)] = click.buttons
            self._shown.setdefault((channel, ts), kept_blocks(blocks))

    def _save_posted(self) -> None:
        """Write the watched messages to storage (call under ``self._lock``)."""
        entries = [
            {"channel": channel, "ts": ts, "value": buttons.value, "blocks": self._shown.get((channel, ts), [])}
            for (channel, ts), buttons in self._posted.items()
        ]
        try:
            self.plugin[POSTED_KEY] = entries
        except Exception as error:  # storage gone (deactivated meanwhile): the stale check still answers clicks
            log.warning("Slack buttons: could not keep the posted messages: %s", one_line(str(error)))

    def remember(self, channel: str, ts: str, buttons: Buttons, blocks: list[dict[str, Any]]) -> None:
        """A warning or reminder was posted with *buttons*: watch it until its buttons are moot."""
        key = (channel, ts)
        with self._lock:
            self._shown[key] = [b for b in blocks if b.get("block_id") != ACTIONS_BLOCK]
            self._posted[key] = buttons
            while len(self._posted) > POSTED_LIMIT:
                self._posted.popitem(last=False)
            while len(self._shown) > SHOWN_LIMIT:
                self._shown.popitem(last=False)
            self._save_posted()

    @property
    def watching(self) -> bool:
        """Whether any message posted with buttons may still need them taken away."""
        with self._lock:
            return bool(self._posted)

    def sweep(self, state: State, now: datetime) -> int:
        """Take the buttons off posted messages that became moot (DESIGN §14): the cluster was
        terminated, the deadline passed, the cluster is held, overtime asked, the reminder answered.
        Called after each tick; one ``chat.update`` per message, once. How many were updated."""
        view: View = self.plugin.view
        with self._lock:
            posted = list(self._posted.items())
        updated = 0
        for (channel, ts), buttons in posted:
            record = state.clusters.get(buttons.cluster_id)
            why = moot_now(buttons, record, now)
            if why is None:
                continue
            line = moot_line(view, why, buttons, record, cluster_words(view, state, buttons.cluster_id))
            with self._lock:
                if self._posted.pop((channel, ts), None) is None:  # a click took it meanwhile
                    continue
                self._save_posted()  # tried once: a message Slack no longer has is not retried forever
                base = self._shown.get((channel, ts), [])
                updated += self._post_update(channel, ts, base, line, None)
        return updated

    def _ephemeral(self, envelope: ClickEnvelope, text: str) -> None:
        try:
            backend_of(self.plugin).slack_web.chat_postEphemeral(
                channel=envelope.channel, user=envelope.user, text=text
            )
        except Exception as error:
            log.warning("Slack buttons: could not answer %s: %s", envelope.user, one_line(str(error)))


__all__ = ["MARKER", "ClickEnvelope", "ClickListener", "Clicks", "attach", "detach", "parse_envelope"]
