"""Slack text fidelity: what a person types is what the bot reads, keeps and shows, escaped once.

Slack delivers message text with ``&``, ``<`` and ``>`` escaped and with its own markup for
broadcasts, mentions, channels and links; the plugin turns that back into the typed text
(:func:`emrchatops.chat.slack.markup.typed_from_slack`) and escapes it again exactly once when it shows it
(:meth:`emrchatops.chat.words.View.inert`, :meth:`emrchatops.chat.words.View.named`).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchatops.chat.slack.chat import status_message
from emrchatops.chat.slack.markup import SlackMarkup, typed_from_slack
from emrchatops.chat.words import View
from emrchatops.domain.rules import Policy
from emrchatops.domain.settings import Settings
from emrchatops.domain.state import ClusterInfo, State
from fakeslack import FakeSlack

ARN = "arn:aws:iam::210987654321:role/cre"
NAMES = {"U0ALICE": "alice", "U0BOB": "bob"}


def name_of(user_id: str) -> str | None:
    return NAMES.get(user_id)


@pytest.mark.parametrize(
    ("delivered", "typed"),
    [
        ("a&lt;b &amp; c&gt;d", "a<b & c>d"),
        ("<!channel> now", "@channel now"),
        ("<!here> and <!everyone>", "@here and @everyone"),
        ("ask <@U0BOB>", "ask @bob"),
        ("ask <@U0ZED|zed>", "ask @zed"),  # Slack does not know a name: the label it sent
        ("ask <@U0ZED>", "ask @U0ZED"),  # nor a label: the id, which `--user` still matches
        ("<#C0DATA|data>", "#data"),
        ("<#C0DATA>", "#C0DATA"),
        ("<https://x.example/a?b=1&amp;c=2|the docs>", "the docs"),
        ("<https://x.example/a?b=1&amp;c=2>", "https://x.example/a?b=1&c=2"),
        ("<!subteam^S0OPS|@ops> please", "@ops please"),
        ("&amp;lt;!channel&amp;gt;", "&lt;!channel&gt;"),  # typed escapes stay as typed
        ("&lt;@U0BOB&gt;", "<@U0BOB>"),  # a typed '<@U0BOB>' is text, not a mention
        ('"my cluster" because', '"my cluster" because'),
        ("", ""),
    ],
)
def test_slack_markup_becomes_what_was_typed(delivered: str, typed: str) -> None:
    assert typed_from_slack(delivered, name_of) == typed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"ab &<>@#!|;lgtamp", "@bob", "#data", "@here", "&amp;"]), max_size=30).map("".join))
def test_typed_text_survives_the_round_trip_through_slack(typed: str) -> None:
    slack = FakeSlack()  # not started: its encoder only reads the users and channels
    assert typed_from_slack(slack.as_delivered(typed), name_of) == typed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"ab &<>@!:`", "&amp;", "&lt;", "@here", "<!channel>"]), max_size=30).map("".join))
def test_shown_text_is_escaped_exactly_once_and_never_pings(typed: str) -> None:
    shown = View(Settings(role_arn=ARN), Policy(), SlackMarkup()).inert(typed, limit=200)
    inner = shown[1:-1]
    assert "<" not in inner and ">" not in inner  # no Slack markup can survive
    assert "@" not in inner.replace("@\u2060", "")  # every @ is followed by a word joiner
    # Undo Slack's escaping once: the typed text (backticks made quotes) comes back.
    unescaped = inner.replace("@\u2060", "@").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped == typed.replace("`", "'")


def test_a_cluster_name_from_aws_is_escaped_on_slack_and_shown_as_is_elsewhere() -> None:
    cluster = ClusterInfo("j-NAME00000001", "<!channel> a&b", "WAITING")
    slack = View(Settings(role_arn=ARN), Policy(), SlackMarkup())
    plain = View(Settings(role_arn=ARN), Policy())
    assert slack.cluster(cluster) == "&lt;!channel&gt; a&amp;b (j-NAME00000001)"
    assert plain.cluster(cluster) == "<!channel> a&b (j-NAME00000001)"


def test_the_status_fallback_names_holders_without_pinging_them() -> None:
    from datetime import UTC, datetime

    from emrchatops.domain.rules import add_hold, observe

    now = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    cluster = ClusterInfo("j-FALL00000001", "analytics", "WAITING", created_at=now)
    policy = Policy()
    state = observe(State(), [cluster], now)
    state = add_hold(state, cluster.id, "U0ALICE", "alice", "report", now)
    record = state.clusters[cluster.id]
    view = View(Settings(role_arn=ARN), policy, SlackMarkup())
    message = status_message(view, state, record, cluster, now, None)
    [attachment] = message["attachments"]
    assert message["text"] == attachment["fallback"]
    assert message["text"].startswith("analytics (j-FALL00000001) WAITING, held by alice, next: ")
    assert "<@" not in message["text"]
    assert any(field["value"].startswith("<@U0ALICE>") for field in attachment["fields"])  # the card still mentions
