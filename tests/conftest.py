"""Shared fixtures: a hermetic environment, moto's server on loopback, a real Errbot.

* ``hermetic`` (autouse) clears every ``AWS_*`` variable and points the AWS
  config files at nothing, then gives the bot account A's emulator keys.
* ``emulator`` is one moto server per test session; each test that asks for
  ``seeded`` gets it reset and seeded afresh (role ``cre`` in account B, the
  managed cluster ``analytics``, the unmanaged ``etl-nightly``).
* ``chat`` is Errbot's real test backend with the EMR plugin loaded from
  ``plugins/``, on a real storage plugin, in a data dir that survives
  :meth:`Chat.restart`. Time is the plugin's injectable clock (:class:`Clock`).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import time_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins" / "emr")]

import libcaches  # noqa: E402

from demo.emulator import ACCOUNT_B, BOT_KEYS, EXTERNAL_ID, ROLE_ARN, Emulator, Seeded  # noqa: E402

libcaches.install()  # what botocore and Errbot read again per session or bot, read once per test process

NOTIFY = "#emr-alerts"


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real AWS: clear AWS_* and the config files; account A's keys are the emulator's."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path_factory.mktemp("aws") / "none"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BOT_KEYS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BOT_KEYS["aws_secret_access_key"])


# Every secret a test has handed out or received: none may appear in a reply or a log line.
SECRETS: set[str] = {BOT_KEYS["aws_secret_access_key"]}
CHATS: list[Chat] = []


@pytest.fixture(autouse=True)
def no_secret_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each test: no secret key, session token or access key id in any log line or chat message."""
    CHATS.clear()
    yield
    for chat in CHATS:
        chat.collect_secrets()
    texts = [caplog.text] + [body for chat in CHATS for _, body in chat.sent]
    leaked = sorted({secret for secret in SECRETS for text in texts if secret and secret in text})
    assert not leaked, f"{len(leaked)} secret(s) leaked into logs or replies"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def seeded(emulator: Emulator, clock: Clock) -> Seeded:
    emulator.reset()
    seeded = emulator.seed()
    emulator.reset_counts()
    return seeded


class Clock:
    """Wall-clock time for the whole process (bot, botocore and moto alike): moved, never waited for.

    time-machine freezes ``datetime.now``/``time.time`` at *start*; moving it
    keeps the emulator's token expiry and cluster timelines consistent with
    the bot's idea of now.
    """

    def __init__(self, start: datetime) -> None:
        self._traveller = time_machine.travel(start, tick=False)
        self._coordinates = self._traveller.start()

    def stop(self) -> None:
        self._traveller.stop()

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        self._coordinates.move_to(moment)

    def advance(self, **kwargs: float) -> None:
        self._coordinates.shift(timedelta(**kwargs))


@functools.cache
def _cloudwatch_b(emulator: Emulator) -> Any:
    return emulator.client("cloudwatch", ACCOUNT_B)


def publish_is_idle(emulator: Emulator, cluster_id: str, points: Iterable[tuple[datetime, float]]) -> None:
    """EMR's ``IsIdle`` datapoints (moment, 1 idle / 0 YARN work) for the cluster in account B.

    What :meth:`Emulator.put_is_idle` publishes one datapoint per request, in one ``PutMetricData``
    (up to CloudWatch's 1000 a request): moto keeps each datapoint alike.
    """
    data = [
        {
            "MetricName": "IsIdle",
            "Dimensions": [{"Name": "JobFlowId", "Value": cluster_id}],
            "Timestamp": at,
            "Value": value,
        }
        for at, value in points
    ]
    for start in range(0, len(data), 1000):
        _cloudwatch_b(emulator).put_metric_data(Namespace="AWS/ElasticMapReduce", MetricData=data[start : start + 1000])


