"""Slack buttons (DESIGN §14) without Slack: which buttons a message carries, what a click means,
when it changes nothing, what the message says afterwards — and the listener's bookkeeping on a
stand-in Socket Mode client (exactly one listener; foreign and malformed envelopes ignored).

The whole round trip through the real errbot process is in tests/test_slack_buttons.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import MORNING, NOTIFY, Chat, Clock
from demo.emulator import Emulator, Seeded
from emrchatops.chat.base import PlainChat
from emrchatops.chat.slack import clicks as emr_slack
from emrchatops.chat.slack.blocks import fallback, kept_blocks, message_blocks, outcome, stale_text, updated_blocks
from emrchatops.chat.slack.chat import SlackChat
from emrchatops.chat.slack.markup import SlackMarkup
from emrchatops.chat.words import View
from emrchatops.domain.buttons import (
    KEEP,
    OVERTIME,
    RELEASE,
    STILL,
    Buttons,
    Click,
    buttons_for,
    moot_after,
    parse_click,
    stale,
)
from emrchatops.domain.rules import Policy
from emrchatops.domain.settings import from_mapping

CLUSTER = "j-3AB5CD7EF9GH1"
NOW = datetime(2026, 12, 1, 5, 31, tzinfo=UTC)  # 14:31 in Tokyo
DEADLINE = NOW + timedelta(minutes=4)
SETTINGS = from_mapping({"ROLE_ARN": "arn:aws:iam::210987654321:role/cre", "TIMEZONE": "Asia/Tokyo"})
SLACK = View(SETTINGS, Policy(), SlackMarkup())


def value(kind: str, user: str = "", cluster: str = CLUSTER) -> str:
    return buttons_for(kind, cluster, DEADLINE, user).value  # type: ignore[arg-type]


# -- which buttons, which commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "labels", "commands"),
    [
        ("idle", ["Keep it"], ["lock"]),
        ("end_of_day", ["Overtime 2 h", "Keep it"], ["overtime", "lock"]),
        ("overtime", ["Overtime 2 h", "Keep it"], ["overtime", "lock"]),
        ("reminder", ["Still using it", "Release"], ["lock", "unlock"]),
    ],
)
def test_each_message_carries_the_buttons_of_the_design_table(
    kind: str, labels: list[str], commands: list[str]
) -> None:
    user = "U0ALICE" if kind == "reminder" else ""
    buttons = buttons_for(kind, CLUSTER, DEADLINE, user)  # type: ignore[arg-type]
    assert [a.label for a in buttons.actions] == labels
    assert [a.command for a in buttons.actions] == commands
    blocks = message_blocks("⏳ text with `!emr lock` in it", buttons)
    assert [b["type"] for b in blocks] == ["section", "actions"]
    assert blocks[0]["text"] == {"type": "mrkdwn", "text": "⏳ text with `!emr lock` in it"}
    elements = blocks[1]["elements"]
    assert [e["text"]["text"] for e in elements] == labels
    assert all(e["type"] == "button" and e["action_id"].startswith("emr-chatops:") for e in elements)
    assert {parse_click(e["action_id"], e["value"]) for e in elements} == {
        Click(a, buttons) for a in buttons.actions
    }, "every button's click parses back to its own action and message"


# -- what a click may be believed to say --------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_id", "raw", "why"),
    [
        ("emr-chatops:nuke", value("idle"), "an action id we never made"),
        ("other-app:keep", value("idle"), "another app's action"),
        (None, value("idle"), "no action id"),
        ("emr-chatops:keep", None, "no value"),
        ("emr-chatops:keep", 42, "a value that is no string"),
        ("emr-chatops:keep", "", "an empty value"),
        ("emr-chatops:keep", "2|idle|" + CLUSTER + "|1764567060|", "another value version"),
        ("emr-chatops:keep", "1|idle|" + CLUSTER + "|1764567060", "a part missing"),
        ("emr-chatops:keep", "1|idle|" + CLUSTER + "|1764567060||", "a part too many"),
        ("emr-chatops:keep", "1|nap|" + CLUSTER + "|1764567060|", "an unknown message kind"),
        ("emr-chatops:keep", "1|idle|j-../../etc|1764567060|", "a cluster id of another shape"),
        ("emr-chatops:keep", "1|idle|analytics|1764567060|", "a cluster name instead of an id"),
        ("emr-chatops:keep", "1|idle|" + CLUSTER + "|soon|", "a deadline that is no number"),
        ("emr-chatops:keep", "1|idle|" + CLUSTER + "|1764567060|U0ALICE", "a holder on a warning"),
        ("emr-chatops:still", "1|reminder|" + CLUSTER + "|1764567060|", "a reminder without its holder"),
        ("emr-chatops:still", "1|reminder|" + CLUSTER + "|1764567060|<!here>", "a holder of another shape"),
        ("emr-chatops:release", value("idle"), "Release is no button of an idle warning"),
        ("emr-chatops:overtime", value("idle"), "Overtime is no button of an idle warning"),
        ("emr-chatops:overtime", value("reminder", "U0ALICE"), "Overtime is no button of a reminder"),
        ("emr-chatops:keep", value("idle") + "x" * 300, "a value far longer than ours"),
    ],
)
def test_a_click_we_did_not_make_is_not_believed(action_id: object, raw: object, why: str) -> None:
    assert parse_click(action_id, raw) is None, why


@given(st.text(max_size=80), st.text(max_size=300))
def test_any_action_id_and_value_parse_to_a_click_of_ours_or_to_nothing(action_id: str, raw: str) -> None:
    click = parse_click(action_id, raw)
    if click is not None:
        assert click.action.id == action_id and click.buttons.value == raw


# -- stale messages, and when the buttons go ------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "now", "expected"),
    [
        (True, NOW, None),
        (True, DEADLINE - timedelta(seconds=1), None),
        (True, DEADLINE, "passed"),
        (True, DEADLINE + timedelta(hours=5), "passed"),
        (False, NOW, "gone"),
        (False, DEADLINE + timedelta(hours=5), "gone"),
    ],
)
def test_a_click_on_a_message_whose_cluster_is_gone_or_whose_deadline_passed_is_stale(
    running: bool, now: datetime, expected: str | None
) -> None:
    click = Click(KEEP, buttons_for("idle", CLUSTER, DEADLINE))
    assert stale(click, running=running, now=now) == expected


@pytest.mark.parametrize(
    ("kind", "action", "clicker", "moot"),
    [
        ("idle", KEEP, "U0BOB", True),  # held now: the idle countdown is cancelled
        ("end_of_day", KEEP, "U0BOB", False),  # a hold does not stop the end of day
        ("end_of_day", OVERTIME, "U0BOB", True),  # overtime does
        ("overtime", OVERTIME, "U0BOB", True),
        ("overtime", KEEP, "U0BOB", False),
        ("reminder", STILL, "U0ALICE", True),  # the reminded holder confirmed
        ("reminder", RELEASE, "U0ALICE", True),  # or let go
        ("reminder", STILL, "U0BOB", False),  # bob took his own hold; alice's question stays open
    ],
)
def test_the_buttons_go_once_the_click_made_the_message_moot(kind: str, action: Any, clicker: str, moot: bool) -> None:
    user = "U0ALICE" if kind == "reminder" else ""
    assert moot_after(Click(action, buttons_for(kind, CLUSTER, DEADLINE, user)), clicker) is moot  # type: ignore[arg-type]


# -- the message after clicks ---------------------------------------------------------------------------------


def test_the_updated_message_keeps_its_words_adds_who_did_what_and_keeps_or_drops_the_buttons() -> None:
    buttons = buttons_for("end_of_day", CLUSTER, DEADLINE)
    text = "⏳ End of day: analytics will be terminated at 19:00. A holder can keep it longer with `!emr overtime [HH:MM]`."
    first = updated_blocks(
        kept_blocks(message_blocks(text, buttons)), outcome(SLACK, Click(KEEP, buttons), "U0BOB", "bob", NOW), buttons
    )
    assert [b["type"] for b in first] == ["section", "context", "actions"]
    assert first[1]["elements"][0]["text"] == "🔒 kept by <@U0BOB> at 14:31"
    until = NOW + timedelta(hours=6)
    line = outcome(SLACK, Click(OVERTIME, buttons), "U0BOB", "bob", NOW, until)
    second = updated_blocks(kept_blocks(first), line, None)
    assert [b["type"] for b in second] == ["section", "context", "context"], "moot: no buttons any more"
    assert (
        fallback(second) == f"{text}\n🔒 kept by <@U0BOB> at 14:31\n🌙 overtime until 20:31, asked by <@U0BOB> at 14:31"
    )
    assert len({b["block_id"] for b in second}) == 3, "block ids are unique"


def test_only_our_own_words_and_outcomes_are_kept_from_what_slack_sends_back() -> None:
    forged = [
        {"type": "section", "block_id": "emr-chatops:text", "text": {"type": "mrkdwn", "text": "ours"}},
        {"type": "section", "block_id": "someone-else", "text": {"type": "mrkdwn", "text": "<!channel>"}},
        {"type": "actions", "block_id": "emr-chatops:actions", "elements": []},
        {"type": "image", "block_id": "emr-chatops:done1"},
        "not a block",
    ]
    assert kept_blocks(forged) == [forged[0]]
    assert kept_blocks("nonsense") == [] and kept_blocks(None) == []


@pytest.mark.parametrize(
    ("kind", "why", "expected"),
    [
        ("idle", "gone", "✗ analytics (j-3AB5CD7EF9GH1) is no longer running: this button does nothing now."),
        ("idle", "passed", "✗ This warning is out of date: its deadline (14:35) has passed."),
        ("reminder", "passed", "✗ This reminder is out of date: it asked until 14:35."),
    ],
)
def test_a_stale_click_is_told_why_and_that_nothing_changed(kind: str, why: str, expected: str) -> None:
    user = "U0ALICE" if kind == "reminder" else ""
    click = Click(KEEP if kind == "idle" else STILL, buttons_for(kind, CLUSTER, DEADLINE, user))  # type: ignore[arg-type]
    text = stale_text(SLACK, click, why, f"analytics ({CLUSTER})")  # type: ignore[arg-type]
    assert text.startswith(expected) and text.endswith("Nothing was changed; see !emr status.")


# -- the listener on a Socket Mode client ----------------------------------------------------------------------


@dataclass
class Request:
    """What slack_sdk hands a socket_mode_request_listener."""

    type: str
    payload: Any
    envelope_id: str = "e-1"


class SocketClient:
    def __init__(self) -> None:
        self.socket_mode_request_listeners: list[Any] = [lambda client, request: None]  # the backend's own


class Backend:
    def __init__(self) -> None:
        self.slack_socket_mode = SocketClient()


def click_payload(action_id: str = KEEP.id, raw: str | None = None, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "channel": {"id": "C0NOTIFY", "name": "emr-alerts"},
        "container": {"type": "message", "message_ts": "1764567060.000001", "channel_id": "C0NOTIFY"},
        "message": {
            "ts": "1764567060.000001",
            "blocks": message_blocks("words", buttons_for("idle", CLUSTER, DEADLINE)),
        },
        "actions": [{"type": "button", "action_id": action_id, "value": raw if raw is not None else value("idle")}],
    }
    payload.update(changes)
    return payload


def test_exactly_one_listener_after_any_sequence_of_attach_and_detach() -> None:
    backend = Backend()
    client = backend.slack_socket_mode
    [own] = client.socket_mode_request_listeners
    emr_slack.attach(backend, lambda envelope: None)
    being_iterated = client.socket_mode_request_listeners
    emr_slack.attach(backend, lambda envelope: None)  # a reload whose deactivate never ran
    listeners = client.socket_mode_request_listeners
    assert len(emr_slack.ours(listeners)) == 1 and listeners[0] is own, "the backend's own listener stays first"
    assert len(being_iterated) == 2, "a list slack_sdk may be iterating is never changed under it"
    assert emr_slack.detach(backend) == 1 and client.socket_mode_request_listeners == [own]
    assert emr_slack.detach(backend) == 0
    assert emr_slack.attach(object(), lambda envelope: None) is None, "no Socket Mode client (another backend)"


def test_the_listener_hands_on_our_clicks_and_ignores_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[emr_slack.ClickEnvelope] = []
    listener = emr_slack.ClickListener(seen.append)
    listener(None, Request("interactive", click_payload()))
    [envelope] = seen
    assert (envelope.user, envelope.channel, envelope.ts) == ("U0ALICE", "C0NOTIFY", "1764567060.000001")
    assert envelope.click == Click(KEEP, buttons_for("idle", CLUSTER, DEADLINE))

    caplog.set_level(logging.INFO)
    ignored = [
        Request("events_api", {"event": {"type": "message"}}),
        Request("slash_commands", {"command": "/emr"}),
        Request("interactive", {"type": "view_submission"}),
        Request("interactive", "text"),
        Request("interactive", click_payload(actions=[{"action_id": "other-app:go", "value": "x"}])),
        Request("interactive", click_payload(actions="nope")),
    ]
    malformed = [
        Request("interactive", click_payload(action_id="emr-chatops:nuke")),
        Request("interactive", click_payload(raw="1|idle|j-NOPE|x|")),
        Request("interactive", click_payload(user={"id": "<!channel>"})),
        Request("interactive", click_payload(user=None)),
        Request("interactive", click_payload(channel=None, container=None)),
        Request("interactive", click_payload(container={"message_ts": "soon"}, message=None)),
    ]
    for request in ignored + malformed:
        listener(None, request)
    assert len(seen) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed click" in r.getMessage()]
    assert len(warnings) == len(malformed), "one WARNING line per malformed click of ours, none for the others"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failing_handler_is_logged_and_never_reaches_slack_sdk(caplog: pytest.LogCaptureFixture) -> None:
    def broken(envelope: emr_slack.ClickEnvelope) -> None:
        raise RuntimeError("boom")

    emr_slack.ClickListener(broken)(None, Request("interactive", click_payload()))  # does not raise
    assert "a click could not be handled" in caplog.text


def test_button_values_survive_a_round_trip_for_every_kind() -> None:
    for kind, user in (("idle", ""), ("end_of_day", ""), ("overtime", ""), ("reminder", "W0ALICE")):
        buttons = Buttons(kind, CLUSTER, DEADLINE, user)  # type: ignore[arg-type]
        for action in buttons.actions:
            assert parse_click(action.id, buttons.value) == Click(action, buttons)


def test_a_double_click_is_said_once() -> None:
    buttons = buttons_for("end_of_day", CLUSTER, DEADLINE)
    line = outcome(SLACK, Click(KEEP, buttons), "U0BOB", "bob", NOW)
    once = updated_blocks(kept_blocks(message_blocks("words", buttons)), line, buttons)
    twice = updated_blocks(kept_blocks(once), line, buttons)
    assert twice == once


# -- the warnings and reminders the poller posts --------------------------------------------------------------


@pytest.fixture
def on_slack(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The plugin told it talks to Slack; its Block Kit posts recorded as (to, text, blocks)."""
    posted: list[tuple[str, str, list[dict[str, Any]]]] = []
    slack_chat_on(chat.plugin, monkeypatch, lambda to, text, blocks: posted.append((str(to), text, blocks)))
    return posted


