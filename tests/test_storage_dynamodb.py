"""Tests of storage/dynamodb.py, the shared DynamoDB storage plugin (DESIGN §18), on moto's server.

Loaded the way errbot loads it (by its .plug Name, through errbot's own loader), with errbot's storage
contract, namespaces, values and their limits, the table check at start, the DynamoDB actions it
calls (which the shipped IAM policy allows, and nothing else), a lost answer retried, and real errbot
bots on it. The compare-and-set, lease and once API is tested on both backends in
tests/test_storage_versioned.py.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from errbot.storage import StoreNotOpenError
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Chat, Clock, emr_config
from demo.emulator import Emulator, Seeded
from tests._storage_writer import STORAGE_DIR
from tests.test_storage_versioned import T0, load, storage_config


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Any:
    return storage_config("DynamoDB", tmp_path, emulator)


@pytest.fixture
def plugin(config: Any) -> Any:
    return load(config)


@pytest.fixture
def store(plugin: Any) -> Iterator[Any]:
    opened = plugin.open("unit")
    try:
        yield opened
    finally:
        opened.close()


def module_of(plugin: Any) -> Any:
    import sys

    return sys.modules[type(plugin).__module__]


def raw_item(emulator: Emulator, table: str, namespace: str, sk: str) -> dict[str, Any]:
    client = emulator.client("dynamodb")
    item: dict[str, Any] = client.get_item(TableName=table, Key={"pk": {"S": namespace}, "sk": {"S": sk}})["Item"]
    return item


# --------------------------------------------------------------------------- errbot's contract


def test_errbot_loader_finds_the_plugin_by_name(plugin: Any) -> None:
    assert type(plugin).__name__ == "DynamoDBStoragePlugin"
    assert type(plugin).__module__ == "errbot.storage.dynamodb"


def test_get_set_remove_len_keys(store: Any) -> None:
    assert store.len() == 0
    assert list(store.keys()) == []
    with pytest.raises(KeyError):
        store.get("nope")
    with pytest.raises(KeyError):
        store.remove("nope")
    store.set("b", 1)
    store.set("a", "one")
    store.set("b", 2)  # overwrite
    assert (store.get("a"), store.get("b")) == ("one", 2)
    assert store.len() == 2
    assert store.keys() == ["a", "b"]
    store.remove("a")
    with pytest.raises(KeyError):
        store.get("a")
    with pytest.raises(KeyError):
        store.remove("a")
    assert (store.keys(), store.len()) == (["b"], 1)
    store.set("", None)  # an empty key and a None value are legal, as with Shelf and SQLite
    assert store.get("") is None
    assert store.len() == 2
    assert bool(store)  # errbot's StoreMixin tests the store for truthiness: an empty one must not be falsy


def test_keys_are_str(store: Any) -> None:
    with pytest.raises(TypeError):
        store.set(1, "x")
    with pytest.raises(TypeError):
        store.get(b"x")


def test_namespaces_are_separate(plugin: Any, emulator: Emulator) -> None:
    one, two = plugin.open("one"), plugin.open("two")
    one.set("k", "from one")
    two.set("k", "from two")
    one.set("only-one", 1)
    assert (one.get("k"), two.get("k")) == ("from one", "from two")
    assert (one.keys(), two.keys()) == (["k", "only-one"], ["k"])
    two.remove("k")
    assert one.get("k") == "from one"
    assert raw_item(emulator, plugin.table, "one", "v#k")["v"] == {"S": '"from one"'}  # readable in the console


def test_many_keys_are_listed_and_counted_across_pages(store: Any) -> None:
    big = "x" * 20_000  # ~60 of these fill a 1 MB query page: keys() and len() must follow the pages
    for i in range(70):
        store.set(f"k{i:03}", big + str(i))
    assert store.keys() == [f"k{i:03}" for i in range(70)]
    assert store.len() == 70


def test_close_then_use_raises_and_close_is_idempotent(plugin: Any) -> None:
    opened = plugin.open("closing")
    opened.set("k", 1)
    opened.close()
    operations: list[Callable[[], object]] = [
        lambda: opened.get("k"),
        lambda: opened.set("k", 2),
        lambda: opened.remove("k"),
        lambda: opened.len(),
        lambda: opened.keys(),
    ]
    for operation in operations:
        with pytest.raises(StoreNotOpenError):
            operation()
    opened.close()
    assert plugin.open("closing").get("k") == 1  # closing one namespace's store closes nothing else


@pytest.mark.parametrize("namespace", ["", "x" * 2049])
def test_invalid_namespaces_are_refused(plugin: Any, namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        plugin.open(namespace)


@settings(max_examples=20, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "remove", "reopen"]),
            st.sampled_from(["a", "b", "ünï", "", "v#a"]),
            st.recursive(
                st.none() | st.integers() | st.text(max_size=20),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                max_leaves=8,
            ),
        ),
        max_size=20,
    )
)
def test_behaves_like_a_dict_across_reopens(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, str, Any]]
) -> None:
    dynamo = load(storage_config("DynamoDB", tmp_path_factory.mktemp("d"), emulator))
    opened = dynamo.open("model")
    model: dict[str, Any] = {}
    for operation, key, value in operations:
        if operation == "set":
            opened.set(key, value)
            model[key] = value
        elif operation == "remove":
            if key in model:
                opened.remove(key)
                del model[key]
            else:
                with pytest.raises(KeyError):
                    opened.remove(key)
        else:
            opened.close()
            opened = dynamo.open("model")
    assert opened.len() == len(model)
    assert opened.keys() == sorted(model)
    assert {key: opened.get(key) for key in model} == model


# --------------------------------------------------------------------------- values


RICH = {
    "nested": {"list": [1, 2.5, None, True, ("a", "tuple")], "set": {1, 2}, "frozen": frozenset({"x"})},
    "when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    "when_cet": datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
    "naive": datetime(2024, 5, 1, 12, 30),  # naive: stored as given
    "day": date(2024, 2, 29),
    "span": timedelta(days=-1, seconds=5, microseconds=7),
    "money": Decimal("1.10"),
    "bytes": b"\x00\xff",
    "unicode": "clusters ✓ — ünïcode 日本",
    1: "an int key",
    ("a", 1): "a tuple key",
    "$dict": "a key that looks like a tag",
    "big": 2**80,
}


def test_rich_values_round_trip_exactly(store: Any) -> None:
    store.set("rich", RICH)
    got = store.get("rich")
    assert got == RICH
    assert type(got["nested"]["list"][4]) is tuple and type(got["nested"]["frozen"]) is frozenset
    store.set("lonely", {"$tuple": [1]})  # a one-key dict whose key looks like a tag stays a dict
    assert store.get("lonely") == {"$tuple": [1]}
    store.set("surrogate", "\ud800 lone")  # not UTF-8: escaped in the JSON, round-trips
    assert store.get("surrogate") == "\ud800 lone"


def test_the_text_console_s_user_round_trips_for_errbot_s_textcmds(store: Any) -> None:
    # errbot's TextCmds stores the console's user object (self[USER] = self._bot.user): the two-instance demo.
    from errbot.backends.text import TextPerson

    store.set("user", TextPerson("admin", "client", "nick", "Full Name"))
    got = store.get("user")
    assert type(got) is TextPerson
    assert (got.person, got.client, got.nick, got.fullname) == ("admin", "client", "nick", "Full Name")


class Custom:
    pass


@pytest.mark.parametrize("value", [Custom(), {"k": object()}, [1, {2: Custom()}], type("S", (str,), {})("sub")])
def test_a_value_that_is_not_plain_data_is_refused_and_nothing_written(store: Any, value: Any) -> None:
    store.set("k", "before")
    with pytest.raises(TypeError, match="plain data"):
        store.set("k", value)
    with pytest.raises(TypeError, match="plain data"):
        store.set_versioned("k", value, 1)
    assert store.get_versioned("k") == ("before", 1)


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
    | st.timedeltas()
    | st.decimals(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, database=None)
@given(PLAIN)
def test_the_codec_round_trips_plain_data(value: Any) -> None:
    codec = module_of_codec()
    assert codec.decode_value(codec.encode_value(value)) == value


def module_of_codec() -> Any:
    """storage/dynamodb.py as a plain module, for its codec (no server needed)."""
    import importlib.util
    import sys

    name = "emr_chatops_dynamodb_codec"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STORAGE_DIR / "dynamodb.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def test_a_large_value_is_stored_compressed_and_round_trips(store: Any, plugin: Any, emulator: Emulator) -> None:
    value = {
        "ledger": [{"cluster": f"j-{i:013}", "held": [["alice", "2026-12-01T01:00:00+00:00"]]} for i in range(9000)]
    }
    assert len(module_of(plugin).encode_value(value)) > 600_000  # far above the 400 KB item limit as text
    store.set("ledger", value)
    assert store.get("ledger") == value
    item = raw_item(emulator, plugin.table, "unit", "v#ledger")
    assert "z" in item and "v" not in item
    store.set("ledger", {"small": True})  # back to text: the compressed attribute goes
    item = raw_item(emulator, plugin.table, "unit", "v#ledger")
    assert "v" in item and "z" not in item
    assert store.get("ledger") == {"small": True}


def test_a_value_too_large_for_an_item_is_refused_clearly_and_the_old_value_kept(store: Any) -> None:
    store.set("k", "before")
    noise = random.Random(7).randbytes(450_000)  # incompressible: > 400 KB even compressed
    with pytest.raises(ValueError, match="more than a DynamoDB item may hold") as refused:
        store.set("k", noise)
    assert type(refused.value).__name__ == "ValueTooLarge"
    with pytest.raises(ValueError, match="more than a DynamoDB item may hold"):
        store.set_versioned("k", noise, 1)
    assert store.get_versioned("k") == ("before", 1)
    just_fits = random.Random(8).randbytes(290_000)  # base64 in JSON: ~387 KB, under the limit
    store.set("k", just_fits)
    assert store.get("k") == just_fits


def test_odd_keys_round_trip_and_a_key_too_long_is_refused(store: Any, plugin: Any) -> None:
    limit = module_of(plugin).KEY_LIMIT
    odd = ["#", "v#", "lease#poller", "once#x", " spaced key ", "new\nline", "日本語のキー", "🙂", "x" * limit]
    for key in odd:
        store.set(key, key)
    assert sorted(store.keys()) == sorted(odd)
    assert all(store.get(key) == key for key in odd)
    for too_long in ("x" * (limit + 1), "日" * (limit // 3 + 1)):
        with pytest.raises(ValueError, match="bytes of UTF-8"):
            store.set(too_long, 1)
    with pytest.raises(ValueError, match="UTF-8"):
        store.set("\ud800", 1)  # a lone surrogate cannot be a DynamoDB key


# --------------------------------------------------------------------------- the table at start


def test_a_missing_table_is_refused_at_start_naming_the_template(tmp_path: Path, emulator: Emulator) -> None:
    config = storage_config("DynamoDB", tmp_path, emulator, create=False)
    with pytest.raises(RuntimeError, match="does not exist") as refused:
        load(config)
    message = str(refused.value)
    assert config.STORAGE_CONFIG["table"] in message
    assert "deploy/cloudformation/dynamodb.yaml" in message and "EMR_CHATOPS_DYNAMODB_CREATE=true" in message
    assert type(refused.value).__name__ == "TableMissing"
    tables = emulator.client("dynamodb").list_tables()["TableNames"]
    assert config.STORAGE_CONFIG["table"] not in tables  # nothing created


def test_create_makes_an_on_demand_table_with_the_ttl_attribute(config: Any, emulator: Emulator) -> None:
    load(config)
    load(config)  # a second instance finds it
    client = emulator.client("dynamodb")
    table = client.describe_table(TableName=config.STORAGE_CONFIG["table"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    ttl = client.describe_time_to_live(TableName=config.STORAGE_CONFIG["table"])["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_a_table_with_another_key_is_refused(tmp_path: Path, emulator: Emulator) -> None:
    config = storage_config("DynamoDB", tmp_path, emulator, create=False)
    emulator.client("dynamodb").create_table(
        TableName=config.STORAGE_CONFIG["table"],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(RuntimeError, match="is not this bot's"):
        load(config)


@pytest.mark.parametrize(("create", "ok"), [("true", True), ("TRUE", True), ("0", False), ("maybe", None)])
def test_the_create_flag_is_read_strictly(tmp_path: Path, emulator: Emulator, create: str, ok: bool | None) -> None:
    config = storage_config("DynamoDB", tmp_path, emulator, create=create)
    if ok is None:
        with pytest.raises(ValueError, match="'create' must be true or false"):
            load(config)
    elif ok:
        assert load(config).create is True
    else:
        with pytest.raises(RuntimeError, match="does not exist"):
            load(config)


# --------------------------------------------------------------------------- what it calls


def test_the_dynamodb_actions_it_calls_are_the_declared_ones(config: Any, emulator: Emulator) -> None:
    """Everything the storage can do, and the DynamoDB API operations that took: each one declared."""
    emulator.reset_counts()
    plugin = load(config)
    a, b = plugin.open("EMR"), load(config).open("EMR")
    a.set("k", 1)
    a.get("k")
    a.keys()
    a.len()
    a.remove("k")
    a.set_versioned("s", 1, 0)
    a.get_versioned("s")
    lease = a.acquire_lease("poller", "a", 60, T0)
    a.set_versioned("s", 2, 1, fence=lease, now=T0)
    b.acquire_lease("poller", "b", 60, T0 + timedelta(minutes=2))
    a.release_lease("poller", "a", T0)
    a.read_lease("poller")
    a.put_if_absent("Ev1", None, 3600, T0)
    module = module_of(plugin)
    called = {action for (service, action), _ in emulator.requests.items() if service.startswith("dynamodb")}
    assert called == set(module.OPERATIONS) | set(module.CREATE_OPERATIONS)
    assert set(module.PERMISSIONS) == {action for actions in module.OPERATIONS.values() for action in actions}
    assert not {a for actions in module.CREATE_OPERATIONS.values() for a in actions} & set(module.PERMISSIONS)


# --------------------------------------------------------------------------- a lost answer, retried


def replayed(client: Any, operation: str) -> None:
    """Make the next *operation* call reach the table twice, as when botocore retries after its answer was lost."""
    original = getattr(client, operation)

    def twice(**arguments: Any) -> Any:
        setattr(client, operation, original)
        original(**arguments)  # landed; its answer "lost"
        return original(**arguments)

    setattr(client, operation, twice)


def test_a_retried_compare_and_set_whose_first_attempt_landed_succeeds(plugin: Any, store: Any) -> None:
    store.set_versioned("state", "one", 0)
    replayed(plugin.client, "update_item")
    assert store.set_versioned("state", "two", 1) == 2
    assert store.get_versioned("state") == ("two", 2)
    replayed(plugin.client, "update_item")
    assert store.set_versioned("new", "first", 0) == 1


def test_a_retried_once_record_whose_first_attempt_landed_is_still_ours(plugin: Any, store: Any) -> None:
    replayed(plugin.client, "put_item")
    assert store.put_if_absent("Ev1", None, 3600, T0) is True
    assert store.put_if_absent("Ev1", None, 3600, T0) is False


def test_a_retried_lease_takeover_whose_first_attempt_landed_is_held(plugin: Any, store: Any) -> None:
    store.acquire_lease("poller", "a", 60, T0)
    original = plugin.client.update_item
    calls: list[int] = []

    def second_call_twice(**arguments: Any) -> Any:  # the renewal attempt fails as usual; the takeover is replayed
        calls.append(1)
        if len(calls) == 2:
            original(**arguments)
        return original(**arguments)

    plugin.client.update_item = second_call_twice
    lease = store.acquire_lease("poller", "b", 60, T0 + timedelta(seconds=61))
    assert (lease.owner, lease.fencing, len(calls)) == ("b", 2, 2)


# --------------------------------------------------------------------------- real errbot bots on it


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """TestBot adds a FileHandler to the root logger and sets its level: undo that afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def test_the_emr_plugin_runs_on_it_and_a_hold_taken_on_one_bot_is_seen_by_the_next(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock, isolated_logging: None
) -> None:
    config = storage_config("DynamoDB", tmp_path, emulator)
    extra = {"STORAGE_CONFIG": config.STORAGE_CONFIG}
    first = Chat(tmp_path / "one", emr_config(emulator), clock, storage="DynamoDB", extra_config=extra).start()
    try:
        first.drain()
        assert first.say("!emr lock shared table").startswith("🔒 alice holds analytics")
        first.tick()
    finally:
        first.stop()
    # Another bot, another data dir (another host): the hold, the plugin's state and errbot's own are in the table.
    second = Chat(tmp_path / "two", emr_config(emulator), clock, storage="DynamoDB", extra_config=extra).start()
    try:
        second.drain()
        status = second.say("!emr status")
        assert "alice" in status and "shared table" in status
        assert second.say("!emr unlock").startswith("🔓 You released analytics")
    finally:
        second.stop()
    assert not list((tmp_path / "two").glob("*.sqlite3"))  # nothing stored locally
    namespaces = {
        item["pk"]["S"] for item in emulator.client("dynamodb").scan(TableName=config.STORAGE_CONFIG["table"])["Items"]
    }
    assert {"EMR", "core"} <= namespaces