def emr_config(emulator: Emulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ROLE_ARN": ROLE_ARN,
        "EXTERNAL_ID": EXTERNAL_ID,
        "REGION": "ap-northeast-1",
        "ENDPOINT_URL": emulator.url,
        "CLUSTER_TAG": "emr-chatops=true",
        "TIMEZONE": "Asia/Tokyo",
        "NOTIFY_CHANNEL": NOTIFY,
        "POLL_SECONDS": 3600,  # tests call tick() themselves, at the time they choose
    }
    config.update(overrides)
    return config


class Chat:
    """A running Errbot on the test backend, with helpers to talk as different users."""

    def __init__(
        self,
        data_dir: Path,
        emr: dict[str, Any],
        clock: Clock,
        storage: str = "SQLite",
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.emr = emr
        self.clock = clock
        self.storage = storage
        self.extra_config = extra_config or {}  # more bot config (ACCESS_CONTROLS, BOT_ADMINS …), applied last
        self.sent: list[tuple[str, str]] = []  # (to, body) of everything the bot sent
        self.sent_at: list[datetime] = []  # when (on the moved clock) each was sent
        self._popped = 0  # how many of them were taken off the test backend's queue
        self.testbot: Any = None
        self._log_files: list[logging.Handler] = []  # the log files this bot's Errbot opened

    def start(self) -> Chat:
        from errbot.backends.test import TestBot

        CHATS.append(self)
        root = logging.getLogger()
        before = list(root.handlers)
        self.testbot = TestBot(
            extra_plugin_dir=str(ROOT / "plugins"),
            loglevel=logging.INFO,
            extra_config={
                "BOT_DATA_DIR": str(self.data_dir),
                "BOT_ADMINS": ("admin",),
                "STORAGE": self.storage,
                "BOT_EXTRA_STORAGE_PLUGINS_DIR": str(ROOT / "storage"),
                "EMR": dict(self.emr),
                "CORE_PLUGINS": ("ACLs", "Help", "Plugins", "Utils", "CommandNotFoundFilter"),
                **self.extra_config,
            },
        )
        self.testbot.start(timeout=10)
        # TestBot and setup_bot each add a FileHandler to the root logger, and nothing removes them: left
        # there, every later bot of the process wrote each log line to all of them (:meth:`stop` closes them).
        self._log_files = [h for h in root.handlers if h not in before and isinstance(h, logging.FileHandler)]
        self.sent.clear()
        self.sent_at.clear()
        self._popped = 0
        backend = self.testbot.bot
        original = backend.send_message

        def recording(msg: Any) -> None:
            self.sent.append((str(msg.to), msg.body))
            self.sent_at.append(datetime.now(UTC))
            original(msg)

        backend.send_message = recording
        return self

    def collect_secrets(self) -> None:
        """Remember the stored STS token's parts, for :func:`no_secret_leaks`."""
        if self.testbot is None:
            return
        plugin = self.plugin
        token = plugin.get("sts") if plugin is not None and plugin.is_activated else None
        if token:
            SECRETS.update({token["secret_key"], token["token"], token["access_key"]})

    def stop(self) -> None:
        if self.testbot is not None:
            self.collect_secrets()
            self.testbot.stop()
            self.testbot = None
            for handler in self._log_files:
                logging.getLogger().removeHandler(handler)
                handler.close()
            self._log_files = []

    def restart(self) -> Chat:
        self.stop()
        return self.start()

    @property
    def plugin(self) -> Any:
        return self.testbot.bot.plugin_manager.get_plugin_obj_by_name("EMR")

    def say(self, text: str, user: str = "alice", timeout: float = 10) -> str:
        """Send *text* as *user*; return the bot's reply (as text: the test backend strips markdown).

        Announcements to NOTIFY_CHANNEL made meanwhile are skipped here; see :meth:`announcements`.
        """
        backend = self.testbot.bot
        backend.sender = backend.build_identifier(user)
        self.testbot.push_message(text)
        while True:
            reply = str(self.testbot.pop_message(timeout=timeout))
            to, _ = self.sent[self._popped]
            self._popped += 1
            if to != NOTIFY:
                return reply

    def drain(self) -> list[str]:
        """Everything else the bot has sent to the queue so far (announcements).

        The bot's messages are recorded in :attr:`sent` before they are queued: those not taken yet are
        waited for (a moment at most, while their sender queues them), then whatever else is queued
        already is taken. Nothing is waited for that was not sent.
        """
        out = []
        while self._popped < len(self.sent):
            out.append(str(self.testbot.pop_message(timeout=10)))
            self._popped += 1
        while True:
            try:
                out.append(str(self.testbot.pop_message(block=False)))
                self._popped += 1
            except queue.Empty:
                return out

    def announcements(self) -> list[str]:
        return [body for to, body in self.sent if to == NOTIFY]

    def announced(self, prefix: str) -> list[tuple[datetime, str]]:
        """(when, text) of announcements starting with *prefix*."""
        return [
            (at, body)
            for (to, body), at in zip(self.sent, self.sent_at, strict=True)
            if to == NOTIFY and body.startswith(prefix)
        ]

    def tick(self) -> None:
        self.plugin.tick()


# A weekday morning in Tokyo, far from the end of day.
MORNING = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 JST


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock(MORNING)
    try:
        yield clock
    finally:
        clock.stop()


@pytest.fixture
def chat(tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock) -> Iterator[Chat]:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    bot.drain()
    try:
        yield bot
    finally:
        bot.stop()


@pytest.fixture
def start_bot(tmp_path: Path, emulator: Emulator, clock: Clock) -> Iterator[Any]:
    """Start bots on demand: ``start_bot(extra_config={...}, **EMR overrides)``.

    Every bot is stopped at the end, and moto's IAM enforcement switched off.
    """
    bots: list[Chat] = []

    def start(extra_config: dict[str, Any] | None = None, **overrides: Any) -> Chat:
        bot = Chat(tmp_path / f"data{len(bots)}", emr_config(emulator, **overrides), clock, extra_config=extra_config)
        bots.append(bot.start())
        bot.drain()
        return bot

    try:
        yield start
    finally:
        for bot in bots:
            bot.stop()
        emulator.set_iam_enforcement(False)


APOLOGY = "Something unexpected"  # the plugin's answer to an exception it did not expect


class LoggedErrors(logging.Handler):
    """The ERROR (and worse) records any logger emits while attached to the root logger.

    For fuzz and stateful tests, attached around each example or for a machine's whole run:
    pytest's caplog spans a test function, not one Hypothesis example.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LoggedErrors:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        logging.getLogger().removeHandler(self)

    def summary(self) -> str:
        first = self.records[0]
        trace = logging.Formatter().formatException(first.exc_info) if first.exc_info else ""
        return f"{len(self.records)} error(s) logged; first: {first.name}: {first.getMessage()}\n{trace}"


# Termination lateness (tick time - deadline) seen by the scenario tests, reported at the end of the run.
LATENESS: list[float] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LATENESS:
        terminalreporter.write_line(
            f"automatic terminations checked: {len(LATENESS)}; largest lateness after the deadline: "
            f"{max(LATENESS):.0f} s (set by the scenarios' tick offsets; measured at random offsets: "
            "`python -m bench --only lateness`)"
        )


__all__ = ["ACCOUNT_B", "MORNING", "NOTIFY", "Chat", "Clock", "emr_config", "publish_is_idle"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests (`slow`: real processes, the stateful machine) first, each xdist worker its share.

    So that the suite's wall time is not one long test started last — nor all of them run one after
    another on one worker: ``--dist worksteal`` hands each worker a contiguous run of the collection
    (the first len/n tests to the first, and so on) and idle workers steal from the *end* of the others'
    runs. Each run starts with its share of the slow tests, dealt out in turn; the rest follow in order.
    """
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set by xdist in its workers
    ordered: list[pytest.Item] = []
    for worker in range(workers):
        size = (len(items) - len(ordered)) // (workers - worker)  # worksteal's first share for this worker
        mine = slow[worker::workers]
        ordered += mine + rest[: max(0, size - len(mine))]
        del rest[: max(0, size - len(mine))]
    items[:] = ordered + rest