def slack_chat_on(plugin: Any, monkeypatch: pytest.MonkeyPatch, send_blocks: Any) -> SlackChat:
    """The plugin's chat made the Slack one, on the test backend, its Block Kit posts handed to *send_blocks*."""
    slack = SlackChat(plugin, plugin._bot)
    slack.clicks = emr_slack.Clicks(plugin)
    monkeypatch.setattr(slack, "_send_blocks", send_blocks)
    monkeypatch.setattr(plugin, "chat", slack)
    return slack


def test_on_slack_the_idle_warning_and_the_reminder_carry_their_buttons(
    chat: Chat, on_slack: list[tuple[str, str, list[dict[str, Any]]]], clock: Clock, seeded: Seeded
) -> None:
    chat.tick()  # 10:00: first seen
    clock.advance(minutes=26)
    chat.tick()
    [(to, text, blocks)] = on_slack
    assert to == NOTIFY and text.startswith(f"⏳ analytics ({seeded.managed_id}) has been idle since 10:00")
    [keep] = blocks[1]["elements"]
    click = parse_click(keep["action_id"], keep["value"])
    assert click == Click(KEEP, buttons_for("idle", seeded.managed_id, MORNING + timedelta(minutes=30)))

    chat.say("!emr lock", user="U0ALICE")  # a Slack user id, as holds have on Slack
    clock.advance(minutes=121)
    chat.tick()
    (to, text, blocks) = on_slack[-1]
    assert text.startswith("⏰ <@U0ALICE>, you hold analytics since 10:26") and "`!emr lock analytics` keeps" in text
    assert [e["text"]["text"] for e in blocks[1]["elements"]] == ["Still using it", "Release"]
    click = parse_click(blocks[1]["elements"][1]["action_id"], blocks[1]["elements"][1]["value"])
    assert click is not None and click.action == RELEASE
    assert (click.buttons.user, click.buttons.deadline) == ("U0ALICE", MORNING + timedelta(minutes=26 + 121 + 15))