def test_config_py_selects_it_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import runpy

    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("EMR_CHATOPS_DATA_DIR", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("EMR_CHATOPS_DYNAMODB_") or n == "EMR_CHATOPS_STORAGE"]:
        monkeypatch.delenv(name)
    assert runpy.run_path(str(root / "config.py"))["STORAGE"] == "SQLite"  # the default, as before

    monkeypatch.setenv("EMR_CHATOPS_STORAGE", "dynamodb")
    bot = runpy.run_path(str(root / "config.py"))
    assert bot["STORAGE"] == "DynamoDB"
    assert bot["STORAGE_CONFIG"] == {"table": "emr-chatops", "region": None, "endpoint_url": None, "create": False}

    monkeypatch.setenv("EMR_CHATOPS_STORAGE", "DynamoDB")
    monkeypatch.setenv("EMR_CHATOPS_DYNAMODB_TABLE", "team-bot")
    monkeypatch.setenv("EMR_CHATOPS_DYNAMODB_REGION", "us-west-2")
    monkeypatch.setenv("EMR_CHATOPS_DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("EMR_CHATOPS_DYNAMODB_CREATE", "true")
    bot = runpy.run_path(str(root / "config.py"))
    assert bot["STORAGE_CONFIG"] == {
        "table": "team-bot",
        "region": "us-west-2",
        "endpoint_url": "http://127.0.0.1:5000",
        "create": True,
    }
    monkeypatch.setenv("EMR_CHATOPS_STORAGE", " DYNAMODB ")  # in any case: errbot's plugin name is "DynamoDB"
    assert runpy.run_path(str(root / "config.py"))["STORAGE"] == "DynamoDB"
    monkeypatch.setenv("EMR_CHATOPS_STORAGE", "sqlite")
    assert runpy.run_path(str(root / "config.py"))["STORAGE"] == "SQLite"
    monkeypatch.setenv("EMR_CHATOPS_STORAGE", "dynamodb")
    monkeypatch.setenv("EMR_CHATOPS_DYNAMODB_CREATE", "sometimes")
    with pytest.raises(ValueError, match="EMR_CHATOPS_DYNAMODB_CREATE"):
        runpy.run_path(str(root / "config.py"))


def test_no_boto3_default_session_is_used(config: Any) -> None:
    # boto3's module-level default session is not thread-safe; the plugin makes its own.
    boto3.DEFAULT_SESSION = None
    load(config)
    assert boto3.DEFAULT_SESSION is None


def test_the_demo_s_two_instances_environment_shares_the_emulator_s_table(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import runpy

    from demo.__main__ import two_instances_environment

    env = two_instances_environment(emulator)
    assert all(name.startswith(("AWS_", "EMR_", "BOT_")) for name in env), "only the demo's own settings"
    assert "EMR_CHATOPS_DATA_DIR" not in env  # each instance its own
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EMR_CHATOPS_DATA_DIR", str(tmp_path))
    bot = runpy.run_path(str(Path(__file__).resolve().parent.parent / "config.py"))
    assert bot["STORAGE"] == "DynamoDB"
    assert bot["STORAGE_CONFIG"]["endpoint_url"] == emulator.url and bot["STORAGE_CONFIG"]["create"] is True
