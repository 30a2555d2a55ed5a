"""The compare-and-set, lease and once API that both storage plugins offer (DESIGN §18), one contract.

Two "bot processes" are two storage plugin instances loaded by errbot's own loader on the same data:
two SQLite connections on one file, or two boto3 clients on one DynamoDB table of moto's server. The
plugin's StateStore and Lease ports rely on exactly this: a write over a revision that moved fails
(:class:`Conflict`) and is re-read and re-decided, never lost; one lease holder at a time, its fencing
counter +1 at every change of owner, and a write fenced by a lease that moved on or expired fails
(:class:`LeaseLost`). Time is passed in and moved, never waited for.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.emulator import Emulator
from tests._storage_writer import STORAGE_DIR

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LEASE = "poller"
BACKENDS = ("SQLite", "DynamoDB")


def storage_config(storage: str, basedir: Path, emulator: Emulator | None = None, **dynamodb: Any) -> Any:
    """The slice of an errbot config that errbot's storage loader and the two plugins read."""
    config: dict[str, Any] = {}
    if storage == "DynamoDB":
        assert emulator is not None
        config = {"table": "t-" + uuid.uuid4().hex[:12], "region": "ap-northeast-1", "endpoint_url": emulator.url}
        config |= {"create": True, **dynamodb}
    return types.SimpleNamespace(
        STORAGE=storage,
        BOT_EXTRA_STORAGE_PLUGINS_DIR=str(STORAGE_DIR),
        BOT_DATA_DIR=str(basedir),
        STORAGE_CONFIG=config,
    )


def load(config: Any) -> Any:
    """A storage plugin instance, made by errbot's own loader: one per 'bot process'."""
    from errbot.bootstrap import get_storage_plugin

    return get_storage_plugin(config)


