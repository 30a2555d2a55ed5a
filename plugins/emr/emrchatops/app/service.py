"""The service: what the plugin does with the state, the ledger and AWS, without the chat.

:class:`Service` owns the state and the usage ledger in the plugin's storage
(behind :class:`Storage`, a mapping), the state lock, the numbered listings,
naming a cluster, the poller's tick with everything under it, and the command
actions. A command action takes plain values (who asks, the words naming the
cluster, the reason, …) and returns the data its reply is rendered from, or
raises a domain error (:mod:`emrchatops.domain.errors`) whose wording comes from the view.

It imports neither errbot nor boto3: AWS is reached through the adapter
(:mod:`emrchatops.aws.adapter`), decisions through the pure layers (:mod:`emrchatops.domain.rules`,
:mod:`emrchatops.domain.decisions`, :mod:`emrchatops.domain.ledger`, :mod:`emrchatops.domain.costs`), and the chat through
two callables that ``emr.py`` passes in: ``announce(text, buttons)`` posts to
NOTIFY_CHANNEL and ``view()`` gives the wording for the chat the bot is on.

Every read-modify-write of the storage happens under ``self._lock``: commands
run on Errbot's thread pool and the poller on its own thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from emrchatops.app.notices import (
    ActivityBack,
    ActivityDown,
    BackstopBack,
    BackstopFailed,
    BecameReady,
    Contended,
    EndedOutside,
    Expired,
    ForceTerminated,
    GoneMeanwhile,
    LeftAlone,
    NoCluster,
    NoOvertime,
    NotAllowed,
    NoTemplate,
    Notice,
    NotTerminated,
    OvertimeAnnounced,
    PollerBack,
    PollerDown,
    PricesFailed,
    ReasonTooLong,
    StartFailed,
    StartFailure,
    StartNotAllowed,
    TargetBack,
    TargetDown,
    TerminatedByRule,
    TerminationFailed,
    Unnamed,
)
from emrchatops.app.ports import (
    Announcer,
    Clusters,
    Conflict,
    LeaseLost,
    Listing,
    PollerLease,
    StateStore,
    Storage,
    Where,
)
from emrchatops.domain.addressing import Located, UnknownTarget, address_cluster, choose_start
from emrchatops.domain.buttons import Buttons, buttons_for
from emrchatops.domain.costs import PricesKept, PricesRead, PriceTable, overlay, prices_due, prices_failed, prices_read
from emrchatops.domain.decisions import (
    Denied,
    NameProblem,
    NoneRunning,
    TemplateProblem,
    active_clusters,
    choose_template,
    hold_to_release,
    may_ask_overtime,
    may_start,
    may_terminate,
    name_cluster,
)
from emrchatops.domain.errors import (
    AccessDeniedError,
    AwsError,
    NoClusterError,
    RefusedError,
    UnknownClusterError,
    UsageError,
    one_line,
)
from emrchatops.domain.ledger import (
    CostSoFar,
    Ledger,
    Report,
    cost_so_far,
    ended,
    follow,
    instance_types,
    instances_due,
    instances_failed,
    instances_seen,
    resize_check_due,
    seen,
    watch,
)
from emrchatops.domain.ledger import (
    bounded as ledger_bounded,
)
from emrchatops.domain.ledger import (
    report as usage_report,
)
from emrchatops.domain.rules import (
    PERIOD as ACTIVITY_PERIOD,
)
from emrchatops.domain.rules import (
    Cancelled,
    Expire,
    Policy,
    Ready,
    Remind,
    Terminate,
    Warn,
    activity_seen,
    activity_unknown,
    add_hold,
    after_end_of_day,
    backstop_due,
    backstop_failed,
    backstop_set,
    drop_hold,
    needs_step_check,
    observe,
    overtime_until,
    plan_tick,
    refused_termination,
    set_overtime,
    settle,
    started,
    steps_seen,
    terminated,
    termination_failed,
    termination_refusal,
    to_recheck,
)
from emrchatops.domain.settings import Settings, policy_tag
from emrchatops.domain.state import REASON_LIMIT, ClusterInfo, ClusterRecord, Event, Hold, State
from emrchatops.domain.templates import Template, start_tags
from emrchatops.domain.vocabulary import ACTIVE_STATES

log = logging.getLogger("errbot.plugins.emr")

ATTEMPTS = 5  # a command whose save lost the race with another instance is decided again this often
R = TypeVar("R")


def _termination_failed(cluster_id: str, code: str, message: str, now: datetime, state: State) -> tuple[State, bool]:
    return termination_failed(state, cluster_id, code, message, now)


def _backstop_failed(cluster_id: str, code: str, state: State) -> tuple[State, bool]:
    return backstop_failed(state, cluster_id, code)


def _backstop_set(cluster_id: str, wanted: int, state: State) -> tuple[State, bool]:
    return backstop_set(state, cluster_id, wanted)


def retried(action: Callable[..., R]) -> Callable[..., R]:
    """A command decided again from the state as stored when its save lost a race (:class:`Conflict`).

    Only for commands whose work before the save is a decision on the state (and AWS reads): one
    that changed AWS first (terminate, start) re-applies its own change instead (:meth:`Service._commit`).
    """

    @functools.wraps(action)
    def again(self: Service, *args: Any, **kwargs: Any) -> R:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return action(self, *args, **kwargs)
            except Conflict as error:
                log.info(
                    "%s: the state moved on meanwhile (attempt %d), deciding again: %s", action.__name__, attempt, error
                )
        raise RefusedError.of(Contended())

    return again


STATE_KEY = "state"
LEDGER_KEY = "ledger"
PRICES_KEY = "prices"  # PRICES=api: what the bot read from AWS's Price List (domain.costs.PricesKept)
# PRICES=api: reads the prices of (region, instance types) from AWS's Price List, marked read on that day;
# raises AwsError (one line) when it cannot (emrchatops.aws.prices.ApiPrices).
PriceReader = Callable[[str, Sequence[str], date], PricesRead]
INSTANCES_RETRY = ACTIVITY_PERIOD  # a failed read of a cluster's instances is retried after 5 minutes


@dataclass(frozen=True)
class Who:
    """Who asks: a stable identity, the name shown, whether they are a bot admin (everywhere), and the
    targets whose ``admins`` list them (there only)."""

    user: str
    name: str
    admin: bool = False
    admin_of: frozenset[str] = frozenset()

    def admin_on(self, target: str) -> bool:
        """May --force and unlock --user on *target*'s clusters."""
        return self.admin or target in self.admin_of


