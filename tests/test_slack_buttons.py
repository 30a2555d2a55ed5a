"""Slack buttons for real (DESIGN §14): the real ``errbot`` process on the project's config.py with the
SlackV3 backend, the loopback Slack fake delivering ``interactive`` envelopes, and the AWS emulator.

What is asserted is what Slack receives (``chat.postMessage`` with blocks and a text fallback,
``chat.update`` of the clicked message, ``chat.postEphemeral`` to the clicker), what the bot stored
(its SQLite storage, read beside it) and what AWS really did (the cluster's state in moto).

Two managed clusters: analytics (warnings) and reports (bob's forgotten hold: its reminder).
The bot's clock cannot be moved (it is another process), so the deadlines are put where the test
needs them: the bot's storage is seeded with the clusters first seen 11 hours ago and bob's hold on
reports taken 3 hours ago (his reminder is due at the first tick), so analytics' idle clock
counts from the cluster's ready time (EMR's ReadyDateTime), which the emulator sets; an idle
deadline a few seconds ahead is then a real deadline the test can see pass. The end of day is an
hour ahead with WARN_MINUTES 120, as in tests/test_slack_e2e.py, so its warning is posted at the
first tick.

The bot's config is the project's config.py run by a two-line wrapper that adds one ACCESS_CONTROLS
rule (``EMR:emr_lock`` for alice and bob only): carol may not `!emr lock`, so she may not click
"Keep it" either.
"""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_slack_e2e import ERRBOT, Bot, bot_env, noon_zone

from conftest import ROOT
from demo.emulator import BOT_KEYS, Emulator, Seeded
from emrchatops.domain.state import ClusterRecord, Hold, State
from fakeslack import DEFAULT_USERS, FakeSlack, FakeUser, PostedMessage
from tests._storage_writer import load_storage_plugin

NOTIFY, DATA = "C0NOTIFY", "C0DATA"
KEEP, OVERTIME = "emr-chatops:keep", "emr-chatops:overtime"
LEAD = timedelta(minutes=60)  # the end of day, from the start
WARN_MINUTES, IDLE_MINUTES = 120, 600
IDLE_AHEAD = timedelta(seconds=6)  # the idle deadline, from the moment the test sets it: room for one click
STARTUP_TIMEOUT = 180
CAROL = FakeUser("U0CAROL", "carol", "Carol Curious")
CONFIG = """\
import runpy
globals().update({{k: v for k, v in runpy.run_path({config!r}).items() if k.isupper()}})
ACCESS_CONTROLS = {{"EMR:emr_lock": {{"allowusers": ("U0ALICE", "U0BOB")}}, **ACCESS_CONTROLS}}
"""


@pytest.fixture
def seeded_now(emulator: Emulator) -> Seeded:
    """analytics (the managed id) and reports, managed; etl-nightly, unmanaged."""
    emulator.reset()
    seeded = emulator.seed(managed_names=("analytics", "reports"))
    emulator.reset_counts()
    return seeded


def cluster_id(emulator: Emulator, name: str) -> str:
    clusters = emulator.emr_b().list_clusters(ClusterStates=["WAITING"])["Clusters"]
    [found] = [c["Id"] for c in clusters if c["Name"] == name]
    return str(found)


