"""What every benchmark section shares: a hermetic AWS environment, a real Errbot, statistics, tables.

:class:`Bot` is Errbot's own test backend (``errbot.backends.test.TestBot``)
with the EMR plugin loaded from ``plugins/`` on the project's SQLite storage
plugin, configured like ``tests/conftest.Chat`` — the same code path as the
test suite, and as production minus the chat network. Replies are read with
``pop_message``; nothing is mocked between the message and the plugin.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT / "plugins" / "emr"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from demo.emulator import BOT_KEYS, EXTERNAL_ID, MANAGED_TAG, REGION, ROLE_ARN, Emulator  # noqa: E402
from emrchatops.domain.vocabulary import ACTIVE_STATES as VOCABULARY_ACTIVE_STATES  # noqa: E402

ACTIVE_STATES = list(VOCABULARY_ACTIVE_STATES)


def hermetic_environment() -> None:
    """No real AWS: drop every ``AWS_*`` variable, point the config files at nothing, use the emulator's keys."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID=BOT_KEYS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=BOT_KEYS["aws_secret_access_key"],
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


def quiet_errbot_console() -> None:
    """Errbot adds a stderr log handler on every start; keep it silent so the report stays readable.

    The bot still logs at INFO to its log file, as in production.
    """
    from errbot.logs import console_hdlr

    console_hdlr.setLevel(logging.CRITICAL + 1)
    root = logging.getLogger()
    if ERRORS not in root.handlers:  # also keeps TestBot's logging.basicConfig() from adding a stderr handler
        root.addHandler(ERRORS)


