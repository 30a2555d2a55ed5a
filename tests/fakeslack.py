"""A loopback fake of Slack (Web API + Socket Mode) for driving the real SlackV3 backend.

``FakeSlack`` runs an aiohttp server on ``127.0.0.1`` (a free port) in its own event-loop
thread.  It speaks just enough of Slack for the real ``errbot`` process with the real
``errbot-backend-slackv3`` (0.3.2) backend and ``slack_sdk`` (3.48) to authenticate, open a
Socket Mode connection, receive ``message`` events and answer through ``chat.postMessage``::

    with FakeSlack() as slack:
        # start errbot with slack_sdk pointed at slack.base_url (see "Pointing the bot at it")
        slack.wait_until_connected(timeout=20)
        sent = slack.send_message("alice", "#data", "!echo hello")
        post = slack.wait_for_post(lambda m: "hello" in m.text, channel="C0DATA", timeout=20)
        print(post.at - sent.sent_at)  # event-in -> chat.postMessage round-trip, seconds

Pointing the bot at it
----------------------
The SlackV3 backend builds ``WebClient(token=..., proxy=...)`` itself and offers no setting
for the Web API base URL (``BOT_IDENTITY`` only carries ``token``, ``app_token``,
``signing_secret`` and ``proxies``), and ``slack_sdk`` honours no environment variable for it
(only ``HTTP(S)_PROXY``).  Using ``proxies`` would need TLS interception, so the seam chosen is
the smallest one: ``config.py`` — which errbot imports inside the bot process before it loads
the backend — wraps ``slack_sdk.web.base_client.BaseClient.__init__`` so that a client built
with the *default* base URL gets the fake's instead.  It is off unless an environment variable
is set (``EMR_CHATOPS_SLACK_API_URL``), so production is unaffected; see
``SLACK_API_URL_SEAM`` below for the exact lines (they need ``import os`` above them;
tests/test_fakeslack.py writes them into its temporary config.py).  The Socket Mode URL needs
no seam: the backend's ``SocketModeClient`` asks ``apps.connections.open`` (on the fake) and
gets a ``ws://127.0.0.1:<port>/link/?ticket=...`` back; slack_sdk's built-in client uses a plain
socket for any port other than 443.  Clear ``HTTP(S)_PROXY`` in the bot's environment, since
slack_sdk would otherwise send loopback traffic to the proxy.

What the fake covers
--------------------
* Web API (``/api/<method>``, GET or POST; form, query-string and JSON bodies), every call
  recorded (``calls``) with method, parsed params and request headers:
  ``auth.test`` (with an ``x-oauth-scopes`` header = the bot scopes of
  ``deploy/slack-app-manifest.yaml``), ``api.test``, ``users.info``, ``users.list``,
  ``users.setPresence``, ``bots.info``, ``team.info``, ``conversations.list`` (honours
  ``types``), ``conversations.info``, ``conversations.members``, ``conversations.join``,
  ``conversations.leave``, ``conversations.open`` (one-user DMs), ``chat.postMessage``,
  ``chat.update``, ``chat.delete``, ``chat.postEphemeral``, ``reactions.add``,
  ``reactions.remove``, ``apps.connections.open``.
* Token checks: web methods need the bot token (``Authorization: Bearer`` or ``token``
  param), ``apps.connections.open`` needs the app token; otherwise ``not_authed`` /
  ``invalid_auth``.  ``chat.postMessage`` answers ``channel_not_found`` for unknown channels,
  ``not_in_channel`` when the bot is not a member (invite it: ``bot_member=True``), and
  ``no_text`` when there is neither text nor attachments/blocks.
* Unknown methods are recorded (``unknown_methods``) and answered
  ``{"ok": false, "error": "unknown_method"}`` so gaps are visible.
* Message text as Slack delivers it: ``send_message`` takes what a person types and escapes
  ``&``/``<``/``>``, turns ``@channel``/``@here`` into ``<!channel>``/``<!here>``, ``@name`` into
  ``<@U…>`` and ``#name`` into ``<#C…|name>`` (``raw=True`` sends wire text as is).
* Socket Mode websocket: sends ``hello`` on connect; ``send_message`` / ``send_event`` push an
  ``events_api`` envelope and wait for the client's ``{"envelope_id": ...}`` ack; acks are
  recorded with their arrival time; the event's send time is recorded for round-trip timing.
  ``disconnect_clients`` drops the connections server-side (slack_sdk then reconnects through
  ``apps.connections.open``; ``wait_until_connected(hellos_more_than=n)`` waits for that).
* Interactivity over Socket Mode: ``click`` presses a button of a message the bot posted (as
  the messages now stand, after any ``chat.update``) and pushes the ``interactive`` envelope
  (``block_actions``) Slack would send, shaped like Slack's: ``user``, ``channel``,
  ``container.message_ts``, the ``message`` with its ``blocks``, the ``actions`` pressed;
  ``send_interactive`` pushes any payload (forged, malformed). ``chat.update`` replaces the
  stored message (text and blocks); ``chat.postEphemeral`` needs a ``user`` and is recorded
  as a post with method ``chat.postEphemeral`` (its ``user`` in ``params``).
* Public and private channels (events carry ``channel_type`` ``channel`` / ``group``), DMs
  (``D`` + the user id without its ``U``, ``channel_type`` ``im``), thread replies
  (``thread_ts`` on the event; the bot's ``thread_ts`` is kept on ``PostedMessage``).
* Configurable users, bot user and channels (defaults: U0ALICE "alice", U0BOB "bob", bot
  U0BOT/B0BOT "emr-chatops", C0DATA "#data", C0NOTIFY "#emr-alerts"); ``chat.postMessage``
  records the text exactly as the backend sent it (after its Markdown conversion).
* Waiting helpers (``wait_for_post``, ``wait_for_call``, ``wait_until_connected``) block on a
  condition variable with a deadline — no fixed sleeps.

What it does not cover
----------------------
* No rate limiting (never ``429``/``ratelimited``), pagination only for
  ``conversations.list`` and ``conversations.members`` (``page_size``, default 100, like
  Slack's default ``limit``; ``users.list`` is one page), no real OAuth (tokens are compared as plain strings, no scope enforcement
  per method), no TLS (``http://`` / ``ws://`` only).
* No Block Kit or attachment validation/rendering: ``blocks``/``attachments`` are stored as sent.
* No message history (``conversations.history``/``replies``), files (``files.*``), pins,
  stars, user groups, Enterprise Grid, shared channels, slash commands, modals and view
  submissions, ``response_url`` replies, ``app_mention`` events, retries of un-acked
  envelopes, ``disconnect`` / ``refresh_requested`` messages (``disconnect_clients`` just
  closes the websocket), presence events, or mpim/group-DM channels.
* Bot-authored messages are not echoed back as events (real Slack would send the bot its own
  ``message`` events; the backend ignores them anyway).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from aiohttp import WSMsgType, web

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_USERS",
    "FAKE_APP_TOKEN",
    "FAKE_BOT_TOKEN",
    "MANIFEST_PATH",
    "SLACK_API_URL_ENV",
    "SLACK_API_URL_SEAM",
    "Ack",
    "ApiCall",
    "FakeChannel",
    "FakeSlack",
    "FakeUser",
    "PostedMessage",
    "SentEvent",
    "manifest_bot_scopes",
]

_T = TypeVar("_T")

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "deploy" / "slack-app-manifest.yaml"

#: Environment variable the config.py seam reads.
SLACK_API_URL_ENV = "EMR_CHATOPS_SLACK_API_URL"

#: The lines a bot config.py needs so that, when ``EMR_CHATOPS_SLACK_API_URL`` is set, every
#: slack_sdk Web API client built with the default base URL talks to that URL instead.
#: Harmless when the variable is unset (production).  Kept inside a function so errbot's
#: config module gains no stray attributes.
SLACK_API_URL_SEAM = '''
def _route_slack_sdk_to(url):
    """Tests/demo only: send slack_sdk Web API calls that use the default base URL to `url`."""
    from slack_sdk.web.base_client import BaseClient

    if not url.endswith("/"):
        url += "/"
    original_init = BaseClient.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.base_url == BaseClient.BASE_URL:
            self.base_url = url

    BaseClient.__init__ = __init__


if os.environ.get("EMR_CHATOPS_SLACK_API_URL"):
    _route_slack_sdk_to(os.environ["EMR_CHATOPS_SLACK_API_URL"])
'''


def manifest_bot_scopes(path: Path = MANIFEST_PATH) -> tuple[str, ...]:
    """The bot scopes declared in the Slack app manifest (``oauth_config.scopes.bot``)."""
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


@dataclass(frozen=True)
class FakeUser:
    id: str
    name: str
    real_name: str = ""
    display_name: str | None = None  # defaults to name
    email: str = ""
    is_bot: bool = False
    bot_id: str | None = None

    def as_slack(self, team_id: str) -> dict[str, Any]:
        display = self.name if self.display_name is None else self.display_name
        user: dict[str, Any] = {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name or self.name,
            "tz": "Europe/Berlin",
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "profile": {
                "real_name": self.real_name or self.name,
                "display_name": display,
                "email": self.email,
                "team": team_id,
            },
        }
        if self.bot_id:
            user["profile"]["bot_id"] = self.bot_id
        return user


@dataclass
class FakeChannel:
    id: str
    name: str
    members: list[str] = field(default_factory=list)
    bot_member: bool = True
    is_private: bool = False
    topic: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    response: dict[str, Any]
    at: float  # time.monotonic()


@dataclass(frozen=True)
class PostedMessage:
    method: str  # chat.postMessage / chat.update / chat.postEphemeral
    channel: str  # resolved channel id
    text: str
    ts: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the fake received it

    @property
    def attachments(self) -> list[dict[str, Any]]:
        return _json_field(self.params.get("attachments"))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return _json_field(self.params.get("blocks"))

    @property
    def thread_ts(self) -> str | None:
        return self.params.get("thread_ts")


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any]
    at: float  # time.monotonic()


@dataclass(frozen=True)
class SentEvent:
    envelope_id: str
    envelope: dict[str, Any]
    sent_at: float  # time.monotonic() just before the frame was written
    ack: Ack | None

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = self.envelope["payload"]["event"]
        return event

    @property
    def ts(self) -> str:
        return str(self.event.get("ts", ""))


def _json_field(value: Any) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed)


FAKE_BOT_TOKEN = "xoxb-0000000000-fake-bot-token"
FAKE_APP_TOKEN = "xapp-1-A0FAKE-0000-fake-app-token"
DEFAULT_USERS: tuple[FakeUser, ...] = (
    FakeUser("U0ALICE", "alice", "Alice Analyst", email="alice@example.invalid"),
    FakeUser("U0BOB", "bob", "Bob Builder", email="bob@example.invalid"),
)
DEFAULT_BOT = FakeUser("U0BOT", "emr-chatops", "EMR ChatOps", is_bot=True, bot_id="B0BOT")
DEFAULT_CHANNELS: tuple[FakeChannel, ...] = (
    FakeChannel("C0DATA", "data", ["U0ALICE", "U0BOB"], purpose="Data team"),
    FakeChannel("C0NOTIFY", "emr-alerts", ["U0ALICE", "U0BOB"], purpose="EMR cluster alerts"),
)


class FakeSlack:
    """Fake Slack on 127.0.0.1; use as a context manager (or ``start()`` / ``stop()``)."""

    def __init__(
        self,
        *,
        users: Iterable[FakeUser] = DEFAULT_USERS,
        channels: Iterable[FakeChannel] = DEFAULT_CHANNELS,
        bot: FakeUser = DEFAULT_BOT,
        bot_token: str = FAKE_BOT_TOKEN,
        app_token: str = FAKE_APP_TOKEN,
        scopes: Iterable[str] | None = None,
        team_id: str = "T0FAKE",
        team_domain: str = "fake-workspace",
        app_id: str = "A0FAKE",
        page_size: int = 100,
    ) -> None:
        self.bot = bot
        self.page_size = page_size  # conversations.list / .members: at most this many per page
        self.bot_token = bot_token
        self.app_token = app_token
        self.scopes = tuple(scopes) if scopes is not None else manifest_bot_scopes()
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self._users: dict[str, FakeUser] = {u.id: u for u in (*users, bot)}
        self._channels: dict[str, FakeChannel] = {}
        for ch in channels:
            # copy: membership changes (conversations.join) must not leak into the defaults
            self._channels[ch.id] = FakeChannel(
                ch.id, ch.name, list(ch.members), ch.bot_member, ch.is_private, ch.topic, ch.purpose
            )
        self._ims: dict[str, str] = {}  # DM channel id -> user id

        self._cond = threading.Condition(threading.RLock())
        self._calls: list[ApiCall] = []
        self._posts: list[PostedMessage] = []
        self._acks: list[Ack] = []
        self._sent: list[SentEvent] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self._hellos = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._ts_counter = itertools.count(1)
        self._event_counter = itertools.count(1)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeSlack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        if self._loop is not None:
            raise RuntimeError("FakeSlack already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="fakeslack", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _astart(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_post("/upload/{file_id}", _handle_upload(self))  # files_upload_v2, see the end of the file
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _astop(self) -> None:
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """Web API base URL for ``WebClient(base_url=...)`` (ends with ``/``)."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4()}&app_id={self.app_id}"

    # ------------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[ApiCall]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    @property
    def unknown_methods(self) -> list[str]:
        return [c.method for c in self.calls if c.response.get("error") == "unknown_method"]

    @property
    def posts(self) -> list[PostedMessage]:
        with self._cond:
            return list(self._posts)

    @property
    def acks(self) -> list[Ack]:
        with self._cond:
            return list(self._acks)

    @property
    def sent_events(self) -> list[SentEvent]:
        with self._cond:
            return list(self._sent)

    @property
    def connected(self) -> bool:
        with self._cond:
            return bool(self._sockets) and self._hellos > 0

    def channel(self, ref: str) -> FakeChannel:
        with self._cond:
            return self._channels[self._resolve_channel(ref)]

    def user(self, ref: str) -> FakeUser:
        return self._users[self._resolve_user(ref)]

    def im_channel_id(self, user_ref: str) -> str:
        """The DM channel id between the bot and a user (what conversations.open returns)."""
        uid = self._resolve_user(user_ref)
        channel_id = "D" + uid[1:]
        with self._cond:
            self._ims[channel_id] = uid
        return channel_id

    # ------------------------------------------------------------------ waiting

    def _wait(self, find: Callable[[], _T | None], timeout: float, what: Callable[[], str]) -> _T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"FakeSlack: timed out after {timeout:.1f}s waiting for {what()}")
                self._cond.wait(min(remaining, 0.5))

    @property
    def hellos_sent(self) -> int:
        """How many Socket Mode connections have been greeted with ``hello`` so far."""
        with self._cond:
            return self._hellos

    def wait_until_connected(self, timeout: float = 20.0, *, hellos_more_than: int = 0) -> None:
        """Block until a Socket Mode client is connected and has been sent ``hello`` (and, to wait
        for a reconnection, until more than ``hellos_more_than`` hellos have been sent)."""

        def find() -> bool | None:
            return True if self.connected and self._hellos > hellos_more_than else None

        self._wait(find, timeout, lambda: f"a Socket Mode connection (hello #{hellos_more_than + 1})")

    def wait_for_post(
        self,
        predicate: Callable[[PostedMessage], bool] | None = None,
        *,
        channel: str | None = None,
        method: str = "chat.postMessage",
        after: float | None = None,
        timeout: float = 20.0,
    ) -> PostedMessage:
        """First message posted (optionally to ``channel``, received after monotonic time
        ``after``) that satisfies ``predicate``."""
        channel_id = self._resolve_channel(channel) if channel else None

        def find() -> PostedMessage | None:
            for post in self._posts:
                if post.method != method or (channel_id and post.channel != channel_id):
                    continue
                if after is not None and post.at < after:
                    continue
                if predicate is None or predicate(post):
                    return post
            return None

        def what() -> str:
            seen = [(p.method, p.channel, p.text[:80]) for p in self._posts]
            return f"a {method} to {channel_id or 'any channel'}; posts so far: {seen}"

        return self._wait(find, timeout, what)

    def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        *,
        timeout: float = 20.0,
    ) -> ApiCall:
        def find() -> ApiCall | None:
            return next(
                (c for c in self._calls if c.method == method and (predicate is None or predicate(c))),
                None,
            )

        def what() -> str:
            return f"a call to {method}; calls so far: {[c.method for c in self._calls]}"

        return self._wait(find, timeout, what)

    # ------------------------------------------------------------------ Socket Mode: sending events

    def send_message(
        self,
        user: str,
        channel: str | None,
        text: str,
        *,
        thread_ts: str | None = None,
        wait_ack: bool = True,
        timeout: float = 10.0,
        raw: bool = False,
    ) -> SentEvent:
        """Push a ``message`` event from ``user`` (id or name) in ``channel`` (id, ``#name`` or
        ``None`` for a DM with the bot) and, by default, wait for the client's ack.

        ``text`` is what the person types; it arrives the way Slack delivers it (see
        :meth:`as_delivered`). ``raw=True`` sends ``text`` as the wire text, unchanged."""
        if not raw:
            text = self.as_delivered(text)
        uid = self._resolve_user(user)
        channel_id = self.im_channel_id(uid) if channel is None else self._resolve_channel(channel)
        ts = self._next_ts()
        if channel_id.startswith("D"):
            channel_type = "im"
        elif self._channels[channel_id].is_private:
            channel_type = "group"
        else:
            channel_type = "channel"
        event: dict[str, Any] = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "message",
            "text": text,
            "user": uid,
            "ts": ts,
            "team": self.team_id,
            "channel": channel_id,
            "event_ts": ts,
            "channel_type": channel_type,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        with self._cond:
            self._messages[(channel_id, ts)] = dict(event)
        return self.send_event(event, wait_ack=wait_ack, timeout=timeout)

    def as_delivered(self, typed: str) -> str:
        """Typed text as Slack delivers it in a ``message`` event: ``&``, ``<``, ``>`` escaped
        (``&amp;``, ``&lt;``, ``&gt;``), ``@channel`` / ``@here`` / ``@everyone`` as
        ``<!channel>``…, ``@name`` of a known user as ``<@U…>``, ``#name`` of a known channel
        as ``<#C…|name>``."""
        text = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        users = {u.name: u.id for u in self._users.values()}
        users.update({u.display_name: u.id for u in self._users.values() if u.display_name})
        channels = {ch.name: ch.id for ch in self._channels.values()}

        def markup(match: re.Match[str]) -> str:
            sigil, word = match.group(1), match.group(2)
            if sigil == "@" and word in ("channel", "here", "everyone"):
                return f"<!{word}>"
            if sigil == "@" and word in users:
                return f"<@{users[word]}>"
            if sigil == "#" and word in channels:
                return f"<#{channels[word]}|{word}>"
            return match.group(0)

        return re.sub(r"(?<![\w@#])([@#])([\w.-]+)", markup, text)

    def send_event(
        self,
        event: Mapping[str, Any],
        *,
        wait_ack: bool = True,
        timeout: float = 10.0,
    ) -> SentEvent:
        """Push any Events API ``event`` in an ``events_api`` envelope."""
        self.wait_until_connected(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": {
                "token": "fake-verification-token",
                "team_id": self.team_id,
                "context_team_id": self.team_id,
                "api_app_id": self.app_id,
                "event": dict(event),
                "type": "event_callback",
                "event_id": f"Ev{next(self._event_counter):08d}",
                "event_time": int(time.time()),
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": self.team_id,
                        "user_id": self.bot.id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
            },
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        return self._send_envelope(envelope, wait_ack=wait_ack, timeout=timeout)

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A message as it stands now (after any chat.update): type, user, text, ts, blocks."""
        with self._cond:
            return dict(self._messages[(self._resolve_channel(channel), ts)])

    def click(
        self,
        user: str,
        post: PostedMessage,
        action_id: str,
        *,
        wait_ack: bool = True,
        timeout: float = 10.0,
    ) -> SentEvent:
        """*user* presses the button *action_id* of the bot's message *post*, as the message stands now.

        Raises LookupError when the message (as it stands) has no such button: a user cannot
        press a button that is not shown (to send one anyway, build the payload and use
        :meth:`send_interactive`).
        """
        message = self.message(post.channel, post.ts)
        pressed = [
            element
            for block in message.get("blocks", [])
            if block.get("type") == "actions"
            for element in block.get("elements", [])
            if element.get("action_id") == action_id
        ]
        if not pressed:
            raise LookupError(f"message {post.ts} shows no button {action_id}")
        return self.send_interactive(
            self.block_actions_payload(user, post.channel, message, action_id, pressed[0].get("value")),
            wait_ack=wait_ack,
            timeout=timeout,
        )

    def block_actions_payload(
        self, user: str, channel: str, message: Mapping[str, Any], action_id: str, value: Any
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when *user* presses a button of *message*."""
        uid = self._resolve_user(user)
        cid = self._resolve_channel(channel)
        return {
            "type": "block_actions",
            "user": {
                "id": uid,
                "username": self._users[uid].name,
                "name": self._users[uid].name,
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": "fake-verification-token",
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": cid, "is_ephemeral": False},
            "trigger_id": f"{next(self._event_counter)}.{self.team_id}.fake",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": cid, "name": self._channels[cid].name if cid in self._channels else "directmessage"},
            "message": dict(message),
            "state": {"values": {}},
            "response_url": f"{self.base_url.rstrip('/')}/response_url/fake",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "emr-chatops:actions",
                    "text": {"type": "plain_text", "text": "button", "emoji": True},
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    def send_interactive(self, payload: Any, *, wait_ack: bool = True, timeout: float = 10.0) -> SentEvent:
        """Push an ``interactive`` envelope carrying *payload* (any JSON value: forged ones too)."""
        self.wait_until_connected(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": False,
        }
        return self._send_envelope(envelope, wait_ack=wait_ack, timeout=timeout)

    def _send_envelope(self, envelope: dict[str, Any], *, wait_ack: bool, timeout: float) -> SentEvent:
        """Push one Socket Mode envelope; record when it went out and (by default) wait for its ack."""
        assert self._loop is not None
        envelope_id = str(envelope["envelope_id"])
        push = asyncio.run_coroutine_threadsafe(self._push(json.dumps(envelope)), self._loop)
        sent_at = push.result(timeout)
        ack = self.wait_for_ack(envelope_id, timeout=timeout) if wait_ack else None
        sent = SentEvent(envelope_id, envelope, sent_at, ack)
        with self._cond:
            self._sent.append(sent)
        return sent

    def disconnect_clients(self, timeout: float = 5.0) -> None:
        """Close every Socket Mode connection from the server side (a client with auto-reconnect
        on will call apps.connections.open again)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._close_sockets(), self._loop).result(timeout)

    async def _close_sockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake slack closing the connection")

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        def find() -> Ack | None:
            return next((a for a in self._acks if a.envelope_id == envelope_id), None)

        return self._wait(find, timeout, lambda: f"the ack of envelope {envelope_id}")

    async def _push(self, frame: str) -> float:
        ws = self._sockets[-1]  # the newest connection, as Slack would pick one of them
        sent_at = time.monotonic()
        await ws.send_str(frame)
        return sent_at

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        hello = {
            "type": "hello",
            "num_connections": len(self._sockets) + 1,
            "debug_info": {"host": "fakeslack", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        with self._cond:
            self._sockets.append(ws)
            self._hellos += 1
            self._cond.notify_all()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(payload, dict) and "envelope_id" in payload:
                    with self._cond:
                        self._acks.append(Ack(payload["envelope_id"], payload, time.monotonic()))
                        self._cond.notify_all()
        finally:
            with self._cond:
                if ws in self._sockets:
                    self._sockets.remove(ws)
                self._cond.notify_all()
        return ws

    # ------------------------------------------------------------------ Web API

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        headers = dict(request.headers)
        with self._cond:
            response, extra_headers = self._dispatch(method, params, request.headers)
            self._calls.append(ApiCall(method, params, headers, response, time.monotonic()))
            self._cond.notify_all()
        return web.json_response(response, headers=extra_headers)

    def _dispatch(
        self, method: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        handler = self._METHODS.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}, {}
        token = params.get("token") or ""
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if method != "api.test":
            if not token:
                return {"ok": False, "error": "not_authed"}, {}
            if token != expected:
                return {"ok": False, "error": "invalid_auth"}, {}
        try:
            result = handler(self, params)
        except _SlackError as e:
            return {"ok": False, "error": e.error}, {}
        except Exception as e:  # a bug in the fake: make it visible to the client and the test
            return {"ok": False, "error": f"fakeslack_internal_error: {type(e).__name__}: {e}"}, {}
        # Real Slack reports the token's scopes on every bot-token response; the SlackV3 backend
        # reads them from auth.test to choose Socket Mode over the legacy RTM API.
        extra = {"x-oauth-scopes": ",".join(self.scopes)} if token == self.bot_token else {}
        return {"ok": True, **result}, extra

    # --- helpers

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts_counter):06d}"

    def _resolve_user(self, ref: str) -> str:
        ref = ref.strip().lstrip("@")
        if ref.startswith("<@") and ref.endswith(">"):
            ref = ref[2:-1]
        if ref in self._users:
            return ref
        for u in self._users.values():
            if u.name == ref:
                return u.id
        raise _SlackError("user_not_found")

    def _resolve_channel(self, ref: str) -> str:
        ref = str(ref).strip()
        if ref in self._channels or ref in self._ims:
            return ref
        name = ref.lstrip("#")
        for ch in self._channels.values():
            if ch.name == name:
                return ch.id
        raise _SlackError("channel_not_found")

    def _channel_obj(self, channel_id: str) -> dict[str, Any]:
        if channel_id in self._ims:
            return {
                "id": channel_id,
                "created": 1700000000,
                "is_im": True,
                "is_org_shared": False,
                "user": self._ims[channel_id],
                "is_user_deleted": False,
                "priority": 0,
            }
        ch = self._channels[channel_id]
        return {
            "id": ch.id,
            "name": ch.name,
            "name_normalized": ch.name,
            "is_channel": not ch.is_private,
            "is_group": ch.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": ch.is_private,
            "is_archived": False,
            "is_general": False,
            "is_member": ch.bot_member,
            "created": 1700000000,
            "creator": "U0ALICE",
            "topic": {"value": ch.topic, "creator": "", "last_set": 0},
            "purpose": {"value": ch.purpose, "creator": "", "last_set": 0},
            "num_members": len(ch.members) + (1 if ch.bot_member else 0),
        }

    def _members(self, channel_id: str) -> list[str]:
        if channel_id in self._ims:
            return [self._ims[channel_id], self.bot.id]
        ch = self._channels[channel_id]
        return [*ch.members, *([self.bot.id] if ch.bot_member else [])]

    # --- methods (run on the server thread with self._cond held)

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Fake Workspace",
            "user": self.bot.name,
            "team_id": self.team_id,
            "user_id": self.bot.id,
            "bot_id": self.bot.bot_id,
            "is_enterprise_install": False,
        }

    def _m_api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": {k: v for k, v in params.items() if k != "token"}}

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = params.get("user", "")
        if uid not in self._users:
            raise _SlackError("user_not_found")
        return {"user": self._users[uid].as_slack(self.team_id)}

    def _m_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "members": [u.as_slack(self.team_id) for u in self._users.values()],
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": ""},
        }

    def _m_users_set_presence(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _m_bots_info(self, params: dict[str, Any]) -> dict[str, Any]:
        for u in self._users.values():
            if u.bot_id and u.bot_id == params.get("bot"):
                return {
                    "bot": {
                        "id": u.bot_id,
                        "deleted": False,
                        "name": u.name,
                        "updated": 1700000000,
                        "app_id": self.app_id,
                        "user_id": u.id,
                        "icons": {},
                    }
                }
        raise _SlackError("bot_not_found")

    def _m_team_info(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("team", self.team_id) != self.team_id:
            raise _SlackError("team_not_found")
        return {
            "team": {
                "id": self.team_id,
                "name": "Fake Workspace",
                "domain": self.team_domain,
                "email_domain": "example.invalid",
                "icon": {},
            }
        }

    def _m_conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        types = set(str(params.get("types") or "public_channel").split(","))
        out = []  # nothing is archived in the fake, so exclude_archived changes nothing
        for ch in self._channels.values():
            kind = "private_channel" if ch.is_private else "public_channel"
            if kind in types:
                out.append(self._channel_obj(ch.id))
        if "im" in types:
            out.extend(self._channel_obj(cid) for cid in self._ims)
        page, cursor = self._page(out, params)
        return {"channels": page, "response_metadata": {"next_cursor": cursor}}

    def _page(self, items: list[_T], params: dict[str, Any]) -> tuple[list[_T], str]:
        """One page of a cursor-paginated list, as Slack pages it: ``limit`` (default 100,
        at most 1000) but never more than ``page_size`` items, and an opaque ``next_cursor``
        ("" on the last page). A bad cursor is ``invalid_cursor``."""
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _SlackError("invalid_limit") from None
        size = max(1, min(limit, 1000, self.page_size))
        cursor = str(params.get("cursor") or "")
        if cursor:
            try:
                start = int(base64.b64decode(cursor.encode()).decode().removeprefix("offset:"))
            except (ValueError, UnicodeDecodeError):
                raise _SlackError("invalid_cursor") from None
        else:
            start = 0
        end = start + size
        following = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
        return items[start:end], following

    def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = params.get("channel", "")
        if cid not in self._channels and cid not in self._ims:
            raise _SlackError("channel_not_found")
        return {"channel": self._channel_obj(cid)}

    def _m_conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = params.get("channel", "")
        if cid not in self._channels and cid not in self._ims:
            raise _SlackError("channel_not_found")
        page, cursor = self._page(self._members(cid), params)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _m_conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = params.get("channel", "")
        if cid not in self._channels:
            raise _SlackError("channel_not_found")
        ch = self._channels[cid]
        if ch.is_private:
            raise _SlackError("method_not_supported_for_channel_type")
        ch.bot_member = True
        return {"channel": self._channel_obj(cid)}

    def _m_conversations_leave(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = params.get("channel", "")
        if cid not in self._channels:
            raise _SlackError("channel_not_found")
        self._channels[cid].bot_member = False
        return {}

    def _m_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users", "")).split(",") if u]
        if len(users) != 1:
            raise _SlackError("not_supported_by_fake" if users else "users_list_not_supplied")
        uid = users[0]
        if uid not in self._users:
            raise _SlackError("user_not_found")
        if uid == self.bot.id:
            raise _SlackError("cannot_dm_bot")
        return {"channel": {"id": self.im_channel_id(uid)}}

    def _post_target(self, params: dict[str, Any]) -> str:
        cid = self._resolve_channel(str(params.get("channel", "")))
        if cid in self._channels and not self._channels[cid].bot_member:
            raise _SlackError("not_in_channel")
        return cid

    def _record_post(self, method: str, cid: str, params: dict[str, Any], ts: str) -> PostedMessage:
        post = PostedMessage(method, cid, str(params.get("text") or ""), ts, params, time.monotonic())
        self._posts.append(post)
        if method != "chat.postEphemeral":  # an ephemeral message is the clicker's alone, never stored
            message = {"type": "message", "user": self.bot.id, "text": post.text, "ts": ts}
            if post.blocks:
                message["blocks"] = post.blocks
            self._messages[(cid, ts)] = message
        return post

    def _m_chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._post_target(params)
        if not (params.get("text") or params.get("attachments") or params.get("blocks")):
            raise _SlackError("no_text")
        ts = self._next_ts()
        post = self._record_post("chat.postMessage", cid, params, ts)
        message = {
            "type": "message",
            "user": self.bot.id,
            "bot_id": self.bot.bot_id,
            "text": post.text,
            "ts": ts,
            "team": self.team_id,
        }
        if post.thread_ts:
            message["thread_ts"] = post.thread_ts
        return {"channel": cid, "ts": ts, "message": message}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._post_target(params)
        ts = str(params.get("ts", ""))
        if (cid, ts) not in self._messages:
            raise _SlackError("message_not_found")
        post = self._record_post("chat.update", cid, params, ts)
        return {"channel": cid, "ts": ts, "text": post.text, "message": self._messages[(cid, ts)]}

    def _m_chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve_channel(str(params.get("channel", "")))
        ts = str(params.get("ts", ""))
        if self._messages.pop((cid, ts), None) is None:
            raise _SlackError("message_not_found")
        return {"channel": cid, "ts": ts}

    def _m_chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._post_target(params)
        self._resolve_user(str(params.get("user") or ""))
        if not (params.get("text") or params.get("attachments") or params.get("blocks")):
            raise _SlackError("no_text")
        ts = self._next_ts()
        self._record_post("chat.postEphemeral", cid, params, ts)
        return {"message_ts": ts}

    def _m_reactions(self, params: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve_channel(str(params.get("channel", "")))
        if (cid, str(params.get("timestamp", ""))) not in self._messages:
            raise _SlackError("message_not_found")
        if not params.get("name"):
            raise _SlackError("invalid_name")
        return {}

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket_url}

    _METHODS: ClassVar[dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]]] = {
        "api.test": _m_api_test,
        "auth.test": _m_auth_test,
        "users.info": _m_users_info,
        "users.list": _m_users_list,
        "users.setPresence": _m_users_set_presence,
        "bots.info": _m_bots_info,
        "team.info": _m_team_info,
        "conversations.list": _m_conversations_list,
        "conversations.info": _m_conversations_info,
        "conversations.members": _m_conversations_members,
        "conversations.join": _m_conversations_join,
        "conversations.leave": _m_conversations_leave,
        "conversations.open": _m_conversations_open,
        "chat.postMessage": _m_chat_post_message,
        "chat.update": _m_chat_update,
        "chat.delete": _m_chat_delete,
        "chat.postEphemeral": _m_chat_post_ephemeral,
        "reactions.add": _m_reactions,
        "reactions.remove": _m_reactions,
        "apps.connections.open": _m_apps_connections_open,
    }


class _SlackError(LookupError):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


# ------------------------------------------------------------------ file uploads (files_upload_v2)
#
# slack_sdk's files_upload_v2 makes three requests: files.getUploadURLExternal (filename, length) →
# an upload URL and a file id; a POST of the bytes to that URL (served here by the fake itself, under
# /upload/<file id>); files.completeUploadExternal (the file ids and titles, and channel_id, which must
# be a channel id: the `<#C…|name>` string the SlackV3 backend's own upload sends is refused, as Slack
# refuses it). Kept in one block, apart from the class, so other additions to the fake merge cleanly.


@dataclass
class FakeUpload:
    """One file uploaded through the three steps; *channel* is set once the upload is completed."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    channel: str | None = None
    title: str | None = None


def _uploads(fake: FakeSlack) -> dict[str, FakeUpload]:
    if not hasattr(fake, "_uploads_by_id"):
        fake._uploads_by_id = {}  # type: ignore[attr-defined]
    uploads: dict[str, FakeUpload] = fake._uploads_by_id  # type: ignore[attr-defined]
    return uploads


def uploads(fake: FakeSlack) -> list[FakeUpload]:
    """The completed uploads, in order."""
    with fake._cond:
        return [u for u in _uploads(fake).values() if u.channel is not None]


def wait_for_upload(fake: FakeSlack, timeout: float = 10.0) -> FakeUpload:
    return fake._wait(lambda: next(iter(uploads(fake)), None), timeout, lambda: f"uploads so far: {uploads(fake)}")


def _m_files_get_upload_url_external(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    if "files:write" not in fake.scopes:
        raise _SlackError("missing_scope")
    filename = str(params.get("filename") or "")
    try:
        length = int(params.get("length") or 0)
    except ValueError:
        raise _SlackError("invalid_arguments") from None
    if not filename or length <= 0:
        raise _SlackError("invalid_arguments")
    uploads_ = _uploads(fake)
    file_id = f"F{len(uploads_) + 1:07d}"
    uploads_[file_id] = FakeUpload(file_id, filename, length)
    return {"upload_url": f"http://127.0.0.1:{fake.port}/upload/{file_id}", "file_id": file_id}


def _handle_upload(fake: FakeSlack) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        data = await request.read()
        with fake._cond:
            upload = _uploads(fake).get(request.match_info["file_id"])
            if upload is None:
                return web.Response(status=404, text="unknown upload")
            upload.data = data
            fake._cond.notify_all()
        return web.Response(text=f"OK - {len(data)}")

    return handle


def _m_files_complete_upload_external(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    files = params.get("files")
    if isinstance(files, str):
        files = json.loads(files)
    if not isinstance(files, list) or not files:
        raise _SlackError("invalid_arguments")
    channel = str(params.get("channel_id") or "")
    if channel and (channel not in fake._channels and channel not in fake._ims):
        raise _SlackError("channel_not_found")  # e.g. "<#C0GENERAL|general>"
    done = []
    for item in files:
        upload = _uploads(fake).get(str(item.get("id")))
        if upload is None or upload.data is None or len(upload.data) != upload.length:
            raise _SlackError("file_not_found")
        upload.title = item.get("title")
        upload.channel = channel or None
        done.append({"id": upload.file_id, "name": upload.filename, "title": upload.title})
    return {"files": done}


FakeSlack._METHODS["files.getUploadURLExternal"] = _m_files_get_upload_url_external
FakeSlack._METHODS["files.completeUploadExternal"] = _m_files_complete_upload_external
