"""Slack for real: the real ``errbot`` executable, the project's config.py, the SlackV3 backend, the
loopback Slack fake (tests/fakeslack.py) and the AWS emulator, talking over loopback.

alice (a bot admin) and bob use ``#data``; the bot announces in ``#emr-alerts``. What is asserted
is what Slack would receive (the ``chat.postMessage`` payloads: channel, text, card fields and
colour, ``<@U…>`` mentions, escaped user text) and what AWS really did (the cluster's state in
moto).

Time is not moved here (the bot is another process), so the automatic warnings are made due at
once instead of waited for, with windows wide enough that no assertion depends on how long the
bot takes to start or to answer: in a fixed-offset zone where it is about noon (never near
midnight), the end of day is an hour ahead and WARN_MINUTES is 120, so the first poller tick is
inside the warning window and long before the end of day (unless starting takes an hour); the
overtime alice asks for is half an hour after the end of day, so its warning is due at once too;
IDLE_MINUTES is 600, so the idle rule stays out of the way. The first tick warns about the end of
day (no holder yet); after alice asks for overtime, the next tick warns that the overtime ends,
mentioning her. No termination by a rule is waited for; every wait has a deadline.

The last tests check the card's four colours on Errbot's test backend (the plugin told it talks
to Slack, its Slack posts recorded), where time can be moved to make a cluster idle or doomed.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, Chat, Clock
from demo.emulator import ACCOUNT_B, BOT_KEYS, EXTERNAL_ID, ROLE_ARN, Emulator, Seeded
from emrchatops.chat.slack.chat import SlackChat
from fakeslack import DEFAULT_CHANNELS, SLACK_API_URL_ENV, FakeChannel, FakeSlack, PostedMessage, wait_for_upload

ERRBOT = Path(sys.executable).with_name("errbot")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
DATA, NOTIFY = "C0DATA", "C0NOTIFY"  # the fake's #data and #emr-alerts
GREEN, BLUE, ORANGE, RED = "#2EB886", "#439FE0", "#DAA038", "#A30200"
# Typed by alice; Slack delivers it as "a&lt;b &amp; c&gt;d <!channel> <@U0BOB> *urgent* <!here>".
NASTY_REASON = "a<b & c>d @channel @bob *urgent* @here"
# Shown as typed, escaped exactly once, with no ping: a word joiner after each @.
INERT_REASON = "`a&lt;b &amp; c&gt;d @\u2060channel @\u2060bob *urgent* @\u2060here`"
# More channels than one page of conversations.list, #emr-alerts on a later page: Slack pages
# any workspace with more than about a hundred channels (the fake pages at 2 here).
FILLER_CHANNELS = tuple(FakeChannel(f"C0FILL{n:02d}", f"filler-{n:02d}", bot_member=n % 2 == 0) for n in range(5))
# The real-time windows (see the module docstring): LEAD + OVERTIME_AFTER must stay within WARN_MINUTES,
# and LEAD within IDLE_MINUTES, for both warnings to be due at the first tick and the end of day to come first.
LEAD = timedelta(minutes=60)  # from the fixture's start to the end of day
OVERTIME_AFTER = timedelta(minutes=30)  # alice's overtime, after the end of day
WARN_MINUTES = 120
IDLE_MINUTES = 600
STARTUP_TIMEOUT = 180  # seconds for the bot to start and post its first warning (a deadline, not a wait)


def noon_zone(now: datetime) -> ZoneInfo:
    """A fixed-offset zone where it is about noon now: the test's end of day is never near midnight."""
    hours = 12 - now.astimezone(UTC).hour  # -11 … +12
    return ZoneInfo("Etc/GMT" if hours == 0 else f"Etc/GMT{-hours:+d}")  # Etc/GMT-9 is UTC+9