class ErrorLog(logging.Handler):
    """Keeps the ERROR records logged during the run (the bot's "details are in the log"), for the report."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" — {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.records.append(" ".join(text.split())[:300])


ERRORS = ErrorLog()


def emr_config(emulator: Emulator, **overrides: Any) -> dict[str, Any]:
    """The plugin's ``EMR`` dict for the emulator.

    ``POLL_SECONDS`` is the maximum so that Errbot's own timer never ticks
    during a measurement (sections call ``plugin.tick()`` themselves), and the
    end-of-day rule is off so that a run at 19:00 Tokyo time measures the same
    thing as a run at noon. No ``NOTIFY_CHANNEL``: every message on the test
    backend's queue is then a command's reply.
    """
    config: dict[str, Any] = {
        "ROLE_ARN": ROLE_ARN,
        "EXTERNAL_ID": EXTERNAL_ID,
        "REGION": REGION,
        "ENDPOINT_URL": emulator.url,
        "CLUSTER_TAG": "=".join(MANAGED_TAG),
        "TIMEZONE": "Asia/Tokyo",
        "END_OF_DAY": "off",
        "POLL_SECONDS": 3600,
    }
    config.update(overrides)
    return config


class Bot:
    """A running Errbot (test backend) with the EMR plugin, on a data dir that survives :meth:`restart`."""

    def __init__(
        self, data_dir: Path, emr: dict[str, Any], *, pool_size: int = 10, extra_config: dict[str, Any] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.emr = emr
        self.pool_size = pool_size
        self.extra_config = extra_config or {}  # e.g. STORAGE="DynamoDB" with its STORAGE_CONFIG
        self.testbot: Any = None
        self.reply_threads: set[int] = set()  # worker threads that sent a reply (evidence of concurrency)
        self._senders: collections.deque[Any] = collections.deque()
        self._handlers: list[logging.Handler] = []
        self._scratch: str | None = None

    def start(self) -> Bot:
        import threading

        from errbot.backends.test import TestBot

        before = list(logging.getLogger().handlers)
        self.testbot = TestBot(
            extra_plugin_dir=str(ROOT / "plugins"),
            loglevel=logging.INFO,
            extra_config={
                "BOT_DATA_DIR": str(self.data_dir),
                "BOT_ADMINS": ("admin",),
                "STORAGE": "SQLite",
                "BOT_EXTRA_STORAGE_PLUGINS_DIR": str(ROOT / "storage"),
                "BOT_ASYNC_POOLSIZE": self.pool_size,
                "EMR": dict(self.emr),
                "CORE_PLUGINS": ("ACLs", "Help", "Plugins", "Utils", "CommandNotFoundFilter"),
                **self.extra_config,
            },
        )
        self._scratch = str(Path(self.testbot.bot_config.BOT_LOG_FILE).parent)  # TestBot's own mkdtemp()
        self.testbot.start(timeout=10)
        self._handlers = [h for h in logging.getLogger().handlers if h not in before]
        if self.plugin is None or not self.plugin.is_activated:
            raise RuntimeError(f"the EMR plugin did not activate; see {self.testbot.bot_config.BOT_LOG_FILE}")
        backend = self.testbot.bot
        original_callback = backend.callback_message
        original_send = backend.send_message

        def callback_message(msg: Any) -> None:
            # The test backend stamps every message with one `sender`; a burst names its own, in push order
            # (the backend's queue has a single consumer, so the order is kept).
            if self._senders:
                msg.frm = self._senders.popleft()
            original_callback(msg)

        def send_message(msg: Any) -> None:
            self.reply_threads.add(threading.get_ident())
            original_send(msg)

        backend.callback_message = callback_message
        backend.send_message = send_message
        return self

    def stop(self) -> None:
        if self.testbot is None:
            return
        self.testbot.stop()
        self.testbot = None
        root = logging.getLogger()
        for handler in self._handlers:
            root.removeHandler(handler)
            handler.close()
        self._handlers = []
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def restart(self) -> Bot:
        self.stop()
        return self.start()

    def __enter__(self) -> Bot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def plugin(self) -> Any:
        return self.testbot.bot.plugin_manager.get_plugin_obj_by_name("EMR")

    def identifier(self, user: str) -> Any:
        return self.testbot.bot.build_identifier(user)

    def say(self, text: str, user: str = "alice", timeout: float = 30) -> tuple[str, float]:
        """Send *text* as *user*; return the reply and the seconds from push_message to pop_message."""
        backend = self.testbot.bot
        backend.sender = self.identifier(user)
        started = time.perf_counter()
        backend.push_message(text)
        reply = backend.pop_message(timeout=timeout)
        return str(reply), time.perf_counter() - started

    def burst(self, commands: Sequence[tuple[str, str]], timeout: float = 120) -> list[str]:
        """Push every ``(user, text)`` at once and collect one reply per command.

        Errbot's single consumer hands each command to its thread pool
        (``BOT_ASYNC_POOLSIZE`` workers), so the commands run concurrently.
        """
        backend = self.testbot.bot
        self._senders.extend(self.identifier(user) for user, _ in commands)
        for _, text in commands:
            backend.push_message(text)
        return [str(backend.pop_message(timeout=timeout)) for _ in commands]


class FakeFrom:
    """The ``msg.frm`` the plugin reads when a command method is called directly."""

    def __init__(self, user: str) -> None:
        self.person = user
        self.nick = user
        self.aclattr = user

    def __str__(self) -> str:
        return self.person


class FakeMessage:
    """A stand-in for an Errbot ``Message`` (only ``frm`` is read by the plugin)."""

    def __init__(self, user: str) -> None:
        self.frm = FakeFrom(user)


class StorageProbe:
    """Counts the plugin's storage writes and reads by wrapping its open store object (bench-side only).

    Errbot's ``BotPlugin`` keeps the store in ``_store`` (``self[key] = …`` is ``_store.set``);
    with ``STORAGE = "SQLite"`` every ``set`` is a committed, fsynced transaction.
    """

    def __init__(self, plugin: Any) -> None:
        self.writes = 0
        self.reads = 0
        store = plugin._store
        original_set, original_get = store.set, store.get

        def set_(key: str, value: Any) -> None:
            self.writes += 1
            original_set(key, value)

        def get(key: str) -> Any:
            self.reads += 1
            return original_get(key)

        store.set, store.get = set_, get

    def reset(self) -> None:
        self.writes = 0
        self.reads = 0


def assumed_emr_client(emulator: Emulator) -> Any:
    """A boto3 EMR client in account B on credentials from one AssumeRole: the raw-call reference."""
    import boto3

    sts = emulator.client("sts")
    credentials = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="bench-raw", ExternalId=EXTERNAL_ID)["Credentials"]
    return boto3.client(
        "emr",
        region_name=REGION,
        endpoint_url=emulator.url,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


class MovedClock:
    """The process's wall clock frozen at *start* and moved by hand (time-machine), like ``tests/conftest.Clock``.

    Bot, botocore and the in-process emulator all read it, so token expiry,
    cluster timelines and the plugin's ``now`` agree. ``time.perf_counter`` and
    ``time.monotonic`` are not moved: real timeouts and durations still work.
    """

    def __init__(self, start: datetime) -> None:
        self._traveller = time_machine.travel(start, tick=False)
        self._coordinates = self._traveller.start()

    def stop(self) -> None:
        self._traveller.stop()

    def __enter__(self) -> MovedClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        self._coordinates.move_to(moment)

    def advance(self, seconds: float) -> None:
        self._coordinates.shift(timedelta(seconds=seconds))


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes (perf_counter)."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def requests_delta(emulator: Emulator, call: Callable[[], object]) -> collections.Counter[str]:
    """AWS requests (by action) the emulator received while *call* ran."""
    emulator.reset_counts()
    call()
    return collections.Counter({action: n for (_, action), n in emulator.requests.items()})


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median, p95 and spread of a sample of durations (seconds)."""

    n: int
    median: float
    p95: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> Summary:
        data = sorted(samples)
        if not data:
            raise ValueError("no samples")
        return cls(
            n=len(data),
            median=statistics.median(data),
            p95=data[max(0, math.ceil(0.95 * len(data)) - 1)],
            minimum=data[0],
            maximum=data[-1],
        )

    def as_ms(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median_ms": round(self.median * 1000, 3),
            "p95_ms": round(self.p95 * 1000, 3),
            "min_ms": round(self.minimum * 1000, 3),
            "max_ms": round(self.maximum * 1000, 3),
        }


def num(value: float) -> str:
    """A count: whole numbers as such, others with two decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "  ") -> list[str]:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return indent + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return [line(cells[0]), indent + "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])]


# -- results -----------------------------------------------------------------------------------


@dataclass
class Target:
    """One target of the issue, judged on this run's figures."""

    name: str
    target: str
    measured: str
    met: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "measured": self.measured, "met": self.met, "note": self.note}


@dataclass
class Section:
    """A section of the report: its text, its figures for the JSON file, its targets."""

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0

    def say(self, *lines: str) -> None:
        self.lines.extend(lines)