@pytest.fixture
def bot(tmp_path: Path, emulator: Emulator, seeded_now: Seeded) -> Iterator[Bot]:
    if not ERRBOT.exists():
        pytest.skip(f"errbot executable not found next to {sys.executable}")
    data_dir = tmp_path / "data"
    out_file = tmp_path / "errbot.out"
    config = tmp_path / "config.py"
    config.write_text(CONFIG.format(config=str(ROOT / "config.py")))
    started = datetime.now(UTC)
    zone = noon_zone(started)
    end_of_day = (started.astimezone(zone) + LEAD).replace(second=0, microsecond=0)
    seed_state(
        data_dir,
        seeded_now.managed_id,
        cluster_id(emulator, "reports"),
        first_seen=started - timedelta(hours=11),
        bob_since=started - timedelta(hours=3),
    )
    with FakeSlack(users=(*DEFAULT_USERS, CAROL)) as slack:
        env = bot_env(
            slack,
            emulator,
            data_dir,
            TIMEZONE=zone.key,
            END_OF_DAY=f"{end_of_day:%H:%M}",
            WARN_MINUTES=str(WARN_MINUTES),
            IDLE_MINUTES=str(IDLE_MINUTES),
            ACTIVITY="off",
        )
        with out_file.open("wb") as out:
            proc = subprocess.Popen(
                [str(ERRBOT), "-c", str(config)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        running = Bot(slack, proc, data_dir, out_file, end_of_day, started)
        try:
            yield running
        finally:
            running.stop()


def seed_state(data_dir: Path, analytics: str, reports: str, *, first_seen: datetime, bob_since: datetime) -> None:
    """The bot's storage before it starts: it has known both clusters since *first_seen*, and bob has held
    reports since *bob_since* without confirming (his hold reminder is due at the first tick)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    records = {
        analytics: ClusterRecord(id=analytics, name="analytics", state="WAITING", first_seen=first_seen),
        reports: ClusterRecord(
            id=reports,
            name="reports",
            state="WAITING",
            first_seen=first_seen,
            holds=(Hold(user="U0BOB", name="bob", since=bob_since),),
        ),
    }
    store = load_storage_plugin("SQLite", data_dir).open("EMR")
    try:
        store.set("state", State(clusters=records).to_dict())
    finally:
        store.close()


def stored_state(data_dir: Path) -> dict[str, Any]:
    """The state the bot has stored (it writes through before it answers)."""
    with sqlite3.connect(data_dir / "EMR.sqlite3") as db:
        row = db.execute("SELECT value FROM kv WHERE key = 'state'").fetchone()
    state: dict[str, Any] = pickle.loads(row[0])  # noqa: S301 - the bot's own file
    return state


def holds_taken(data_dir: Path, cluster: str = "analytics") -> list[str]:
    """Who took or confirmed a hold on *cluster*, in order (the history's `hold` events)."""
    return [e["who"] for e in stored_state(data_dir)["history"] if e["kind"] == "hold" and e["name"] == cluster]


def labels(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def context_lines(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


@pytest.mark.slow
def test_buttons_act_for_the_person_who_clicks(
    bot: Bot,
    emulator: Emulator,
    seeded_now: Seeded,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    slack, managed = bot.slack, seeded_now.managed_id
    cluster = f"analytics ({managed})"
    eod = bot.end_of_day

    def ephemeral(user: str, after: float) -> PostedMessage:
        return wait_for(bot, lambda p: p.params.get("user") == user, method="chat.postEphemeral", after=after)

    def updates(ts: str) -> list[PostedMessage]:
        return [p for p in slack.posts if p.method == "chat.update" and p.ts == ts]

    try:
        # The first tick: the end-of-day warning, with its two buttons and its words as the text fallback.
        warning = bot.wait_post(
            lambda p: p.text.startswith(f"⏳ End of day: {cluster}"), channel=NOTIFY, timeout=STARTUP_TIMEOUT
        )
        assert warning.text == (
            f"⏳ End of day: {cluster} will be terminated at {eod:%H:%M}. "
            "A holder can keep it longer with `!emr overtime [HH:MM]`."
        )
        assert [b["type"] for b in warning.blocks] == ["section", "actions"]
        assert warning.blocks[0]["text"]["text"] == warning.text
        assert labels(warning.blocks) == ["Overtime 2 h", "Keep it"]

        # bob holds nothing: his "Overtime 2 h" is refused to him alone, with the command's words; nothing changes.
        click = slack.click("bob", warning, OVERTIME)
        refusal = ephemeral("U0BOB", click.sent_at)
        assert refusal.text == "✗ Only holders can ask for overtime: `!emr lock analytics` first."
        # carol may not `!emr lock` (ACCESS_CONTROLS): she may not click "Keep it" either.
        click = slack.click("carol", warning, KEEP)
        denied = ephemeral("U0CAROL", click.sent_at)
        assert denied.text.startswith("✗ You may not run `!emr lock analytics` here (the bot's ACCESS_CONTROLS)")
        record = stored_state(bot.data_dir)["clusters"][managed]
        assert record["holds"] == [] and record["overtime"] is None
        assert updates(warning.ts) == [] and labels(slack.message(NOTIFY, warning.ts)["blocks"]) == labels(
            warning.blocks
        )

        # bob's forgotten hold on reports: the reminder asks him, with "Still using it" and "Release".
        reports = cluster_id(emulator, "reports")
        reminder = bot.wait_post(lambda p: p.text.startswith("⏰ <@U0BOB>, you hold reports"), channel=NOTIFY)
        assert "`!emr lock reports` keeps your hold; otherwise it ends at " in reminder.text
        assert labels(reminder.blocks) == ["Still using it", "Release"]
        # alice holds nothing there: her "Release" is refused as `!emr unlock reports` would be.
        click = slack.click("alice", reminder, "emr-chatops:release")
        assert ephemeral("U0ALICE", click.sent_at).text.startswith("✗ You don't hold reports; holders: bob since ")
        # bob still uses it: his hold is confirmed, the reminder withdrawn, the buttons gone.
        click = slack.click("bob", reminder, "emr-chatops:still")
        confirmed = wait_for(bot, lambda p: p.ts == reminder.ts, method="chat.update", after=click.sent_at)
        assert context_lines(confirmed.params["blocks"])[0].startswith("🔒 still used: <@U0BOB> confirmed the hold at ")
        assert labels(confirmed.params["blocks"]) == []
        [hold] = stored_state(bot.data_dir)["clusters"][reports]["holds"]
        assert hold["user"] == "U0BOB" and hold["reminded_at"] is None and hold["confirmed"] is not None
        assert holds_taken(bot.data_dir, "reports") == ["bob"]

        # The idle deadline, seconds ahead: its warning comes with "Keep it"; alice's click keeps the cluster.
        deadline = datetime.now(UTC) + IDLE_AHEAD
        emulator.set_ready_time(managed, deadline - timedelta(minutes=IDLE_MINUTES))
        idle = bot.wait_post(lambda p: p.text.startswith(f"⏳ {cluster} has been idle"), channel=NOTIFY)
        assert "unless someone says `!emr lock`" in idle.text, "the fallback keeps the command hint"
        assert labels(idle.blocks) == ["Keep it"]
        local = eod.tzinfo
        minute_before = f"{datetime.now(UTC).astimezone(local):%H:%M}"
        click = slack.click("alice", idle, KEEP)
        kept = wait_for(bot, lambda p: p.ts == idle.ts, method="chat.update", after=click.sent_at)
        round_trip = kept.at - click.sent_at
        assert datetime.now(UTC) < deadline, "the click landed before the deadline (else IDLE_AHEAD is too short)"
        clicked_at = kept.params["blocks"]  # the message as updated
        minutes = {minute_before, f"{datetime.now(UTC).astimezone(local):%H:%M}"}  # the click's minute
        assert context_lines(clicked_at) in ([f"🔒 kept by <@U0ALICE> at {m}"] for m in minutes), clicked_at
        assert labels(clicked_at) == [], "the warning passed: no buttons"
        assert kept.text.startswith(idle.text) and "🔒 kept by <@U0ALICE>" in kept.text, "a text fallback"
        assert holds_taken(bot.data_dir) == ["alice"]
        # Past the deadline, ticks later: the cluster is still up.
        time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 1.5)
        assert emulator.cluster_state(managed) == "WAITING"
        assert not [p for p in slack.posts if p.text.startswith("🛑")]

        # A late second click on the idle warning (a client that still shows the button): out of date.
        late = slack.block_actions_payload(
            "alice",
            NOTIFY,
            {**idle.params, "ts": idle.ts, "blocks": idle.blocks},
            KEEP,
            idle.blocks[1]["elements"][0]["value"],
        )
        sent = slack.send_interactive(late)
        assert ephemeral("U0ALICE", sent.sent_at).text.startswith("✗ This warning is out of date: its deadline (")
        assert holds_taken(bot.data_dir) == ["alice"] and len(updates(idle.ts)) == 1

        # Reload, deactivate, activate: still exactly one listener — one click, one hold, one update.
        for command, answer in (("reload", "reloaded"), ("deactivate", "deactivated"), ("activate", "activated")):
            reply = bot.command("alice", f"!plugin {command} EMR", channel=None)
            assert answer in reply.text, reply.text
            if command == "deactivate":  # a click now reaches no plugin: the backend acks it, nothing else happens
                slack.click("bob", warning, KEEP)
        click = slack.click("bob", warning, KEEP)
        bob_kept = wait_for(bot, lambda p: p.ts == warning.ts, method="chat.update", after=click.sent_at)
        time.sleep(1.0)  # a second listener would act right after the first, on the same worker thread
        assert holds_taken(bot.data_dir) == ["alice", "bob"]
        assert len(updates(warning.ts)) == 1
        to_bob = [p for p in slack.posts if p.method == "chat.postEphemeral" and p.params.get("user") == "U0BOB"]
        assert to_bob == [refusal], "the click while deactivated did nothing"
        assert context_lines(bob_kept.params["blocks"])[-1].startswith("🔒 kept by <@U0BOB> at ")
        assert labels(bob_kept.params["blocks"]) == ["Overtime 2 h", "Keep it"], "a hold does not stop the end of day"

        # Forged clicks: ignored, one WARNING each when they claim to be ours, no ERROR.
        message = slack.message(NOTIFY, warning.ts)
        forged = [
            slack.block_actions_payload("bob", NOTIFY, message, "emr-chatops:terminate", "1|idle|" + managed + "|1|"),
            {"type": "block_actions", "actions": [{"action_id": KEEP, "value": "garbage"}]},
            slack.block_actions_payload("bob", NOTIFY, message, "another-app:go", "x"),
            "not an object",
        ]
        for payload in forged:
            slack.send_interactive(payload)
        wait_for_log(bot, "ignored a malformed click", count=2)

        # The cluster is terminated: the poller takes the end-of-day warning's buttons away (the warning
        # was posted before the reloads: the messages to watch are kept in storage).
        shown_to_bob = slack.message(NOTIFY, warning.ts)  # as a client that has not refreshed still shows it
        [keep] = [e for b in shown_to_bob["blocks"] if b["type"] == "actions" for e in b["elements"]][1:]
        done = bot.command("alice", "!emr terminate analytics --force")
        assert done.text.startswith(f"🛑 Terminating {cluster} at alice's request.")
        swept = wait_for(bot, lambda p: p.ts == warning.ts, method="chat.update", after=done.at)
        assert context_lines(swept.params["blocks"])[-1] == f"🛑 {cluster} is no longer running."
        assert labels(swept.params["blocks"]) == [] and labels(slack.message(NOTIFY, warning.ts)["blocks"]) == []
        # A click from that client then says the cluster is gone and changes nothing.
        payload = slack.block_actions_payload("bob", NOTIFY, shown_to_bob, keep["action_id"], keep["value"])
        click = slack.send_interactive(payload)
        gone = ephemeral("U0BOB", click.sent_at)
        assert gone.text.startswith(f"✗ {cluster} is no longer running: this button does nothing now.")
        last = wait_for(bot, lambda p: p.ts == warning.ts, method="chat.update", after=click.sent_at)
        assert context_lines(last.params["blocks"]).count(f"🛑 {cluster} is no longer running.") == 1  # said once
        assert labels(last.params["blocks"]) == []
        assert holds_taken(bot.data_dir) == ["alice", "bob"]
        assert emulator.cluster_state(managed) == "TERMINATED"
        assert slack.unknown_methods == []
        # The backend acknowledged every envelope, clicks included, once; the plugin acknowledged none.
        acked = Counter(ack.envelope_id for ack in slack.acks)
        assert set(acked.values()) == {1} and {e.envelope_id for e in slack.sent_events} <= set(acked)
        assert not re.search(r"\bERROR\b|Traceback", bot.log_text()), bot.log_tail()

        record_property("slack_click_round_trip_seconds", round(round_trip, 4))
        with capsys.disabled():
            print(f"\n[slack e2e] button click round trip (click sent -> chat.update): {round_trip * 1000:.1f} ms")
        assert 0 < round_trip < 5
    except BaseException:
        print(bot.log_tail())
        raise
    finally:
        bot.stop()
    posted = json.dumps([p.params for p in slack.posts])
    assert BOT_KEYS["aws_secret_access_key"] not in posted and slack.app_token not in bot.log_text()


def wait_for(
    bot: Bot, predicate: Callable[[PostedMessage], bool], *, method: str, after: float, timeout: float = 30
) -> PostedMessage:
    """The first *method* call to #emr-alerts after *after* that satisfies *predicate* (fails with the bot's log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bot.slack.wait_for_post(predicate, channel=NOTIFY, after=after, method=method, timeout=0.25)
        except TimeoutError as error:
            if bot.proc.poll() is not None:
                pytest.fail(f"errbot exited with {bot.proc.returncode}\n{bot.log_tail()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"{error}\n{bot.log_tail()}")


def wait_for_log(bot: Bot, text: str, *, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while bot.log_text().count(text) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the log never said {text!r} {count} times\n{bot.log_tail()}")
        time.sleep(0.05)