class Bot:
    """The errbot subprocess and its fake Slack; every wait has a deadline and fails with the bot's log."""

    def __init__(
        self,
        slack: FakeSlack,
        proc: subprocess.Popen[bytes],
        data_dir: Path,
        out_file: Path,
        end_of_day: datetime,
        started: datetime,
    ) -> None:
        self.slack = slack
        self.proc = proc
        self.data_dir = data_dir
        self.logs = [out_file, data_dir / "errbot.log"]
        self.end_of_day = end_of_day
        self.started = started  # just after the cluster was seeded, before the bot started

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs if log.exists())

    def log_tail(self, lines: int = 120) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            out += [f"----- {log.name} (last {lines} lines) -----", *text[-lines:]]
        return "\n".join(out)

    def wait_post(
        self,
        predicate: Callable[[PostedMessage], bool],
        *,
        channel: str,
        after: float | None = None,
        timeout: float = 30,
    ) -> PostedMessage:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.slack.wait_for_post(predicate, channel=channel, after=after, timeout=0.25)
            except TimeoutError as error:
                if self.proc.poll() is not None:
                    pytest.fail(f"errbot exited with {self.proc.returncode}\n{self.log_tail()}")
                if time.monotonic() >= deadline:
                    pytest.fail(f"{error}\n{self.log_tail()}")

    def command(self, user: str, text: str, *, channel: str | None = "#data", card: bool = False) -> PostedMessage:
        """Send *text* as *user* (in *channel*, or a DM when None); the bot's first answer there."""
        sent = self.slack.send_message(user, channel, text)
        assert sent.ack is not None, "the backend did not ack the envelope"
        where = sent.event["channel"]
        if card:
            return self.wait_post(lambda p: bool(p.attachments), channel=where, after=sent.sent_at)
        return self.wait_post(lambda p: bool(p.text), channel=where, after=sent.sent_at)


