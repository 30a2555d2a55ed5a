"""Load: 200 concurrent commands from 50 users on Errbot's thread pool while the poller ticks."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Chat
from demo.emulator import Emulator, Seeded

USERS = [f"user{i:02d}" for i in range(50)]
KEEPERS = USERS[:25]  # lock, and keep holding
VISITORS = USERS[25:]  # lock, try to terminate, unlock


class Conversation:
    """Send commands as many users at once and wait for each user's own reply."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.backend = chat.testbot.bot
        self.replies: dict[str, list[str]] = defaultdict(list)
        self.changed = threading.Condition()
        original = self.backend.send_message

        def recording(msg: object) -> None:
            original(msg)
            with self.changed:
                self.replies[str(msg.to)].append(msg.body)  # type: ignore[attr-defined]
                self.changed.notify_all()

        self.backend.send_message = recording
        build_reply = self.backend.build_reply

        def addressed_reply(
            msg: object, text: str | None = None, private: bool = False, threaded: bool = False
        ) -> object:
            # The test backend addresses every reply to the bot itself; real backends
            # answer the sender, which is what tells the 50 conversations apart here.
            reply = build_reply(msg, text, private, threaded)
            reply.to = msg.frm  # type: ignore[attr-defined]
            return reply

        self.backend.build_reply = addressed_reply

    def say(self, user: str, text: str, timeout: float = 30) -> str:
        from errbot.backends.base import Message

        with self.changed:
            seen = len(self.replies[user])
        msg = Message(text)
        msg.frm = self.backend.build_identifier(user)
        msg.to = self.backend.bot_identifier
        self.backend.callback_message(msg)
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.replies[user]) > seen, timeout), (user, text)
            return self.replies[user][seen]


def test_two_hundred_concurrent_commands_lose_no_hold(
    chat: Chat, emulator: Emulator, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = Conversation(chat)
    answered: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def run(user: str, commands: list[str]) -> None:
        for command in commands:
            reply = conversation.say(user, command)
            with lock:
                answered.append((user, command, reply))

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda u: run(u, ["!emr lock keeping it"]), KEEPERS))
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                chat.plugin.tick()
                time.sleep(0.005)

        poller = threading.Thread(target=poll)
        poller.start()
        plans = {u: ["!emr status", "!emr lock again", "!emr status"] for u in KEEPERS}
        plans |= {u: ["!emr lock visiting", "!emr terminate", "!emr unlock", "!emr status"] for u in VISITORS}
        list(pool.map(lambda u: run(u, plans[u]), USERS))
        stop.set()
        poller.join()

    assert len(answered) == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors][:3]
    for user, command, reply in answered:
        if command.startswith("!emr lock"):
            assert reply.startswith(f"🔒 {user} holds analytics"), reply
        elif command == "!emr terminate":
            assert reply.startswith("✗ analytics is held by"), reply
        elif command == "!emr unlock":
            assert reply.startswith("🔓 You released analytics"), reply
        else:
            assert reply.startswith("analytics ("), reply
    holds = next(iter(chat.plugin.get("state")["clusters"].values()))["holds"]
    assert sorted(h["user"] for h in holds) == KEEPERS
    assert emulator.count("AssumeRole") == 1
    assert emulator.count("TerminateJobFlows") == 0
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