class Instances:
    """Stores of one namespace, each from its own plugin instance on the same data."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.opened: list[Any] = []

    def open(self, namespace: str = "EMR") -> Any:
        store = load(self.config).open(namespace)
        self.opened.append(store)
        return store

    def pair(self) -> tuple[Any, Any]:
        return self.open(), self.open()

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instances]:
    emulator = request.getfixturevalue("emulator") if request.param == "DynamoDB" else None
    made = Instances(storage_config(request.param, tmp_path, emulator))
    try:
        yield made
    finally:
        made.close()


# --------------------------------------------------------------------------- compare-and-set


def test_a_new_key_is_written_only_while_absent(instances: Instances) -> None:
    a, b = instances.pair()
    with pytest.raises(KeyError):
        a.get_versioned("state")
    assert a.set_versioned("state", {"holds": ["alice"]}, 0) == 1
    with pytest.raises(b.Conflict) as conflict:
        b.set_versioned("state", {"holds": ["bob"]}, 0)
    assert (conflict.value.expected, conflict.value.actual) == (0, 1)
    assert tuple(b.get_versioned("state")) == ({"holds": ["alice"]}, 1)
    assert b.get("state") == {"holds": ["alice"]}  # Errbot's own API sees the same value


def test_two_instances_acting_at_once_one_wins_the_other_re_reads_and_nothing_is_lost(instances: Instances) -> None:
    a, b = instances.pair()
    a.set_versioned("state", {"holds": []}, 0)
    seen_a, seen_b = a.get_versioned("state"), b.get_versioned("state")  # both read revision 1
    assert seen_a.revision == seen_b.revision == 1
    assert a.set_versioned("state", {"holds": [*seen_a.value["holds"], "alice"]}, seen_a.revision) == 2
    with pytest.raises(b.Conflict) as conflict:
        b.set_versioned("state", {"holds": [*seen_b.value["holds"], "bob"]}, seen_b.revision)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert a.get("state") == {"holds": ["alice"]}  # the loser wrote nothing
    again = b.get_versioned("state")  # re-read, re-decide
    assert b.set_versioned("state", {"holds": [*again.value["holds"], "bob"]}, again.revision) == 3
    assert tuple(a.get_versioned("state")) == ({"holds": ["alice", "bob"]}, 3)


def test_a_plain_set_moves_the_revision_so_a_compare_and_set_over_it_fails(instances: Instances) -> None:
    a, b = instances.pair()
    b.set("state", "from errbot")  # Errbot's set: last writer wins, but the revision moves
    seen = a.get_versioned("state")
    assert seen == ("from errbot", 1)
    b.set("state", "again")
    with pytest.raises(a.Conflict):
        a.set_versioned("state", "stale", seen.revision)
    assert a.get_versioned("state") == ("again", 2)


def test_a_removed_key_is_absent_again_for_compare_and_set(instances: Instances) -> None:
    a, b = instances.pair()
    a.set_versioned("k", 1, 0)
    b.remove("k")
    with pytest.raises(a.Conflict):
        a.set_versioned("k", 2, 1)
    assert a.set_versioned("k", 3, 0) == 1


def test_revisions_survive_a_reopen(instances: Instances) -> None:
    first = instances.open()
    first.set_versioned("k", "v", 0)
    first.set_versioned("k", "w", 1)
    first.close()
    assert instances.open().get_versioned("k") == ("w", 2)


@pytest.mark.parametrize("bad", [-1, 1.0, "1", True, None])
def test_an_expected_revision_is_a_non_negative_int(instances: Instances, bad: Any) -> None:
    with pytest.raises(ValueError, match="expected_revision"):
        instances.open().set_versioned("k", 1, bad)


# Hypothesis picks an interleaving of two instances, each reading then (later) writing what it read plus one.
STEPS = st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["read", "write"])), min_size=1, max_size=24)


@settings(max_examples=25, deadline=None, database=None)
@given(steps=STEPS)
def test_every_interleaving_of_read_and_write_loses_no_increment(steps: list[tuple[str, str]]) -> None:
    # SQLite only here (a fresh file per example); the same interleavings run on DynamoDB below.
    import tempfile

    with tempfile.TemporaryDirectory() as basedir:
        made = Instances(storage_config("SQLite", Path(basedir)))
        try:
            _interleave(made, steps)
        finally:
            made.close()


@settings(max_examples=10, deadline=None, database=None)
@given(steps=STEPS)
def test_every_interleaving_of_read_and_write_loses_no_increment_on_dynamodb(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str]]
) -> None:
    made = Instances(storage_config("DynamoDB", tmp_path_factory.mktemp("d"), emulator))
    try:
        _interleave(made, steps)
    finally:
        made.close()


def _interleave(made: Instances, steps: list[tuple[str, str]]) -> None:
    stores = dict(zip("ab", made.pair(), strict=True))
    stores["a"].set_versioned("n", 0, 0)
    model_value, model_revision = 0, 1
    read: dict[str, tuple[int, int]] = {}
    for who, what in steps:
        store = stores[who]
        if what == "read" or who not in read:
            read[who] = tuple(store.get_versioned("n"))  # type: ignore[assignment]
            assert read[who] == (model_value, model_revision)
            continue
        value, revision = read.pop(who)
        if revision == model_revision:  # nobody wrote since this instance read: it wins
            assert store.set_versioned("n", value + 1, revision) == revision + 1
            model_value, model_revision = value + 1, revision + 1
        else:
            with pytest.raises(store.Conflict):
                store.set_versioned("n", value + 1, revision)
    assert tuple(stores["b"].get_versioned("n")) == (model_value, model_revision)
    assert model_value == model_revision - 1  # every successful write counted once: no increment lost


def test_threads_of_two_instances_incrementing_lose_nothing(instances: Instances) -> None:
    stores = [instances.open() for _ in range(2)]
    stores[0].set_versioned("n", 0, 0)
    threads_n, increments = 6, 8
    barrier = threading.Barrier(threads_n)
    conflicts: list[int] = []
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        store = stores[t % 2]
        try:
            barrier.wait()
            for _ in range(increments):
                while True:
                    value, revision = store.get_versioned("n")
                    try:
                        store.set_versioned("n", value + 1, revision)
                        break
                    except store.Conflict:
                        conflicts.append(t)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert stores[1].get_versioned("n") == (threads_n * increments, threads_n * increments + 1)


# --------------------------------------------------------------------------- leases


def test_a_free_lease_is_taken_renewed_and_refused_to_others_while_live(instances: Instances) -> None:
    a, b = instances.pair()
    assert a.read_lease(LEASE) is None
    lease = a.acquire_lease(LEASE, "a", 60, T0)
    assert (lease.owner, lease.fencing, lease.expiry) == ("a", 1, T0 + timedelta(seconds=60))
    renewed = a.acquire_lease(LEASE, "a", 60, T0 + timedelta(seconds=30))
    assert (renewed.owner, renewed.fencing, renewed.expiry) == ("a", 1, T0 + timedelta(seconds=90))
    refused = b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=89))
    assert refused == renewed  # the live holder's lease, unchanged
    assert b.read_lease(LEASE) == renewed


def test_an_expired_lease_is_taken_over_with_the_next_fencing_counter(instances: Instances) -> None:
    a, b = instances.pair()
    a.acquire_lease(LEASE, "a", 60, T0)
    taken = b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=60))  # expired at its expiry exactly
    assert (taken.owner, taken.fencing) == ("b", 2)
    back = a.acquire_lease(LEASE, "a", 60, T0 + timedelta(seconds=121))
    assert (back.owner, back.fencing) == ("a", 3)
    assert b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=122)).owner == "a"


def test_the_own_expired_lease_is_renewed_with_the_same_fencing_counter(instances: Instances) -> None:
    a = instances.open()
    a.acquire_lease(LEASE, "a", 60, T0)
    again = a.acquire_lease(LEASE, "a", 60, T0 + timedelta(minutes=5))  # nobody took it meanwhile
    assert (again.owner, again.fencing) == ("a", 1)


def test_a_paused_holder_cannot_write_after_a_takeover(instances: Instances) -> None:
    a, b = instances.pair()
    a.set_versioned("state", "initial", 0)
    lease_a = a.acquire_lease(LEASE, "a", 60, T0)
    assert a.set_versioned("state", "a acted", 1, fence=lease_a, now=T0 + timedelta(seconds=10)) == 2
    # a pauses (GC, a stopped container …); b takes over once the lease expired and acts.
    lease_b = b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=61))
    assert lease_b.fencing == lease_a.fencing + 1
    assert b.set_versioned("state", "b acted", 2, fence=lease_b, now=T0 + timedelta(seconds=62)) == 3
    # a wakes up, thinking it still holds the lease, with the revision it last wrote … and a fresh read alike.
    with pytest.raises(a.LeaseLost):
        a.set_versioned("state", "a acts again", 2, fence=lease_a, now=T0 + timedelta(seconds=63))
    with pytest.raises(a.LeaseLost):
        a.set_versioned("state", "a acts again", 3, fence=lease_a, now=T0 + timedelta(seconds=63))
    assert a.get_versioned("state") == ("b acted", 3)


def test_a_lease_from_an_earlier_term_cannot_write_though_its_owner_holds_the_lease_again(
    instances: Instances,
) -> None:
    # Only the fencing counter tells these apart: same owner, lease live. (A poller thread that
    # hung for a term, while another thread of the same instance renewed.)
    a, b = instances.pair()
    a.set_versioned("state", "initial", 0)
    first_term = a.acquire_lease(LEASE, "a", 60, T0)
    b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=60))
    second_term = a.acquire_lease(LEASE, "a", 60, T0 + timedelta(seconds=120))
    assert (second_term.owner, second_term.fencing) == ("a", first_term.fencing + 2)
    with pytest.raises(a.LeaseLost):
        a.set_versioned("state", "stale term", 1, fence=first_term, now=T0 + timedelta(seconds=121))
    assert a.set_versioned("state", "this term", 1, fence=second_term, now=T0 + timedelta(seconds=121)) == 2


def test_a_holder_paused_past_its_lease_cannot_write_even_if_nobody_took_over(instances: Instances) -> None:
    a = instances.open()
    a.set_versioned("state", "initial", 0)
    lease = a.acquire_lease(LEASE, "a", 60, T0)
    with pytest.raises(a.LeaseLost):
        a.set_versioned("state", "late", 1, fence=lease, now=T0 + timedelta(seconds=60))
    assert a.get_versioned("state") == ("initial", 1)
    renewed = a.acquire_lease(LEASE, "a", 60, T0 + timedelta(seconds=61))  # renewing first makes it act again
    assert a.set_versioned("state", "renewed", 1, fence=renewed, now=T0 + timedelta(seconds=62)) == 2


def test_a_fenced_write_over_a_moved_revision_is_a_conflict_not_a_lost_lease(instances: Instances) -> None:
    a, b = instances.pair()
    a.set_versioned("state", "initial", 0)
    lease = a.acquire_lease(LEASE, "a", 60, T0)
    b.set("state", "a command on b")  # commands write too; the poller's save re-reads and re-decides
    with pytest.raises(a.Conflict):
        a.set_versioned("state", "tick", 1, fence=lease, now=T0 + timedelta(seconds=1))
    assert a.set_versioned("state", "tick", 2, fence=lease, now=T0 + timedelta(seconds=1)) == 3


def test_a_fence_needs_now_and_now_must_be_aware(instances: Instances) -> None:
    a = instances.open()
    lease = a.acquire_lease(LEASE, "a", 60, T0)
    with pytest.raises(ValueError, match="now"):
        a.set_versioned("state", 1, 0, fence=lease)
    with pytest.raises(ValueError, match="aware"):
        a.acquire_lease(LEASE, "a", 60, datetime(2026, 12, 1, 1, 0))  # naive on purpose
    with pytest.raises(ValueError, match="owner"):
        a.acquire_lease(LEASE, "", 60, T0)


def test_a_released_lease_is_taken_at_once_and_its_releaser_can_no_longer_write(instances: Instances) -> None:
    a, b = instances.pair()
    a.set_versioned("state", "initial", 0)
    lease_a = a.acquire_lease(LEASE, "a", 60, T0)
    b.release_lease(LEASE, "b", T0 + timedelta(seconds=1))  # not b's: nothing happens
    assert b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=2)).owner == "a"
    a.release_lease(LEASE, "a", T0 + timedelta(seconds=3))  # a clean stop
    lease_b = b.acquire_lease(LEASE, "b", 60, T0 + timedelta(seconds=3))
    assert (lease_b.owner, lease_b.fencing) == ("b", 2)
    with pytest.raises(a.LeaseLost):
        a.set_versioned("state", "after release", 1, fence=lease_a, now=T0 + timedelta(seconds=4))


def test_leases_and_once_records_are_not_errbot_keys(instances: Instances) -> None:
    a = instances.open()
    a.set("k", 1)
    a.acquire_lease(LEASE, "a", 60, T0)
    a.put_if_absent("envelope-1", None, 3600, T0)
    assert list(a.keys()) == ["k"]
    assert a.len() == 1
    with pytest.raises(KeyError):
        a.get(LEASE)


# --------------------------------------------------------------------------- once


def test_an_id_is_recorded_once_until_it_expires(instances: Instances) -> None:
    a, b = instances.pair()
    assert a.put_if_absent("Ev01", {"by": "a"}, 3600, T0) is True
    assert b.put_if_absent("Ev01", {"by": "b"}, 3600, T0 + timedelta(seconds=1)) is False  # a redelivery
    assert a.put_if_absent("Ev01", {"by": "a"}, 3600, T0 + timedelta(seconds=3599)) is False
    assert b.put_if_absent("Ev02", None, 3600, T0 + timedelta(seconds=3599)) is True  # another id
    # An hour later the record has expired (compared here: DynamoDB's TTL deletes late, moto's never).
    assert b.put_if_absent("Ev01", {"by": "b"}, 3600, T0 + timedelta(seconds=3600)) is True
    assert a.put_if_absent("Ev01", {"by": "a"}, 3600, T0 + timedelta(seconds=3601)) is False


def test_once_needs_a_positive_ttl(instances: Instances) -> None:
    with pytest.raises(ValueError, match="ttl"):
        instances.open().put_if_absent("x", None, 0, T0)


# --------------------------------------------------------------------------- one API on both backends

API = ("get_versioned", "set_versioned", "put_if_absent", "acquire_lease", "release_lease", "read_lease")


def test_both_backends_offer_the_same_api(tmp_path: Path, emulator: Emulator) -> None:
    sqlite_store = load(storage_config("SQLite", tmp_path)).open("EMR")
    dynamo_store = load(storage_config("DynamoDB", tmp_path, emulator)).open("EMR")
    try:
        for name in API:
            ours, theirs = getattr(type(sqlite_store), name), getattr(type(dynamo_store), name)
            assert str(inspect.signature(ours)) == str(inspect.signature(theirs)), name
        for name in ("Conflict", "LeaseLost"):
            assert issubclass(getattr(sqlite_store, name), Exception)
            assert issubclass(getattr(dynamo_store, name), Exception)
        assert not issubclass(dynamo_store.LeaseLost, dynamo_store.Conflict)  # a retry loop must not spin on it
        assert not issubclass(sqlite_store.LeaseLost, sqlite_store.Conflict)
    finally:
        sqlite_store.close()
        dynamo_store.close()


def test_a_sqlite_database_from_before_revisions_starts_them_at_one(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "EMR.sqlite3")
    old.execute("CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
    import pickle

    old.execute("INSERT INTO kv VALUES ('state', ?)", (pickle.dumps({"v": 4}),))
    old.commit()
    old.close()
    store = load(storage_config("SQLite", tmp_path)).open("EMR")
    try:
        assert store.get_versioned("state") == ({"v": 4}, 1)
        store.set("state", {"v": 5})
        assert store.get_versioned("state") == ({"v": 5}, 2)
    finally:
        store.close()


CALLS: tuple[Callable[[Any], object], ...] = (
    lambda s: s.get_versioned("k"),
    lambda s: s.set_versioned("k", 1, 0),
    lambda s: s.put_if_absent("k", 1, 1, T0),
    lambda s: s.acquire_lease("k", "o", 1, T0),
    lambda s: s.read_lease("k"),
)


@pytest.mark.parametrize("call", CALLS)
def test_a_closed_store_refuses_the_versioned_api(instances: Instances, call: Callable[[Any], object]) -> None:
    from errbot.storage import StoreNotOpenError

    store = instances.open()
    store.close()
    with pytest.raises(StoreNotOpenError):
        call(store)