def bot_env(slack: FakeSlack, emulator: Emulator, data_dir: Path, **emr: str) -> dict[str, str]:
    """The bot process's environment: this one without proxies and without any AWS_/EMR_/SLACK_/BOT_
    setting of the machine, then the fake Slack's tokens and URL, the emulator's account-A keys and the
    ``EMR_*`` settings (*emr*: more of them, by name without the prefix)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PROXY_VARS and not k.startswith(("AWS_", "EMR_", "SLACK_", "BOT_"))
    }
    env.update(
        {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_APP_TOKEN": slack.app_token,
            SLACK_API_URL_ENV: slack.base_url,
            "BOT_ADMINS": "U0ALICE",
            "EMR_CHATOPS_DATA_DIR": str(data_dir),
            "AWS_ACCESS_KEY_ID": BOT_KEYS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": BOT_KEYS["aws_secret_access_key"],
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "EMR_ROLE_ARN": ROLE_ARN,
            "EMR_EXTERNAL_ID": EXTERNAL_ID,
            "EMR_REGION": "ap-northeast-1",
            "EMR_ENDPOINT_URL": emulator.url,
            "EMR_NOTIFY_CHANNEL": "#emr-alerts",
            "EMR_POLL_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
            **{f"EMR_{key}": value for key, value in emr.items()},
        }
    )
    return env


@pytest.fixture
def seeded_now(emulator: Emulator) -> Seeded:
    """The emulator seeded on the real clock (the bot process lives on it too)."""
    emulator.reset()
    seeded = emulator.seed()
    emulator.reset_counts()
    return seeded


@pytest.fixture
def bot(tmp_path: Path, emulator: Emulator, seeded_now: Seeded) -> Iterator[Bot]:
    if not ERRBOT.exists():
        pytest.skip(f"errbot executable not found next to {sys.executable}")
    data_dir = tmp_path / "data"
    out_file = tmp_path / "errbot.out"
    started = datetime.now(UTC)
    zone = noon_zone(started)
    end_of_day = (started.astimezone(zone) + LEAD).replace(second=0, microsecond=0)
    # Both warnings due at the first tick; the end of day before the idle deadline.
    assert (LEAD + OVERTIME_AFTER).total_seconds() < WARN_MINUTES * 60 and LEAD.total_seconds() < IDLE_MINUTES * 60
    assert (end_of_day + OVERTIME_AFTER).date() == started.astimezone(zone).date(), (
        "the test's night must not cross midnight"
    )
    with FakeSlack(channels=(*FILLER_CHANNELS, *DEFAULT_CHANNELS), page_size=2) as slack:
        env = bot_env(
            slack,
            emulator,
            data_dir,
            TIMEZONE=zone.key,
            END_OF_DAY=f"{end_of_day:%H:%M}",
            WARN_MINUTES=str(WARN_MINUTES),
            IDLE_MINUTES=str(IDLE_MINUTES),
        )
        with out_file.open("wb") as out:
            proc = subprocess.Popen(
                [str(ERRBOT), "-c", str(ROOT / "config.py")], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        running = Bot(slack, proc, data_dir, out_file, end_of_day, started)
        try:
            yield running
        finally:
            running.stop()


def stored_sts_token(data_dir: Path) -> dict[str, str] | None:
    """The STS token the bot keeps in its storage (storage/sqlite.py: one database per plugin)."""
    with sqlite3.connect(data_dir / "EMR.sqlite3") as db:
        row = db.execute("SELECT value FROM kv WHERE key = 'sts'").fetchone()
    token: dict[str, str] | None = pickle.loads(row[0]) if row else None  # noqa: S301 - the bot's own file
    return token


@pytest.mark.slow
def test_the_team_runs_the_cluster_from_slack(
    bot: Bot,
    emulator: Emulator,
    seeded_now: Seeded,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    managed, unmanaged = seeded_now.managed_id, seeded_now.unmanaged_id
    eod = bot.end_of_day
    overtime = eod + OVERTIME_AFTER
    cluster = f"analytics ({managed})"
    try:
        # The first poller tick: the end of day is within WARN_MINUTES, nobody holds the cluster.
        warning = bot.wait_post(
            lambda p: p.text.startswith("⏳ End of day"), channel="#emr-alerts", timeout=STARTUP_TIMEOUT
        )
        assert warning.text == (
            f"⏳ End of day: {cluster} will be terminated at {eod:%H:%M}. "
            "A holder can keep it longer with `!emr overtime [HH:MM]`."
        )

        # !emr status is a card in the channel (not a thread), green: WAITING and nobody holds it.
        sent = bot.slack.send_message("alice", "#data", "!emr status")
        card = bot.wait_post(lambda p: bool(p.attachments), channel=DATA, after=sent.sent_at)
        round_trip = card.at - sent.sent_at
        assert card.thread_ts is None
        [attachment] = card.attachments
        # Notifications, search and screen readers get the essentials as plain text.
        essentials = f"{cluster} WAITING, not held, next: terminated at {eod:%H:%M} (end of day)"
        assert card.text == essentials and attachment["fallback"] == essentials
        assert attachment["title"] == cluster and "title_link" not in attachment  # no console for an emulator
        assert attachment["color"] == GREEN
        fields = {f["title"]: f["value"] for f in attachment["fields"]}
        card_fields = ["State", "Up for", "Holders", "Next action"]  # in this order; others (activity…) may join
        assert [title for title in fields if title in card_fields] == card_fields, list(fields)
        assert fields["State"] == "WAITING" and fields["Holders"] == "nobody"
        cost = fields["Cost"]  # the shipped table's prices are estimates, and the card says so
        assert re.fullmatch(r"≈ \$\d+\.\d\d so far \(estimated prices; 3 × m5\.xlarge, \d+m\)", cost), cost
        assert minutes_of(fields["Up for"]) <= (datetime.now(UTC) - bot.started) / timedelta(minutes=1) + 1
        assert fields["Next action"] == f"terminated at {eod:%H:%M} (end of day)"
        assert etl_not_in(card), "the unmanaged cluster is invisible"

        # A lock whose reason is full of Slack markup: shown, and inert.
        lock = bot.command("alice", f"!emr lock {NASTY_REASON}")
        assert lock.text.startswith(f"🔒 alice holds {cluster}. Holders: alice since ")
        assert INERT_REASON in lock.text
        assert_inert(lock)

        # The status card now: orange, alice mentioned as the holder, the reason inert there too.
        held = bot.command("alice", "!emr status", card=True)
        [attachment] = held.attachments
        fields = {f["title"]: f["value"] for f in attachment["fields"]}
        assert attachment["color"] == ORANGE
        assert fields["Holders"].startswith("<@U0ALICE> since ") and fields["Holders"].endswith(INERT_REASON)
        assert held.text.startswith(f"{cluster} WAITING, held by alice, next: ") and "<@" not in held.text
        assert_inert(held)

        # bob may not terminate alice's cluster, nor force it, nor release her hold: each refusal names her.
        refusal = bot.command("bob", "!emr terminate")
        assert refusal.text.startswith("✗ analytics is held by <@U0ALICE> since ")
        assert refusal.text.endswith(": ask them, or an admin can add --force.") and INERT_REASON in refusal.text
        assert_inert(refusal)
        forced = bot.command("bob", "!emr terminate --force")
        assert forced.text == "✗ Only admins can --force the termination of a cluster held by others (analytics)."
        released = bot.command("bob", "!emr unlock --user @alice")
        assert released.text == "✗ Only admins can release someone else's hold."
        assert emulator.cluster_state(managed) == "WAITING"
        # An admin may release someone's hold, named the Slack way (@bob arrives as <@U0BOB>); bob is told.
        assert bot.command("bob", "!emr lock").text.startswith(f"🔒 bob holds {cluster}.")
        admin = bot.command("alice", "!emr unlock --user @bob")
        assert admin.text.startswith(f"🔓 <@U0BOB> released {cluster} (released by alice). Still held by alice since ")

        # Overtime: announced, and the next tick warns that it ends, mentioning the holder.
        asked = bot.command("alice", f"!emr overtime {overtime:%H:%M}")
        assert asked.text == f"🌙 {cluster} stays past end of day until {overtime:%H:%M} (alice's overtime)."
        bot.wait_post(lambda p: p.text == asked.text, channel="#emr-alerts")
        ends = bot.wait_post(lambda p: p.text.startswith("⏳ Overtime ends"), channel="#emr-alerts")
        assert ends.text == f"⏳ Overtime ends: {cluster} will be terminated at {overtime:%H:%M}. Holders: <@U0ALICE>."

        # The doctor, in a DM: the whole chain, including the bot's membership of #emr-alerts.
        doctor = bot.command("alice", "!emr doctor", channel=None)
        assert doctor.channel == "D0ALICE"
        assert "✓ NOTIFY_CHANNEL #emr-alerts: the bot is a member" in doctor.text
        assert "✓ Clusters: 1 managed (analytics WAITING), 1 unmanaged (not touched)" in doctor.text
        assert doctor.text.endswith("All checks passed."), doctor.text
        # The report: the figures as text in the channel, and the chart uploaded there (files_upload_v2,
        # to the channel's id), through the fake's three steps; the bytes are a PNG of a sensible size.
        report = bot.command("alice", "!emr report 3")
        assert (
            report.text.startswith("Usage of the managed clusters, last 3 days") and "saved (estimate)" in report.text
        )
        upload = wait_for_upload(bot.slack, timeout=60)
        assert upload.channel == DATA and upload.filename == "emr-report-3d.png"
        assert upload.data is not None and upload.data.startswith(b"\x89PNG\r\n\x1a\n")
        assert 10_000 < len(upload.data) < 1_000_000, len(upload.data)
        assert [c.method for c in bot.slack.calls if c.method.startswith("files.")] == [
            "files.getUploadURLExternal",
            "files.completeUploadExternal",
        ]
        # A status card in a DM goes to the DM.
        dm_card = bot.command("bob", "!emr status", channel=None, card=True)
        assert dm_card.channel == "D0BOB" and dm_card.attachments[0]["title"] == cluster

        # alice lets go; bob terminates it; AWS really terminates it, and only it.
        unlocked = bot.command("alice", "!emr unlock")
        assert unlocked.text.startswith(f"🔓 You released {cluster}. Nobody holds it now: terminated at ")
        done = bot.command("bob", "!emr terminate")
        assert done.text == f"🛑 Terminating {cluster} at bob's request."
        assert emulator.cluster_state(managed) == "TERMINATED"
        assert emulator.cluster_state(unmanaged) == "WAITING"
        none = bot.command("bob", "!emr status")
        assert none.text == (
            f"No managed EMR cluster is running in account {ACCOUNT_B} (ap-northeast-1, tag emr-chatops=true)."
        )
        assert bot.slack.unknown_methods == []

        record_property("slack_status_round_trip_seconds", round(round_trip, 4))
        with capsys.disabled():
            print(f"\n[slack e2e] !emr status round trip (event sent -> card posted): {round_trip * 1000:.1f} ms")
        assert 0 < round_trip < 10
    except BaseException:
        print(bot.log_tail())  # shown with the failure
        raise
    finally:
        bot.stop()

    # Nothing secret went to Slack or the log: the AWS keys, the STS token, the Slack tokens.
    token = stored_sts_token(bot.data_dir)
    assert token is not None, "the bot keeps its STS token in its storage"
    secrets = [token["secret_key"], token["token"], BOT_KEYS["aws_secret_access_key"], bot.slack.app_token]
    posted = json.dumps([p.params for p in bot.slack.posts])
    log = bot.log_text()
    assert [s for s in secrets if s in posted or s in log] == []
    assert bot.slack.bot_token not in log


def minutes_of(duration: str) -> int:
    """``'7m'`` or ``'1h 05m'`` (the status card's "Up for") in minutes."""
    match = re.fullmatch(r"(?:(\d+)h )?(\d+)m", duration)
    assert match, f"not a duration: {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2))


def etl_not_in(post: PostedMessage) -> bool:
    return "etl-nightly" not in json.dumps(post.params)


def assert_inert(post: PostedMessage) -> None:
    """No Slack control sequence or bare @-ping from the reason in the payload (text and cards)."""
    payload = post.text + json.dumps(post.attachments, ensure_ascii=False)
    assert "<!channel>" not in payload and "<!here>" not in payload and "<@U0BOB>" not in payload
    assert "@here" not in payload and "@channel" not in payload  # a word joiner after each @
    assert "a&lt;b &amp; c&gt;d" in payload and "&amp;lt;" not in payload and "&amp;amp;" not in payload


# --------------------------------------------------------------------------- the card, colour by colour
# The four colours on Errbot's test backend, with the plugin's chat the Slack one and its
# Slack posts recorded: quicker than driving every state through the real process above.


Cards = queue.Queue[dict[str, Any]]


@pytest.fixture
def cards(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> Cards:
    sent: Cards = queue.Queue()
    plugin = chat.plugin
    slack = SlackChat(plugin, plugin._bot)  # the Slack chat on the test backend, its card posts recorded
    monkeypatch.setattr(slack, "_reply", lambda msg, payload: sent.put(payload))
    monkeypatch.setattr(plugin, "chat", slack)
    return sent


def status_card(chat: Chat, cards: Cards) -> dict[str, Any]:
    chat.testbot.push_message("!emr status")
    payload = cards.get(timeout=10)  # the command runs on errbot's thread pool
    assert cards.empty(), "one managed cluster, one card"
    [attachment] = payload["attachments"]
    assert payload["text"] == attachment["fallback"] and payload["text"].startswith(attachment["title"])
    return {
        "text": payload["text"],
        "title": attachment["title"],
        "link": attachment.get("title_link"),
        "color": attachment["color"],
        "body": attachment["text"],
        "fields": {field["title"]: field["value"] for field in attachment["fields"]},
    }


def test_a_waiting_cluster_nobody_holds_is_green(chat: Chat, cards: Cards, seeded: Seeded) -> None:
    card = status_card(chat, cards)
    assert card["color"] == GREEN and card["title"] == f"analytics ({seeded.managed_id})"
    assert card["fields"]["Next action"] == "terminated at 10:30 unless someone locks it (idle since 10:00)"
    assert card["link"] is None  # no console link for an emulator endpoint


def test_a_running_step_is_blue_and_says_it_is_not_idle(
    chat: Chat, cards: Cards, emulator: Emulator, seeded: Seeded
) -> None:
    emulator.set_cluster_state(seeded.managed_id, "RUNNING")
    card = status_card(chat, cards)
    assert card["color"] == BLUE and card["fields"]["State"] == "RUNNING"
    assert card["body"] == "Not idle while RUNNING: the idle clock starts when it is WAITING."


def test_a_held_cluster_is_orange_and_mentions_its_holders(chat: Chat, cards: Cards) -> None:
    chat.say("!emr lock <!here> report", user="alice")
    card = status_card(chat, cards)
    assert card["color"] == ORANGE
    assert card["fields"]["Holders"] == "<@alice> since 10:00: `@\u2060here report`"  # as typed, no ping
    assert card["text"].endswith("WAITING, held by alice, next: terminated at 19:00 (end of day)")


def test_a_cluster_being_terminated_is_red(
    chat: Chat, cards: Cards, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    # Termination protection keeps it doomed (and listed) after the idle rule tried.
    emulator.emr_b().set_termination_protection(JobFlowIds=[seeded.managed_id], TerminationProtected=True)
    chat.tick()
    clock.advance(minutes=31)
    chat.tick()
    card = status_card(chat, cards)
    assert card["color"] == RED
    assert card["fields"]["Next action"] == "being terminated now (nobody held it for 30 minutes)"


def test_on_slack_the_doctor_shows_a_cluster_name_as_it_is_and_it_pings_nobody(
    chat: Chat, emulator: Emulator, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.run_cluster("<!channel> a&b")  # anyone who may create clusters in account B chose this name
    monkeypatch.setattr(chat.plugin, "chat", SlackChat(chat.plugin, chat.plugin._bot))
    chat.say("!emr doctor", user="admin", timeout=60)
    [sent] = [body for _, body in chat.sent if body.startswith("EMR doctor")]  # as posted, before any rendering
    assert "&lt;!channel&gt; a&amp;b" in sent and "<!channel>" not in sent
