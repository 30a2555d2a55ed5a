"""The loopback Slack fake (tests/fakeslack.py), first on its own with slack_sdk's clients, then
driving the real ``errbot`` executable with the real SlackV3 backend over Web API + Socket Mode.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from fakeslack import (
    SLACK_API_URL_ENV,
    SLACK_API_URL_SEAM,
    FakeChannel,
    FakeSlack,
    PostedMessage,
    manifest_bot_scopes,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PLUGIN_DIR = REPO / "tests" / "fixtures" / "echo_plugin"
ERRBOT = Path(sys.executable).with_name("errbot")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk sends everything, loopback included, through HTTP(S)_PROXY when one is set.
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def slack(no_proxy_env: None) -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def web(slack: FakeSlack, token: str | None = None) -> WebClient:
    return WebClient(token=token or slack.bot_token, base_url=slack.base_url, timeout=5)


# --------------------------------------------------------------------------- the fake on its own


def test_auth_test_reports_the_manifest_scopes(slack: FakeSlack) -> None:
    resp = web(slack).auth_test()
    assert resp["ok"] and resp["user_id"] == "U0BOT" and resp["bot_id"] == "B0BOT"
    scopes = resp.headers["x-oauth-scopes"].split(",")
    assert scopes == list(manifest_bot_scopes())
    assert {"chat:write", "channels:history", "im:write", "users:read"} <= set(scopes)
    call = slack.calls_to("auth.test")[0]
    assert call.headers["Authorization"] == f"Bearer {slack.bot_token}"


def test_unknown_methods_and_bad_tokens_are_visible(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as unknown:
        web(slack).api_call("pins.add", json={"channel": "C0DATA"})
    assert unknown.value.response["error"] == "unknown_method"
    assert slack.unknown_methods == ["pins.add"]
    assert slack.calls_to("pins.add")[0].params == {"channel": "C0DATA"}

    with pytest.raises(SlackApiError) as bad:
        web(slack, token="xoxb-wrong").auth_test()
    assert bad.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as app_token_needed:
        web(slack).apps_connections_open(app_token=slack.bot_token)
    assert app_token_needed.value.response["error"] == "invalid_auth"


def test_directory_and_posting_rules(no_proxy_env: None) -> None:
    channels = [FakeChannel("C0DATA", "data", ["U0ALICE"]), FakeChannel("C0QUIET", "quiet", bot_member=False)]
    with FakeSlack(channels=channels) as slack:
        client = web(slack)
        assert client.users_info(user="U0BOB")["user"]["profile"]["display_name"] == "bob"
        names = {c["name"]: c["id"] for c in client.conversations_list(types="public_channel")["channels"]}
        assert names == {"data": "C0DATA", "quiet": "C0QUIET"}
        assert client.conversations_open(users="U0ALICE")["channel"]["id"] == "D0ALICE"
        assert client.conversations_info(channel="D0ALICE")["channel"]["user"] == "U0ALICE"

        with pytest.raises(SlackApiError) as not_in:
            client.chat_postMessage(channel="C0QUIET", text="hi")
        assert not_in.value.response["error"] == "not_in_channel"
        client.conversations_join(channel="C0QUIET")
        posted = client.chat_postMessage(channel="C0QUIET", text="hi")
        client.chat_update(channel="C0QUIET", ts=posted["ts"], text="hi again")
        client.reactions_add(channel="C0QUIET", timestamp=posted["ts"], name="eyes")
        with pytest.raises(SlackApiError) as nowhere:
            client.chat_postMessage(channel="C0NOPE", text="hi")
        assert nowhere.value.response["error"] == "channel_not_found"

        assert [(p.method, p.channel, p.text) for p in slack.posts] == [
            ("chat.postMessage", "C0QUIET", "hi"),
            ("chat.update", "C0QUIET", "hi again"),
        ]
        assert slack.wait_for_post(channel="#quiet", timeout=1).ts == posted["ts"]
        with pytest.raises(TimeoutError):
            slack.wait_for_post(channel="C0DATA", timeout=0.2)


def test_socket_mode_hello_event_and_ack_with_slack_sdk(slack: FakeSlack) -> None:
    received: list[SocketModeRequest] = []

    def on_request(client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client = SocketModeClient(app_token=slack.app_token, web_client=web(slack), auto_reconnect_enabled=False)
    client.socket_mode_request_listeners.append(on_request)
    try:
        client.connect()
        slack.wait_until_connected(timeout=5)
        sent = slack.send_message("bob", "#data", "hello there")
    finally:
        slack.disconnect_clients()  # closing from the server side first makes client.close() quick
        client.close()

    assert sent.ack is not None and sent.ack.envelope_id == sent.envelope_id
    assert sent.ack.at >= sent.sent_at
    assert [r.envelope_id for r in received] == [sent.envelope_id]
    event = received[0].payload["event"]
    assert received[0].type == "events_api"
    assert {k: event[k] for k in ("type", "user", "channel", "text", "team", "channel_type")} == {
        "type": "message",
        "user": "U0BOB",
        "channel": "C0DATA",
        "text": "hello there",
        "team": "T0FAKE",
        "channel_type": "channel",
    }
    assert event["ts"] == sent.ts
    assert slack.acks[0].envelope_id == sent.envelope_id


def test_a_click_on_a_button_as_the_message_now_stands_arrives_as_block_actions(slack: FakeSlack) -> None:
    received: list[SocketModeRequest] = []

    def on_request(client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    button = {"type": "button", "action_id": "go", "value": "v1", "text": {"type": "plain_text", "text": "Go"}}
    blocks = [{"type": "actions", "block_id": "b", "elements": [button]}]
    client = SocketModeClient(app_token=slack.app_token, web_client=web(slack), auto_reconnect_enabled=False)
    client.socket_mode_request_listeners.append(on_request)
    try:
        client.connect()
        slack.wait_until_connected(timeout=5)
        web(slack).chat_postMessage(channel="C0NOTIFY", text="fallback", blocks=blocks)
        post = slack.wait_for_post(channel="C0NOTIFY")
        sent = slack.click("alice", post, "go")
        with pytest.raises(LookupError):
            slack.click("alice", post, "stop")  # no such button
        web(slack).chat_update(channel="C0NOTIFY", ts=post.ts, text="done", blocks=[])
        with pytest.raises(LookupError):
            slack.click("alice", post, "go")  # the update took the button away
        with pytest.raises(SlackApiError, match="user_not_found"):
            web(slack).chat_postEphemeral(channel="C0NOTIFY", user="U0NOBODY", text="psst")
    finally:
        slack.disconnect_clients()
        client.close()

    assert sent.ack is not None and [r.type for r in received] == ["interactive"]
    payload = received[0].payload
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0ALICE"
    assert payload["container"]["message_ts"] == post.ts and payload["channel"]["id"] == "C0NOTIFY"
    assert payload["actions"][0]["action_id"] == "go" and payload["actions"][0]["value"] == "v1"
    assert payload["message"]["blocks"] == blocks
    assert slack.message("C0NOTIFY", post.ts)["text"] == "done"


# --------------------------------------------------------------------------- the real errbot process

CONFIG_TEMPLATE = """\
import logging
import os
{seam}
BACKEND = "SlackV3"
# errbot-backend-slackv3 registers an errbot.backend_plugins entry point, which errbot 6.2 already
# searches; the explicit dir (the installed package) is belt and braces.
BOT_EXTRA_BACKEND_DIR = {backend_dir!r}
BOT_IDENTITY = {{
    "token": os.environ["SLACK_BOT_TOKEN"],
    "app_token": os.environ["SLACK_APP_TOKEN"],
}}
BOT_ADMINS = ("U0ALICE",)  # SlackV3 ACLs match plain user ids (msg.frm.aclattr)
BOT_ADMINS_NOTIFICATIONS = ("<@U0ALICE>",)  # notifications need a buildable identifier
BOT_DATA_DIR = {data_dir!r}
BOT_EXTRA_PLUGIN_DIR = {plugin_dir!r}
STORAGE = "Memory"
CORE_PLUGINS = ("ACLs", "Help", "Utils")
AUTOINSTALL_DEPS = False
BOT_PREFIX = "!"
BOT_LOG_FILE = {log_file!r}
BOT_LOG_LEVEL = logging.DEBUG
"""


class RunningBot:
    """The errbot subprocess plus its fake Slack; waits fail fast, with the bot's log, if it dies."""

    def __init__(self, slack: FakeSlack, proc: subprocess.Popen[bytes], logs: list[Path]) -> None:
        self.slack = slack
        self.proc = proc
        self.logs = logs

    def log_tail(self, lines: int = 80) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            out.append(f"----- {log.name} (last {lines} lines) -----")
            out.extend(text[-lines:])
        return "\n".join(out)

    def wait_post(
        self,
        predicate: Callable[[PostedMessage], bool],
        *,
        channel: str | None = None,
        after: float | None = None,
        timeout: float = 20.0,
    ) -> PostedMessage:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.slack.wait_for_post(predicate, channel=channel, after=after, timeout=0.25)
            except TimeoutError as e:
                if self.proc.poll() is not None:
                    pytest.fail(f"errbot exited with {self.proc.returncode}\n{self.log_tail()}")
                if time.monotonic() >= deadline:
                    pytest.fail(f"{e}\nunknown methods: {self.slack.unknown_methods}\n{self.log_tail()}")