@dataclass(frozen=True)
class Locked:
    state: State
    record: ClusterRecord
    now: datetime
    overtime_possible: bool


@dataclass(frozen=True)
class Released:
    state: State
    record: ClusterRecord
    hold: Hold
    now: datetime


@dataclass(frozen=True)
class Terminating:
    record: ClusterRecord
    others: list[Hold]


@dataclass(frozen=True)
class OvertimeSet:
    record: ClusterRecord
    until: datetime


@dataclass(frozen=True)
class Starting:
    state: State
    record: ClusterRecord
    template: Template
    now: datetime
    evening: bool


@dataclass(frozen=True)
class Status:
    """What ``!emr status`` shows: the clusters both the listing and the state agree on (none: say so)."""

    state: State
    records: list[tuple[ClusterRecord, ClusterInfo]]
    costs: dict[str, CostSoFar]
    now: datetime
    activity_problem: str | None


@dataclass(frozen=True)
class ReportData:
    """What ``!emr report DAYS`` shows."""

    report: Report
    now: datetime


class Service:
    """The cluster's state, the poller's rules and the commands' actions; the chat is two callables.

    One service lives as long as the plugin object. Each activation starts it afresh
    (:meth:`reset`, then :meth:`open`): a new state lock, no cached state or ledger, new
    counters — as the plugin's own attributes did before the service was split out. So a
    tick of the previous activation still in flight (Errbot cannot stop it) goes on with
    the current lock and re-reads the current state, never a copy cached before.
    """

    settings: Settings
    policy: Policy
    adapter: Clusters

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], datetime],
        announce: Announcer,
    ) -> None:
        self.clock = clock
        self._storage = storage
        self._announce_to_chat = announce

    def reset(self, settings: Settings) -> None:
        """Start afresh for an activation with *settings* (before the plugin's storage opens)."""
        self.settings = settings
        self.policy = Policy(
            idle_minutes=settings.idle_minutes,
            warn_minutes=settings.warn_minutes,
            end_of_day=settings.end_of_day,
            timezone=settings.timezone,
            remind_minutes=settings.hold_remind_minutes,
            grace_minutes=settings.hold_grace_minutes,
        )
        self._lock = threading.RLock()
        self._depth = 0  # nesting of _transaction() on the thread that holds the lock
        self._revision = 0  # the stored state's revision the cached state was read at
        self._fenced = threading.local()  # the poller thread's lease (its saves are fenced by it)
        self._poll_failure: str | None = None
        self.targets = {t.name: t for t in settings.targets}  # by name, in the file's order
        self._home: Where = (settings.targets[0].name, settings.targets[0].regions[0])  # state from before targets
        self._target_failures: dict[str, str] = {}  # target -> the failure code announced (TargetDown)
        self._state: State | None = None  # decoded copy of the stored state, see _load
        self._ledger: Ledger | None = None  # the usage ledger's latest fold, see _load_ledger
        self._ledger_stored: Ledger | None = None  # … and what storage holds
        self._instances_tried: dict[str, tuple[str, datetime]] = {}  # cluster id -> (state, when) of a failed read
        self._instances_lock = threading.Lock()
        # cluster id -> (the last read of its instances, whether a group was resizing then): resizes (DESIGN §13)
        self._instances_read: dict[str, tuple[datetime, bool]] = {}
        # Listings are numbered when they start; one older than the last folded is stale (see _refresh).
        self._listings = itertools.count(1)
        self._folded = 0
        self._rechecked: dict[str, datetime] = {}  # cluster id -> last DescribeCluster of an unlisted record
        self._activity_read_at: datetime | None = None  # the last GetMetricData (at most one per 5 minutes)
        self._activity_failure: str | None = None  # CloudWatch's last failure, announced once
        # One `!emr start` at a time: two at the same moment must not both see "nothing active" and start two.
        self._start_lock = threading.Lock()
        # Backstop changes one at a time, each on the latest state: the last one to run leaves EMR's policy
        # matching the holds, whatever order concurrent lock/unlock commands ran in.
        self._backstop_lock = threading.Lock()
        self._backstop_tried: dict[str, datetime] = {}  # cluster id -> the last backstop request (retries)
        self.price_reader: PriceReader | None = None  # PRICES=api (set by open)
        self._prices_kept: PricesKept | None = None  # decoded copy of the stored prices, see _load_prices
        self._priced: tuple[PricesKept, PriceTable] | None = None  # the table they were laid over into

    def _announce(self, notice: Notice, buttons: Buttons | None = None) -> None:
        self._announce_to_chat(notice, buttons)

    # -- lifecycle --------------------------------------------------------------------
    def open(
        self,
        adapter: Clusters,
        states: StateStore,
        lease: PollerLease | None = None,
        price_reader: PriceReader | None = None,
    ) -> None:
        """Talk to AWS through *adapter*, keep the state in *states* (versioned), run the rules only while
        holding *lease* (several instances; None: this process is the only one), read prices with
        *price_reader* (PRICES=api). Refuse to start on state, a usage ledger or stored prices we cannot
        read (or a newer format)."""
        self.adapter = adapter
        self._states = states
        self._lease = lease
        self.price_reader = price_reader
        with self._transaction():
            state = self._load()
            if LEDGER_KEY not in self._storage:  # an upgrade: the ledger starts from the state's clusters and holds
                self._storage[LEDGER_KEY] = Ledger.from_dict(None, state).to_dict()
            Ledger.from_dict(self._storage.get(LEDGER_KEY), None, self._home)
            if price_reader is not None:
                self._load_prices()

    @contextlib.contextmanager
    def closing(self) -> Iterator[None]:
        """Under the state lock (a tick in flight finishes its state change first): the latest fold is written."""
        with self._lock:
            if self._ledger is not None and self._leads:
                with contextlib.suppress(Exception):  # a clean stop keeps the latest fold (best effort)
                    self._write_ledger()
            if self._lease is not None and self._leads:
                with contextlib.suppress(Exception):  # the next instance takes over at its next tick
                    self._lease.release(self.clock())
            yield

    # -- state ------------------------------------------------------------------------
    def state(self) -> State:
        """The current state (a consistent copy, taken under the lock)."""
        with self._transaction():
            return self._load()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """The state lock; on a store other processes write too, the first load inside reads it afresh.

        With one process the last state saved or read stays decoded (the process is the only
        writer); with several (DynamoDB) a command must see a hold acknowledged on the other
        instance, so each outermost transaction starts from storage.
        """
        with self._lock:
            self._depth += 1
            try:
                if self._depth == 1 and self._states.shared:
                    self._state = None
                yield
            finally:
                self._depth -= 1

    def _load(self) -> State:
        """The current state (call under ``self._lock``).

        Storage is the source of truth, but this plugin is its only writer, so
        the last state saved (or read) is kept decoded: a command then pays for
        one storage write instead of a read-decode-encode-write round.
        """
        if self._state is None:
            data, self._revision = self._states.load()
            self._state = State.from_dict(data, self._home)
        return self._state

    def _save(self, state: State) -> None:
        """Write *state* over the revision it was decided on (a :class:`Conflict` when another instance
        wrote meanwhile: nothing written, the next load reads afresh); the poller's saves are fenced
        by its lease, so an instance that lost the lease never acts on what it decided."""
        try:
            self._revision = self._states.save(
                state.to_dict(), self._revision, getattr(self._fenced, "fence", None), self.clock()
            )
        except (Conflict, LeaseLost):
            self._state = None
            raise
        self._state = state
        self._save_ledger(follow(self._load_ledger(), state, self.clock()))

    def _commit(self, change: Callable[[State], State]) -> State:
        """Apply *change* to the state as stored and save it; after a :class:`Conflict` read it again and
        apply *change* again (for what AWS already did, which is not to be done twice)."""
        return self._apply(lambda stored: (change(stored), None))[0]

    def _apply(self, change: Callable[[State], tuple[State, R]]) -> tuple[State, R]:
        """:meth:`_commit` for a change that also tells something (*change* returns the new state and it);
        an unchanged state is not written."""
        for _ in range(ATTEMPTS):
            with self._transaction():
                old = self._load()
                new, said = change(old)
                if new is old or new == old:
                    return old, said
                try:
                    self._save(new)
                except Conflict:
                    continue
                return new, said
        raise RefusedError.of(Contended())

    def _load_ledger(self) -> Ledger:
        """The usage ledger (call under ``self._lock``); kept decoded like the state."""
        if self._ledger is None:
            self._ledger = self._ledger_stored = Ledger.from_dict(
                self._storage.get(LEDGER_KEY), self._load(), self._home
            )
        return self._ledger

    def _save_ledger(self, ledger: Ledger) -> None:
        """Keep the ledger's latest fold; it is written by the poller (:meth:`_write_ledger`), not by commands.

        A command's fold needs no write of its own: the spans it opens or closes are dated by the
        state it saved (a hold's ``since``, the last release, the termination), and the next tick's
        fold finds them there again, also after a restart or a ``kill -9``. So lock and unlock pay one
        storage write (the state), as before the ledger.
        """
        self._ledger = ledger

    def _write_ledger(self) -> None:
        """Write the ledger if it changed since it was last written (call under ``self._lock``).

        Its heartbeats move once a minute, so a steady tick writes it at most once a minute.
        """
        ledger = self._load_ledger()
        if ledger is self._ledger_stored or ledger == self._ledger_stored:
            return
        self._storage[LEDGER_KEY] = ledger.to_dict()
        self._ledger_stored = ledger

    # -- prices (PRICES=api) -------------------------------------------------------------
    def _load_prices(self) -> PricesKept:
        """The prices read from AWS so far (call under ``self._lock``); kept decoded like the state."""
        if self._prices_kept is None:
            self._prices_kept = PricesKept.from_dict(self._storage.get(PRICES_KEY))
        return self._prices_kept

    def prices_kept(self) -> PricesKept | None:
        """What PRICES=api has read so far (None: PRICES=file)."""
        if self.price_reader is None:
            return None
        with self._lock:
            return self._load_prices()

    def prices(self) -> PriceTable:
        """The price table costs are computed with: the settings' table, and (PRICES=api) AWS's prices over it."""
        kept = self.prices_kept()
        if kept is None:
            return self.settings.prices
        priced = self._priced
        if priced is None or priced[0] is not kept:
            priced = self._priced = (kept, overlay(self.settings.prices, kept))
        return priced[1]

    def _read_prices_if_due(self) -> None:
        """PRICES=api: read the prices of the types the bot has seen, once a day (DESIGN §19).

        A failure keeps the last prices, is logged, and is announced when the failures begin
        (not again until a read works); the next attempt is an hour later.
        """
        reader = self.price_reader
        if reader is None:
            return
        now = self.clock()
        region = self.settings.region
        with self._lock:
            kept = self._load_prices()
            types = sorted(instance_types(self._load_ledger()))
        if not prices_due(kept, [(region, t) for t in types], now):
            return
        try:
            read = reader(region, types, now.date())
        except Exception as error:
            why = one_line(str(error)) if isinstance(error, AwsError) else "an unexpected error (see the bot's log)"
            log.warning(
                "EMR: cannot read AWS's prices (the last ones stay): %s", why, exc_info=not isinstance(error, AwsError)
            )
            with self._lock:
                before = self._load_prices()
                self._save_prices(prices_failed(before, why, now))
            if before.failure is None:
                self._announce(PricesFailed(why, before))
            return
        for missing in read.missing:
            log.warning("EMR: %s (PRICES=api): its cost uses the price table, or is unknown", missing)
        with self._lock:
            self._save_prices(prices_read(self._load_prices(), read, now))
        log.info("EMR: read AWS's prices of %s in %s", ", ".join(types), region)

    def _save_prices(self, kept: PricesKept) -> None:
        self._storage[PRICES_KEY] = kept.to_dict()
        self._prices_kept = kept

    @property
    def _watch_gap(self) -> timedelta:
        """A longer pause between two ticks means the bot was down: that time is not watched."""
        return timedelta(seconds=2 * self.settings.poll_seconds + 60)

    def _refresh(self) -> tuple[State, Listing]:
        """List the clusters (outside the lock) and fold the listing into the state, unless it is stale.

        A tick and a command may list at the same time; the one that started
        listing first may finish last. Folding that older listing would undo
        what the newer one (and a command in between) recorded, so a listing
        is folded only if it started after the last one folded.
        """
        number = next(self._listings)
        asked = self.clock()
        listing = self.adapter.list_clusters()
        now = self.clock()
        with self._transaction():
            old = self._load()
            if number < self._folded:
                return old, listing
            self._folded = number
            # A steady-state status or tick writes nothing; a write that lost a race is folded again.
            state, _ = self._apply(
                lambda stored: (
                    observe(stored, listing.managed, now, listed_since=asked, unreached=listing.unreached),
                    None,
                )
            )
            self._save_ledger(seen(self._load_ledger(), listing.managed, now))
        return state, listing

    def _target(self, words: str, *, rest_allowed: bool = False) -> tuple[ClusterInfo, str]:
        """The managed cluster some words name (and the words after its name); refusals as domain errors."""
        state, listing = self._refresh()
        listed = [c for c in listing.managed if c.id in state.clusters and state.clusters[c.id].listed]
        try:
            if not self.several:  # one target in one region: names as they always were
                return name_cluster(words, listed, listing.others, rest_allowed=rest_allowed)
            found, rest = address_cluster(
                words,
                [_located(c) for c in listed],
                [_located(c) for c in listing.others],
                targets=list(self.targets),
                rest_allowed=rest_allowed,
            )
            return found.cluster, rest
        except NoneRunning:
            raise NoClusterError.of(NoCluster(state)) from None
        except NameProblem as problem:
            raise UnknownClusterError.of(Unnamed(problem)) from None

    @contextlib.contextmanager
    def _editing(self, cluster: ClusterInfo) -> Iterator[tuple[State, ClusterRecord]]:
        """Under the state lock: the current state and the cluster's record, or a refusal if it is gone meanwhile."""
        with self._transaction():
            state = self._load()
            record = state.clusters.get(cluster.id)
            if record is None or not record.listed:
                raise UnknownClusterError.of(GoneMeanwhile(cluster))
            yield state, record

    # -- the poller -------------------------------------------------------------------
    @property
    def _leads(self) -> bool:
        """Whether this instance runs the rules: it is the only one, or it held the lease at its last tick."""
        return self._lease is None or getattr(self, "_led", False)

    def tick(self) -> None:
        """One pass of the automatic rules. Never raises: the poller must survive everything.

        With several instances (a lease), only the lease's holder runs it, and each of its saves
        is fenced by the lease: an instance paused past its lease finds its save refused and acts
        on nothing it decided. A save that lost a race with a command is decided again next tick.
        """
        if self._lease is not None:
            try:
                fence = self._lease.acquire(self.clock())
            except Exception:
                log.warning("EMR poller: the lease could not be read; this tick runs nowhere", exc_info=True)
                fence = None
            if fence is None:
                if getattr(self, "_led", False):
                    log.info("EMR poller: another instance holds the lease now")
                self._led = False
                return
            if not getattr(self, "_led", False):
                log.info("EMR poller: this instance holds the lease (fencing %d) and runs the rules", fence.fencing)
            self._led = True
            self._fenced.fence = fence
        try:
            self._tick()
        except LeaseLost as error:
            self._led = False
            log.warning("EMR poller: the lease moved on during the tick; nothing more is acted on: %s", error)
        except Conflict as error:
            log.info("EMR poller: a command wrote the state meanwhile; decided again next tick: %s", error)
        except AwsError as error:
            if self._poll_failure != error.code:
                self._poll_failure = error.code
                self._announce(PollerDown(str(error)))
            log.warning("EMR poller tick failed: %s", error)
        except Exception:
            log.exception("EMR poller tick failed")
        finally:
            self._fenced.fence = None

    def _tick(self) -> None:
        state, listing = self._refresh()
        if self._poll_failure is not None:
            self._poll_failure = None
            self._announce(PollerBack())
        self._note_unreached(listing)
        self._recheck_unlisted(state)
        self._read_instances_where_due()
        self._read_prices_if_due()
        self._read_activity_if_due()
        self._read_steps_where_due()
        now = self.clock()
        with self._transaction():
            old = self._load()
            state, effects = plan_tick(old, self.policy, now)
            if state != old:
                self._save(state)
            ledger = watch(self._load_ledger(), now, self._watch_gap)
            self._save_ledger(ledger_bounded(follow(ledger, state, now), now))
            self._write_ledger()
        for effect in effects:
            if isinstance(effect, Warn):
                buttons = buttons_for(effect.deadline.rule, effect.cluster.id, effect.deadline.at)
                self._announce(effect, buttons)
            elif isinstance(effect, Cancelled):
                self._announce(effect)
            elif isinstance(effect, Remind):
                buttons = buttons_for("reminder", effect.cluster.id, effect.ends_at, effect.hold.user)
                self._announce(effect, buttons)
            elif isinstance(effect, Expire):
                self._announce(Expired(effect, state, now))
            elif isinstance(effect, Terminate):
                self._terminate_by_rule(effect)
            elif isinstance(effect, Ready):
                self._announce(BecameReady(effect, state, now))
        self._sync_backstop()

    def _note_unreached(self, listing: Listing) -> None:
        """Announce a target whose listing failed (once per failure, in its channel), and its recovery;
        the other targets' rules ran as usual, its clusters were kept (DESIGN §17)."""
        down: dict[str, list[tuple[str, AwsError]]] = {}
        for (target, region), error in listing.unreached.items():
            down.setdefault(target, []).append((region, error))
        for target, failures in down.items():
            first = failures[0][1]
            log.warning("EMR poller: cannot list %s in %s: %s", target, ", ".join(r for r, _ in failures), first)
            if self._target_failures.get(target) != first.code:
                self._target_failures[target] = first.code
                regions = tuple(r for r, _ in failures)
                self._announce(TargetDown(target, self._account(target), regions, str(first)))
        for target in [t for t in self._target_failures if t not in down]:
            del self._target_failures[target]
            self._announce(TargetBack(target, self._account(target)))

    @property
    def several(self) -> bool:
        """Whether the bot serves more than one (target, region): clusters are then named across them."""
        return len(self.targets) > 1 or any(len(t.regions) > 1 for t in self.targets.values())

    def _account(self, target: str) -> str:
        known = self.targets.get(target)
        return known.account if known is not None else "?"

    def _recheck_unlisted(self, state: State) -> None:
        """Ask AWS about remembered clusters the listing did not show: ended, untagged, or just not listed."""
        now = self.clock()
        for cluster_id in to_recheck(state, self._rechecked, now):
            self._rechecked[cluster_id] = now
            try:
                info = self.adapter.describe(state.clusters.get(cluster_id) or cluster_id)
            except AwsError as error:  # kept as it is: absence proves nothing
                log.warning("EMR poller: cannot re-read %s: %s", cluster_id, error)
                continue
            with self._transaction():
                old = self._load()
                new, settled = settle(old, info, self.clock())
                if new != old:
                    self._save(new)
            if settled.kind in ("start_failed", "ended"):
                with self._transaction():
                    self._save_ledger(ended(self._load_ledger(), info, self.clock()))
            if settled.kind == "start_failed":
                self._rechecked.pop(cluster_id, None)
                self._announce(StartFailure(settled.record, info))
            elif settled.kind == "ended":
                self._rechecked.pop(cluster_id, None)
                record = settled.record
                if record.ending is None and (record.holds or record.doomed is not None):
                    self._announce(EndedOutside(record, info))
            elif settled.kind == "unmanaged":
                self._announce(LeftAlone(settled.record))

    def _read_instances_where_due(self, only: list[str] | None = None) -> None:
        """Read what the clusters run (for their cost): once, again after a state change, and (the poller)
        every 5 minutes to notice a resize, every minute while one is under way (DESIGN §13).

        A failure is logged and retried after INSTANCES_RETRY.
        """
        with self._instances_lock:  # single flight: a status and a tick seeing a new cluster read it once
            self._read_instances(only)

    def _read_instances(self, only: list[str] | None) -> None:
        now = self.clock()
        with self._transaction():
            state = self._load()
            due = [cid for cid in instances_due(self._load_ledger(), state) if only is None or cid in only]
        if only is None:  # the poller: a resize leaves the cluster state as it is, so look for one
            listed = {r.id for r in state.listed()}
            for cluster_id in list(self._instances_read):
                if cluster_id not in listed:
                    del self._instances_read[cluster_id]
            for cluster_id in sorted(listed - set(due)):
                read = self._instances_read.setdefault(cluster_id, (now, False))  # after a restart: from now
                if resize_check_due(cluster_id, read[0], now, read[1]):
                    due.append(cluster_id)
        for cluster_id in due:
            cluster_state = state.clusters[cluster_id].state
            tried = self._instances_tried.get(cluster_id)
            if tried is not None and tried[0] == cluster_state and now - tried[1] < INSTANCES_RETRY:
                continue
            try:
                composition, changing = self.adapter.read_instances(state.clusters.get(cluster_id) or cluster_id)
            except AwsError as error:
                self._instances_tried[cluster_id] = (cluster_state, now)
                self._instances_read[cluster_id] = (now, False)
                log.warning("EMR: cannot read the instances of %s (its cost stays unknown): %s", cluster_id, error)
                if isinstance(error, AccessDeniedError):
                    problem = f"AWS denied {error.action}"
                else:
                    problem = one_line(str(error))[:200]
                with self._transaction():  # the report says why this cluster's cost is unknown
                    self._save_ledger(instances_failed(self._load_ledger(), self._load(), cluster_id, problem))
                continue
            self._instances_tried.pop(cluster_id, None)
            self._instances_read[cluster_id] = (now, changing)
            with self._transaction():
                self._save_ledger(instances_seen(self._load_ledger(), self._load(), cluster_id, composition, now))

    def _read_activity_if_due(self) -> None:
        """Read IsIdle of the managed clusters (one GetMetricData), at most once per metric period.

        A CloudWatch failure is announced once (not every tick); meanwhile the
        idle rule goes by the cluster state and steps (activity read longer than
        three periods ago is forgotten).
        """
        now = self.clock()
        if self.settings.activity == "off":
            return
        with self._transaction():
            state = self._load()
            if self._activity_read_at is not None and now - self._activity_read_at < ACTIVITY_PERIOD:
                return
            listed = state.listed()
        if not listed:
            return
        self._activity_read_at = now
        window = max(self.policy.idle, self.policy.remind or self.policy.idle) + ACTIVITY_PERIOD
        try:
            readings = self.adapter.read_activity(listed, now, window)
        except AwsError as error:
            with self._transaction():
                old = self._load()
                new = activity_unknown(old, now)
                if new != old:
                    self._save(new)
            if self._activity_failure != error.code:
                self._activity_failure = error.code
                self._announce(ActivityDown(str(error)))
            log.warning("EMR poller: cannot read IsIdle: %s", error)
            return
        if self._activity_failure is not None:
            self._activity_failure = None
            self._announce(ActivityBack())
        with self._transaction():
            old = self._load()
            new = activity_seen(old, readings, now)
            if new != old:
                self._save(new)

    @property
    def activity_problem(self) -> str | None:
        """Why activity is unknown for every cluster, or None (then per cluster: no datapoint yet)."""
        if self.settings.activity == "off":
            return "ACTIVITY=off"
        if self._activity_failure is not None:
            return f"CloudWatch: {self._activity_failure}; see !emr doctor"
        return None

    def _read_steps_where_due(self) -> None:
        """Before the idle rule warns or terminates, fold in steps that listings cannot show."""
        now = self.clock()
        with self._transaction():
            state = self._load()
            due = [r for r in state.listed() if needs_step_check(state, r, self.policy, now)]
        for record in due:
            cluster_id = record.id
            try:
                last_end, busy = self.adapter.latest_step(record)
            except AwsError as error:  # the idle rule then goes by the cluster state alone
                log.warning("EMR poller: cannot read the steps of %s: %s", cluster_id, error)
                continue
            with self._transaction():
                old = self._load()
                new = steps_seen(old, cluster_id, last_end, busy, now)
                if new != old:
                    self._save(new)

    def _sync_backstop(self, only: str | None = None) -> None:
        """Make EMR's AutoTerminationPolicy match the holds (DESIGN §12): one request per cluster that changed.

        Called by the poller for every managed cluster and by a command for its own (*only*), after
        the command's state is saved. Never raises: a failure is noted in the state, announced once,
        and retried (the poller: at most every 5 minutes); the command has answered regardless.
        """
        seconds = self.settings.backstop_seconds
        if seconds is None:
            return  # BACKSTOP_MINUTES off: the bot leaves EMR's policy alone
        with self._backstop_lock:
            now = self.clock()
            with self._transaction():
                state = self._load()
                due = backstop_due(state, seconds, now, self._backstop_tried, only)
            for cluster_id, wanted in due:
                record = state.clusters[cluster_id]
                self._backstop_tried[cluster_id] = now
                try:
                    if wanted:
                        self.adapter.put_backstop(record, wanted)
                    else:
                        self.adapter.remove_backstop(record)
                except AwsError as error:
                    log.warning("EMR backstop of %s not changed: %s", cluster_id, error)
                    is_new = self._note_backstop(functools.partial(_backstop_failed, cluster_id, error.code))
                    if is_new:
                        self._announce(BackstopFailed(record, wanted, str(error)))
                    continue
                recovered = self._note_backstop(functools.partial(_backstop_set, cluster_id, wanted))
                if recovered:
                    self._announce(BackstopBack(record, wanted))

    def _note_backstop(self, change: Callable[[State], tuple[State, bool]]) -> bool:
        """Record what a backstop request did (the command that made it has saved and answered already: a
        state that kept changing elsewhere leaves it to the poller, which compares policy and holds again)."""
        try:
            return self._apply(change)[1]
        except RefusedError:
            log.warning("EMR backstop: its outcome not recorded (the state kept changing); the poller checks again")
            return False

    def _terminate_by_rule(self, effect: Terminate) -> None:
        cluster_id, rule = effect.cluster.id, effect.rule
        # The state lock is held across the re-read and TerminateJobFlows on purpose: a
        # `!emr lock` arriving in between must either land before the decision (and
        # cancel it) or after the termination (and be refused) — never be acknowledged
        # and then have its cluster terminated. Commands wait at most one AWS round trip.
        with self._transaction():
            state = self._load()
            record = state.clusters.get(cluster_id)
            if record is None or record.doomed is None or not record.listed:
                return  # a hold cancelled it, or it is already gone
            now = self.clock()
            claimed = False
            try:
                fresh = self.adapter.describe(record)
                why = termination_refusal(record, fresh, effect.expect)
                if why is None and self._states.shared:
                    # Another instance takes commands too, and the lock above is this process's only: the
                    # termination is claimed in the shared state first (a conditional, fenced save). A hold
                    # saved there meanwhile makes the claim fail (decided again next tick); one asked after
                    # it finds the cluster being terminated and is refused. Never acknowledged, then lost.
                    self._save(terminated(state, cluster_id, now, rule=rule, who=None))
                    claimed = True
                if why is None:
                    self.adapter.terminate(record)
            except AwsError as error:
                if claimed:  # AWS did not terminate it: the record as it was, its failure noted
                    state = self._commit(lambda stored: stored.with_cluster(record))
                failure = functools.partial(_termination_failed, cluster_id, error.code, str(error), now)
                state, is_new = self._apply(failure)
                if is_new:
                    self._announce(TerminationFailed(record, rule, str(error)))
                return
            if why is not None:
                self._save(refused_termination(state, cluster_id, fresh, why, now))
            elif not claimed:
                self._save(terminated(state, cluster_id, now, rule=rule, who=None))
        if why is not None:
            self._announce(Cancelled(record, rule, why))
        else:
            self._announce(TerminatedByRule(record, rule))

    # -- the commands' actions ----------------------------------------------------------
    @retried
    def status(self, words: str) -> Status:
        """The clusters *words* name (all the managed ones if none), with their costs so far."""
        shown = self._shown(words)
        now = self.clock()
        with self._transaction():
            state = self._load()
        # A listing may be older than the state (a termination in between): show what both agree on.
        records = [(state.clusters[c.id], c) for c in shown if c.id in state.clusters and state.clusters[c.id].listed]
        if not records:
            return Status(state, [], {}, now, self.activity_problem)
        self._read_instances_where_due(only=[r.id for r, _ in records])  # a cluster seen for the first time
        with self._transaction():
            ledger = self._load_ledger()
        prices = self.prices()
        costs = {r.id: cost_so_far(ledger, prices, r.region or self.settings.region, r.id, now) for r, _ in records}
        return Status(state, records, costs, now, self.activity_problem)

    def _shown(self, words: str) -> list[ClusterInfo]:
        """``!emr status [TARGET|CLUSTER]``: every managed cluster, a target's, or one."""
        word = words.strip()
        if not word:
            return self._refresh()[1].managed
        if self.several:
            named = [t for t in self.targets if t.casefold() == word.casefold()]
            if named:
                return [c for c in self._refresh()[1].managed if c.target == named[0]]
        return [self._target(words)[0]]

    @retried
    def report(self, days: int, target: str | None = None) -> ReportData:
        """The usage report of the last *days* days (of *target*'s clusters only)."""
        now = self.clock()
        with self._transaction():  # a consistent copy; the figures are computed outside the lock (a tick may run)
            active = list(self._load().clusters)
            ledger = watch(self._load_ledger(), now, self._watch_gap, exact=True)
        settings = self.settings
        figures = usage_report(
            ledger, self.prices(), settings.region, settings.timezone, days, now, settings.end_of_day, active, target
        )
        return ReportData(figures, now)

    @retried
    def history(self, count: int) -> Sequence[Event]:
        """The last *count* events."""
        with self._transaction():
            return self._load().history[-count:]

    def start(self, who: Who, words: str, templates: dict[str, Template] | None = None) -> Starting:
        """Start a cluster from the template *words* name (the rest is the reason); its starter holds it.

        *templates*: those of the one target (by default its TEMPLATES_DIR's); serving several, the
        words are ``[TARGET/]TEMPLATE [REASON…]`` over every target's templates, and the cluster starts
        in the target's first region.
        """
        try:
            if self.several:
                owned = {name: {t.name: t for t in target.templates} for name, target in self.targets.items()}
                target_name, name_of, reason = choose_start(words, {n: list(ts) for n, ts in owned.items()})
                template = owned[target_name][name_of]
            else:
                target_name = self._home[0]
                own = templates if templates is not None else {t.name: t for t in self.settings.templates}
                name_of, reason = choose_template(words, list(own))
                template = own[name_of]
        except UnknownTarget as problem:
            raise UsageError.of(Unnamed(problem)) from None
        except TemplateProblem as problem:
            raise UsageError.of(NoTemplate(problem)) from None
        where: Where = (target_name, self.targets[target_name].regions[0])
        reason = self._reason(reason)
        # Single flight: the refusals are decided and RunJobFlow made under one lock, and the new cluster is
        # in the state before the lock is let go, so a second `!emr start` sees it (a listing may not yet).
        with self._start_lock:
            state, listing = self._refresh()
            managed = listing.managed
            if self.several:  # MAX_CLUSTERS and a cluster of the same name count in the template's target
                state = dataclasses.replace(
                    state, clusters={cid: r for cid, r in state.clusters.items() if r.target == target_name}
                )
                managed = [c for c in managed if c.target == target_name]
            refused = may_start(template, active_clusters(state, managed), self.settings.max_clusters)
            if refused is not None:
                raise RefusedError.of(StartNotAllowed(refused))
            backstop = self.settings.backstop_seconds
            try:
                request = template.run_job_flow(self._start_tags(template, who.user, target_name), backstop)
                cluster_id = self.adapter.start(request, where)
            except AwsError as error:
                raise RefusedError.of(StartFailed(template, error)) from None
            now = self.clock()
            state = self._commit(
                lambda stored: started(
                    stored,
                    cluster_id,
                    template.cluster_name,
                    template.name,
                    who.user,
                    who.name,
                    reason,
                    now,
                    backstop=backstop,
                    where=where,
                )
            )
        self._sync_backstop(cluster_id)  # the starter's hold: EMR's idle timeout comes off again
        record = state.clusters[cluster_id]
        return Starting(state, record, template, now, after_end_of_day(self.policy, now))

    def _reason(self, words: str) -> str:
        """The reason as stored: one line, at most REASON_LIMIT characters (refused beyond)."""
        reason = " ".join(words.split())
        if len(reason) > REASON_LIMIT:
            raise UsageError.of(ReasonTooLong(len(reason), REASON_LIMIT))
        return reason

    def _start_tags(self, template: Template, user: str, target: str) -> dict[str, str]:
        managed = policy_tag(self.targets[target].cluster_tag)  # with CLUSTER_TAG `*`: the shipped policy's tag
        assert managed.key is not None
        return start_tags((managed.key, managed.value or "true"), template.name, user)

    @retried
    def lock(self, who: Who, words: str) -> Locked:
        """*who* holds the cluster *words* name (the rest is the reason)."""
        cluster, reason = self._target(words, rest_allowed=True)
        reason = self._reason(reason)
        with self._editing(cluster) as (state, _):
            now = self.clock()
            state = add_hold(state, cluster.id, who.user, who.name, reason, now)
            self._save(state)
        self._sync_backstop(cluster.id)  # a first hold removes EMR's idle timeout
        record = state.clusters[cluster.id]
        return Locked(state, record, now, self._overtime_possible(state, record, now))

    def _overtime_possible(self, state: State, record: ClusterRecord, now: datetime) -> bool:
        """Whether `!emr overtime` would be accepted now (so a reply never promises what it refuses)."""
        try:
            overtime_until(self.policy, state, record, None, now)
        except ValueError:
            return False
        return True

    @retried
    def unlock(self, who: Who, words: str, target: str | None) -> Released:
        """Release *who*'s hold on the cluster *words* name, or (an admin) *target*'s."""
        cluster, _ = self._target(words)
        with self._editing(cluster) as (state, record):
            decision = hold_to_release(record, who.user, who.name, target, admin=who.admin_on(record.target))
            if isinstance(decision, Denied):
                raise RefusedError.of(NotAllowed(decision, record))
            now = self.clock()
            by = who.name if decision.user != who.user else None
            state = drop_hold(state, cluster.id, decision.user, now, by=by)
            self._save(state)
        self._sync_backstop(cluster.id)  # the last release puts EMR's idle timeout back
        return Released(state, state.clusters[cluster.id], decision, now)

    @retried
    def terminate(self, who: Who, words: str, *, force: bool) -> Terminating:
        """Terminate the cluster *words* name now (others' holds: an admin's *force* only); others hear of it."""
        cluster, _ = self._target(words)
        # The lock is held across the re-read and TerminateJobFlows: see _terminate_by_rule.
        with self._editing(cluster) as (_, record):
            denied = may_terminate(record, who.user, force=force, admin=who.admin_on(record.target))
            if denied is not None:
                raise RefusedError.of(NotAllowed(denied, record))
            fresh = self.adapter.describe(cluster)
            why = termination_refusal(record, fresh, set(ACTIVE_STATES))
            if why is not None:
                raise RefusedError.of(NotTerminated(record, why))
            self.adapter.terminate(record)
            now = self.clock()
            self._commit(lambda stored: terminated(stored, cluster.id, now, rule=None, who=who.name))
        others = [h for h in record.holds if h.user != who.user]
        if others:
            self._announce(ForceTerminated(record, who.name, others))
        return Terminating(record, others)

    @retried
    def overtime(self, who: Who, words: str, hhmm: time | None) -> OvertimeSet:
        """Keep the cluster *words* name (held by *who*) past tonight's end of day; announced."""
        cluster, _ = self._target(words)
        with self._editing(cluster) as (state, record):
            denied = may_ask_overtime(record, who.user)
            if denied is not None:
                raise RefusedError.of(NotAllowed(denied, record))
            now = self.clock()
            try:
                until, day = overtime_until(self.policy, state, record, hhmm, now)
            except ValueError as problem:
                raise RefusedError.of(NoOvertime(problem)) from None
            state = set_overtime(state, cluster.id, who.user, who.name, until, day, now)
            self._save(state)
        self._announce(OvertimeAnnounced(record, who.name, until))
        return OvertimeSet(record, until)


def _located(cluster: ClusterInfo) -> Located:
    return Located(cluster.target, cluster.region, cluster)


__all__ = [
    "Locked",
    "OvertimeSet",
    "Released",
    "ReportData",
    "Service",
    "Starting",
    "Status",
    "Terminating",
    "Who",
]