def test_on_the_test_backend_warnings_stay_plain_text(chat: Chat, clock: Clock, seeded: Seeded) -> None:
    assert isinstance(chat.plugin.chat, PlainChat), "the test backend is not Slack: the plain chat, chosen once"
    chat.tick()
    clock.advance(minutes=26)
    chat.tick()
    assert chat.announced("⏳")


# -- clicks on the test backend: the race with a termination, and ACCESS_CONTROLS by room ---------------------


class Web:
    """The two Web API methods a click answers with, recorded (slack_web's stand-in)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def chat_update(self, **params: Any) -> None:
        self.calls.append(("chat.update", params))

    def chat_postEphemeral(self, **params: Any) -> None:
        self.calls.append(("chat.postEphemeral", params))

    def said(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]


class ClicksOnTheTestBackend(emr_slack.Clicks):
    """The click handler with the clicker built the test backend's way (no Slack identifiers there)."""

    @staticmethod
    def _message(backend: Any, user: str, channel: str, body: str) -> Any:
        import sys

        from errbot.backends.base import Message

        module = sys.modules[type(backend).__module__]
        room = module.TestRoom(channel, bot=backend)
        return Message(body, frm=module.TestOccupant(user, room), to=room)


def clicking(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> tuple[ClicksOnTheTestBackend, Web]:
    web = Web()
    monkeypatch.setattr(chat.testbot.bot, "slack_web", web, raising=False)
    return ClicksOnTheTestBackend(chat.plugin), web


def envelope(kind: str, cluster_id: str, deadline: datetime, action: Any = KEEP, user: str = "U0ALICE") -> Any:
    buttons = buttons_for(kind, cluster_id, deadline)  # type: ignore[arg-type]
    return emr_slack.ClickEnvelope(
        Click(action, buttons), user, "#emr-alerts", "1764567060.000001", message_blocks("⏳ words", buttons)
    )


def test_a_click_that_waits_for_a_termination_in_progress_is_told_the_cluster_is_gone(
    chat: Chat, monkeypatch: pytest.MonkeyPatch, clock: Clock, emulator: Emulator, seeded: Seeded
) -> None:
    import threading

    clicks, web = clicking(chat, monkeypatch)
    plugin = chat.plugin
    chat.tick()
    deadline = MORNING + timedelta(minutes=30)
    terminating, go_on = threading.Event(), threading.Event()
    terminate = plugin.adapter.terminate

    def slow_terminate(record: Any) -> None:  # the tick holds the state lock across the re-read and this call
        terminating.set()
        assert go_on.wait(10)
        terminate(record)

    monkeypatch.setattr(plugin.adapter, "terminate", slow_terminate)
    clock.set(deadline - timedelta(seconds=1))
    click = threading.Thread(target=clicks, args=(envelope("idle", seeded.managed_id, deadline),))
    tick = threading.Thread(target=chat.tick)
    clock.set(deadline)
    tick.start()
    assert terminating.wait(10)
    clock.set(deadline - timedelta(seconds=1))  # the click was made just before the deadline
    click.start()
    click.join(0.3)
    assert click.is_alive(), "the click waits for the termination in progress"
    go_on.set()
    tick.join(10)
    click.join(10)
    [answer] = web.said("chat.postEphemeral")
    assert answer["user"] == "U0ALICE"
    assert answer["text"].startswith(f"✗ analytics ({seeded.managed_id}) is no longer running")
    [update] = web.said("chat.update")
    assert update["blocks"][-1]["elements"][0]["text"] == f"🛑 analytics ({seeded.managed_id}) is no longer running."
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    assert plugin.get("state")["clusters"][seeded.managed_id]["holds"] == []


def test_a_click_that_lands_before_the_termination_keeps_the_cluster(
    chat: Chat, monkeypatch: pytest.MonkeyPatch, clock: Clock, emulator: Emulator, seeded: Seeded
) -> None:
    clicks, web = clicking(chat, monkeypatch)
    plugin = chat.plugin
    chat.tick()
    deadline = MORNING + timedelta(minutes=30)
    terminate_by_rule = plugin.service._terminate_by_rule

    def click_first(effect: Any) -> None:  # the tick decided (the cluster is doomed); the click takes the lock first
        clock.set(deadline - timedelta(seconds=1))
        clicks(envelope("idle", seeded.managed_id, deadline))
        clock.set(deadline)
        terminate_by_rule(effect)

    monkeypatch.setattr(plugin.service, "_terminate_by_rule", click_first)
    clock.set(deadline)
    chat.tick()
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
    [update] = web.said("chat.update")
    assert update["blocks"][-1]["elements"][0]["text"] == "🔒 kept by @U0ALICE at 10:29"
    assert web.said("chat.postEphemeral") == []
    assert [h["user"] for h in plugin.get("state")["clusters"][seeded.managed_id]["holds"]] == ["U0ALICE"]


def test_a_click_from_a_room_access_controls_refuses_changes_nothing(
    start_bot: Any, monkeypatch: pytest.MonkeyPatch, seeded: Seeded
) -> None:
    acl = {"EMR:*": {"allowrooms": ("#data",)}}
    bot = start_bot(extra_config={"ACCESS_CONTROLS": acl})
    clicks, web = clicking(bot, monkeypatch)
    deadline = MORNING + timedelta(minutes=30)
    bot.tick()
    clicks(envelope("idle", seeded.managed_id, deadline))  # in #emr-alerts: EMR commands only in #data
    [answer] = web.said("chat.postEphemeral")
    assert answer["text"].startswith("✗ You may not run `!emr lock analytics` here (the bot's ACCESS_CONTROLS)")
    assert web.said("chat.update") == []
    assert bot.plugin.get("state")["clusters"][seeded.managed_id]["holds"] == []


def test_a_termination_between_the_clicks_check_and_its_hold_refuses_the_hold(
    chat: Chat, monkeypatch: pytest.MonkeyPatch, clock: Clock, emulator: Emulator, seeded: Seeded
) -> None:
    clicks, web = clicking(chat, monkeypatch)
    plugin = chat.plugin
    chat.tick()
    deadline = MORNING + timedelta(minutes=30)
    target = plugin.service._target

    def then_the_tick(words: str, **kwargs: Any) -> Any:  # the click named its cluster; the rule fires now
        named = target(words, **kwargs)
        clock.set(deadline)
        chat.tick()
        assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
        return named

    monkeypatch.setattr(plugin.service, "_target", then_the_tick)
    clock.set(deadline - timedelta(seconds=1))
    clicks(envelope("idle", seeded.managed_id, deadline))
    [answer] = web.said("chat.postEphemeral")
    assert answer["text"] == f"✗ analytics ({seeded.managed_id}) is no longer running; see !emr status."
    [update] = web.said("chat.update")
    assert update["blocks"][-1]["elements"][0]["text"] == f"🛑 analytics ({seeded.managed_id}) is no longer running."
    assert plugin.get("state")["clusters"][seeded.managed_id]["holds"] == []


# -- buttons taken away when moot, without a click (the poller's sweep) ---------------------------------------


@pytest.fixture
def posted_on_slack(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> Web:
    """On 'Slack': Block Kit posts get a ts, and the Web API's chat.update is recorded."""
    plugin = chat.plugin
    stamps = iter(range(1, 1000))
    slack_chat_on(plugin, monkeypatch, lambda to, text, blocks: ("C0NOTIFY", f"1700000000.{next(stamps):06d}"))
    web = Web()
    monkeypatch.setattr(plugin._bot, "slack_web", web, raising=False)
    return web


def buttons_left(update: dict[str, Any]) -> list[str]:
    return [e["text"]["text"] for b in update["blocks"] if b.get("type") == "actions" for e in b["elements"]]


def test_an_idle_warning_loses_its_button_at_the_next_tick_once_someone_holds_the_cluster(
    chat: Chat, posted_on_slack: Web, clock: Clock, seeded: Seeded
) -> None:
    chat.tick()  # 10:00: first seen
    clock.advance(minutes=26)
    chat.tick()  # the idle warning, with Keep it
    assert posted_on_slack.said("chat.update") == []
    chat.say("!emr lock", user="alice")  # typed, not clicked
    clock.advance(seconds=30)
    chat.tick()
    [update] = posted_on_slack.said("chat.update")
    assert (update["channel"], update["ts"]) == ("C0NOTIFY", "1700000000.000001")
    assert buttons_left(update) == [] and "🔒 held by alice: the idle countdown is off" in update["text"]
    clock.advance(seconds=30)
    chat.tick()
    assert len(posted_on_slack.said("chat.update")) == 1  # once


def test_a_warning_loses_its_buttons_when_the_rule_terminates_the_cluster(
    chat: Chat, posted_on_slack: Web, clock: Clock, seeded: Seeded, emulator: Emulator
) -> None:
    chat.tick()
    clock.advance(minutes=26)
    chat.tick()  # the idle warning
    clock.advance(minutes=4, seconds=30)
    chat.tick()  # 10:30:30: terminated by the idle rule
    assert emulator.cluster_state(seeded.managed_id) == "TERMINATED"
    [update] = posted_on_slack.said("chat.update")
    assert buttons_left(update) == [] and f"🛑 analytics ({seeded.managed_id}) is no longer running." in update["text"]


def test_a_reminder_loses_its_buttons_when_the_holder_confirms_by_typing(
    chat: Chat, posted_on_slack: Web, clock: Clock, seeded: Seeded
) -> None:
    chat.say("!emr lock", user="U0ALICE")  # a Slack user id, as holds have on Slack
    chat.tick()
    clock.advance(minutes=121)
    chat.tick()  # the reminder, with Still using it · Release
    chat.say("!emr lock", user="U0ALICE")
    clock.advance(seconds=30)
    chat.tick()
    [update] = posted_on_slack.said("chat.update")
    assert buttons_left(update) == [] and "still uses it (confirmed at 12:01)" in update["text"]


def test_a_failed_update_is_not_retried_forever_and_raises_nothing(
    chat: Chat, posted_on_slack: Web, clock: Clock, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(**params: Any) -> None:
        posted_on_slack.calls.append(("chat.update", params))
        raise RuntimeError("message_not_found")

    posted_on_slack.chat_update = refuse  # type: ignore[method-assign]
    chat.tick()
    clock.advance(minutes=26)
    chat.tick()
    chat.say("!emr lock", user="alice")
    for _ in range(3):
        clock.advance(seconds=30)
        chat.tick()
    assert len(posted_on_slack.said("chat.update")) == 1  # tried once: the message may be gone
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _record(**fields: Any) -> Any:
    from emrchatops.domain.state import ClusterRecord

    return ClusterRecord(id=CLUSTER, name="analytics", state="WAITING", first_seen=NOW - timedelta(hours=1), **fields)


def test_moot_now_by_table() -> None:
    from emrchatops.domain.buttons import moot_now
    from emrchatops.domain.state import UNSEEN, Ending, Hold, Overtime

    deadline = NOW + timedelta(minutes=5)
    idle, eod = buttons_for("idle", CLUSTER, deadline), buttons_for("end_of_day", CLUSTER, deadline)
    reminder = buttons_for("reminder", CLUSTER, deadline, "U0BOB")
    asked = Hold("U0BOB", "bob", NOW - timedelta(hours=2), reminded_at=NOW - timedelta(minutes=10))
    answered = Hold("U0BOB", "bob", NOW - timedelta(hours=2), confirmed=NOW)
    night = Overtime(deadline + timedelta(hours=2), NOW.date(), "U0BOB")
    cases = [
        (idle, None, NOW, "gone"),
        (idle, _record(ending=Ending(NOW)), NOW, "gone"),
        (idle, _record(absent=UNSEEN), NOW, "gone"),
        (idle, _record(), deadline, "passed"),
        (idle, _record(), NOW, None),
        (idle, _record(holds=(answered,)), NOW, "held"),
        (eod, _record(holds=(answered,)), NOW, None),  # a hold does not stop the end of day
        (eod, _record(overtime=night), NOW, "overtime"),
        (eod, _record(overtime=Overtime(deadline, NOW.date(), "U0BOB")), NOW, None),  # not past it
        (reminder, _record(holds=(asked,)), NOW, None),
        (reminder, _record(holds=(answered,)), NOW, "answered"),
        (reminder, _record(), NOW, "answered"),  # released
    ]
    for buttons, record, now, expected in cases:
        assert moot_now(buttons, record, now) == expected, (buttons.kind, record, now)