def _slackv3_dir() -> str:
    spec = importlib.util.find_spec("slackv3")
    assert spec is not None and spec.submodule_search_locations, "errbot-backend-slackv3 is not installed"
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBot]:
    if not ERRBOT.exists():
        pytest.skip(f"errbot executable not found next to {sys.executable}")
    workdir = tmp_path_factory.mktemp("errbot")
    data_dir = workdir / "data"
    data_dir.mkdir()
    log_file, out_file = workdir / "errbot.log", workdir / "errbot.out"
    config = workdir / "config.py"

    with FakeSlack() as slack:
        config.write_text(
            CONFIG_TEMPLATE.format(
                seam=SLACK_API_URL_SEAM,
                backend_dir=_slackv3_dir(),
                data_dir=str(data_dir),
                plugin_dir=str(FIXTURE_PLUGIN_DIR),
                log_file=str(log_file),
            )
        )
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env.update(
            {
                SLACK_API_URL_ENV: slack.base_url,
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_APP_TOKEN": slack.app_token,
                "PYTHONUNBUFFERED": "1",
            }
        )
        with out_file.open("wb") as out:
            proc = subprocess.Popen(
                [str(ERRBOT), "-c", str(config)], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        running = RunningBot(slack, proc, [out_file, log_file])
        try:
            # Every plugin is active once the fixture plugin's callback_connect has posted.
            ready = "fakeslack-fixture ready"
            running.wait_post(lambda p: p.text == ready, channel="#emr-alerts", timeout=25)
            yield running
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.mark.slow
def test_echo_in_channel_round_trip(
    bot: RunningBot, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    sent = bot.slack.send_message("alice", "#data", "!echo hello")
    assert sent.ack is not None, "the backend did not ack the envelope"
    assert sent.ack.envelope_id == sent.envelope_id

    post = bot.wait_post(lambda p: "hello" in p.text, channel="C0DATA", after=sent.sent_at, timeout=20)
    assert post.channel == "C0DATA"
    assert post.text == "hello"
    assert post.params.get("as_user") is True and post.params.get("link_names") is True
    assert "thread_ts" not in post.params

    rtt = post.at - sent.sent_at
    record_property("echo_round_trip_seconds", round(rtt, 4))
    with capsys.disabled():
        print(f"\n[fakeslack] !echo round trip (event sent -> chat.postMessage seen): {rtt * 1000:.1f} ms")
    assert 0 < rtt < 20


@pytest.mark.slow
def test_direct_message_echo(bot: RunningBot) -> None:
    sent = bot.slack.send_message("bob", None, "!echo psst")
    assert sent.event["channel"] == "D0BOB" and sent.event["channel_type"] == "im"
    post = bot.wait_post(lambda p: p.text == "psst", after=sent.sent_at)
    assert post.channel == "D0BOB"

    sent = bot.slack.send_message("bob", None, "!ids")
    post = bot.wait_post(lambda p: p.text.startswith("person="), channel="D0BOB", after=sent.sent_at)
    fields = dict(part.split("=", 1) for part in post.text.split(" ; "))
    assert {k: fields[k] for k in ("person", "str", "aclattr", "client", "room", "isgroup")} == {
        "person": "U0BOB",
        "str": "<@U0BOB>",
        "aclattr": "U0BOB",
        "client": "D0BOB",
        "room": "-",
        "isgroup": "False",
    }


@pytest.mark.slow
def test_identifier_formats(bot: RunningBot) -> None:
    sent = bot.slack.send_message("alice", "#data", "!ids")
    post = bot.wait_post(lambda p: p.text.startswith("person="), channel="C0DATA", after=sent.sent_at)
    fields = dict(part.split("=", 1) for part in post.text.split(" ; "))
    assert fields == {
        "person": "U0ALICE",
        "str": "#data/alice",
        "aclattr": "U0ALICE",
        "userid": "U0ALICE",
        "nick": "alice",
        "fullname": "Alice Analyst",
        "client": "C0DATA",
        "room": "<#C0DATA|data>",
        "roomid": "C0DATA",
        "to": "<#C0DATA|data>",
        "isgroup": "True",
    }


@pytest.mark.slow
def test_mention_survives_markdown(bot: RunningBot) -> None:
    sent = bot.slack.send_message("alice", "#data", "!mention")
    post = bot.wait_post(lambda p: "idle" in p.text, channel="C0DATA", after=sent.sent_at)
    assert post.text.startswith("<@U0ALICE> ")


@pytest.mark.slow
def test_send_card_becomes_a_legacy_attachment(bot: RunningBot) -> None:
    sent = bot.slack.send_message("alice", "#data", "!card cluster is WAITING")
    post = bot.wait_post(lambda p: bool(p.attachments), channel="C0DATA", after=sent.sent_at)
    assert post.text == ""
    # send_card(in_reply_to=msg) makes the card a thread reply to the command.
    assert post.thread_ts == sent.ts
    assert (post.params["as_user"], post.params["link_names"]) == ("true", "1")
    assert post.attachments == [
        {
            "pretext": "EMR cluster status",
            "title": "j-FAKECLUSTER",
            "title_link": "https://console.aws.amazon.com/emr/",
            "color": "#008000",
            "fields": [
                {"title": "State", "value": "WAITING", "short": True},
                {"title": "Idle", "value": "42 min", "short": True},
            ],
            "text": "cluster is WAITING",
        }
    ]


@pytest.mark.slow
def test_send_to_channel_by_name(bot: RunningBot) -> None:
    sent = bot.slack.send_message("alice", "#data", "!notify cluster j-FAKE terminated")
    post = bot.wait_post(lambda p: "terminated" in p.text, channel="#emr-alerts", after=sent.sent_at)
    assert post.channel == "C0NOTIFY"
    bot.wait_post(lambda p: p.text == "sent to #emr-alerts", channel="C0DATA", after=sent.sent_at)


@pytest.mark.slow
def test_bot_reconnects_after_the_socket_is_dropped(bot: RunningBot) -> None:
    # Slack drops Socket Mode connections routinely; slack_sdk must reconnect and events flow on.
    hellos, dropped_at = bot.slack.hellos_sent, time.monotonic()
    bot.slack.disconnect_clients()
    bot.slack.wait_for_call("apps.connections.open", lambda c: c.at > dropped_at, timeout=15)
    bot.slack.wait_until_connected(timeout=15, hellos_more_than=hellos)
    sent = bot.slack.send_message("alice", "#data", "!echo still here")
    bot.wait_post(lambda p: p.text == "still here", channel="C0DATA", after=sent.sent_at)


@pytest.mark.slow
def test_backend_needs_no_method_the_fake_lacks(bot: RunningBot) -> None:
    methods = {c.method for c in bot.slack.calls}
    assert {"auth.test", "apps.connections.open", "users.info", "conversations.info"} <= methods
    assert bot.slack.unknown_methods == []
    assert all(a.envelope_id in {s.envelope_id for s in bot.slack.sent_events} for a in bot.slack.acks)
