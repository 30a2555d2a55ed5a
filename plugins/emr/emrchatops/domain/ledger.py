"""The usage ledger (DESIGN §13): per cluster, when it was up, held, busy; and what it cost.

Pure: no boto3, no errbot, no clock (``now`` is an argument). The plugin keeps the
ledger in its storage under ``ledger`` as versioned plain data, beside the state,
and folds into it what it already knows — no AWS request of its own:

* **up** comes from EMR's own timeline (``CreationDateTime`` / ``EndDateTime`` of
  the listings and of the re-read that confirms the end), so a restart of the bot
  neither adds nor loses up time;
* **held** from the holds in the state: a span opens at the earliest hold's
  ``since`` and closes at the last release (or the termination), so the held time
  is exact whatever happens to the bot in between (holds survive restarts);
* **busy** while the cluster state is ``STARTING``/``BOOTSTRAPPING``/``RUNNING`` or
  its latest ``IsIdle`` reading is 0, as the poller saw it;
* **unmanaged**: while the cluster no longer carried ``CLUSTER_TAG`` (from the listing that
  first missed it until a listing shows it managed again): the report counts a cluster only
  while it was managed;
* **watched**: when the poller ran. Busy and idle time are only known while the
  bot watched: time the bot was down (a restart, a ``kill -9``) is neither idle nor
  busy but *not watched*. A gap longer than the caller's *gap* between two ticks
  starts a new watched span;
* **instances**: the cluster's composition (``ListInstanceGroups`` / fleets),
  read once, again when the cluster state changes, and every :data:`RESIZE_CHECK`
  (a resize leaves the state as it is: :func:`resize_check_due`), every
  :data:`SETTLE_CHECK` while a group is resizing; as ``(since, composition)``, a new
  segment from the read that saw a change;
* **terminations** by the automatic rules, with their time.

Heartbeats (the end of the current watched span, a cluster's ``seen_at``) move
at most once per :data:`HEARTBEAT`, so a steady-state tick writes the ledger at most
once a minute; a ``kill -9`` loses at most that minute of *watched* time (it then
shows as not watched, never as idle).

Bounded: spans and clusters older than :data:`KEEP` (90 days) are dropped.
"""

from __future__ import annotations

import bisect
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from emrchatops.domain.costs import (
    ZERO,
    Composition,
    Cost,
    Instances,
    NoPrice,
    PriceTable,
    Span,
    cost_between,
    hourly,
    intersect,
    length,
    merge,
    subtract,
)
from emrchatops.domain.state import UNMANAGED, ClusterInfo, State
from emrchatops.domain.vocabulary import BUSY_STATES
from emrchatops.domain.vocabulary import iso as _iso
from emrchatops.domain.vocabulary import parse_iso as _dt

LEDGER_VERSION = 2
KEEP = timedelta(days=90)
REPORT_MAX_DAYS = 90
HEARTBEAT = timedelta(minutes=1)
SAVING_CAP = timedelta(hours=24)
# A resize leaves the cluster state as it is (WAITING): the instances are read again this often, so a
# resize is priced from at most this long after it (DESIGN §13) ...
RESIZE_CHECK = timedelta(minutes=5)
# ... and this often while a group is resizing (its running count moves minute by minute).
SETTLE_CHECK = timedelta(minutes=1)
_GRID = datetime(2000, 1, 1, tzinfo=UTC)
# The automatic rules whose terminations the report counts (emr_rules.Rule).
RULES = ("idle", "end_of_day", "overtime")


@dataclass(frozen=True)
class Usage:
    """What the ledger knows of one cluster."""

    id: str
    name: str
    first_seen: datetime  # the bot's first sight of it (up time falls back to it without EMR's timeline)
    created_at: datetime | None = None  # EMR's CreationDateTime
    ended_at: datetime | None = None  # EMR's EndDateTime (or the moment its end was confirmed)
    seen_at: datetime | None = None  # the latest listing that showed it active (to HEARTBEAT)
    instances: tuple[tuple[datetime, Composition], ...] = ()
    instances_state: str = ""  # the cluster state when the instances were last read
    instances_problem: str = ""  # why they could not be read (AWS's answer, short); "" none
    held: tuple[Span, ...] = ()
    held_since: datetime | None = None  # an open held span
    busy: tuple[Span, ...] = ()
    busy_since: datetime | None = None  # an open busy span
    terminations: tuple[tuple[datetime, str], ...] = ()  # (when, rule)
    unmanaged: tuple[Span, ...] = ()  # while it did not carry CLUSTER_TAG: not the bot's, not counted
    unmanaged_since: datetime | None = None  # an open unmanaged span
    target: str = ""  # the target it belongs to (DESIGN §17)
    region: str = ""  # and the region it runs in: its prices are that region's

    @property
    def up_from(self) -> datetime:
        return self.created_at or self.first_seen

    def up_until(self, now: datetime, active: bool) -> datetime:
        if self.ended_at is not None:
            return self.ended_at
        if active:
            return now
        return max(self.seen_at or self.up_from, self.up_from)


@dataclass(frozen=True)
class Ledger:
    """Usage per cluster, and when the bot watched."""

    clusters: Mapping[str, Usage] = field(default_factory=dict)
    watched: tuple[Span, ...] = ()

    def with_usage(self, usage: Usage) -> Ledger:
        return replace(self, clusters={**self.clusters, usage.id: usage})

    # -- plain data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "clusters": {cid: _usage_to_dict(u) for cid, u in self.clusters.items()},
            "watched": [_span(s) for s in self.watched],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, state: State | None = None, home: tuple[str, str] = ("", "")
    ) -> Ledger:
        """Decode a stored ledger; none stored yet: start one from *state* (see :func:`migrate`); *home* is
        the (target, region) a ledger from before targets belongs to."""
        data = migrate(data, state, home)
        return cls(
            clusters={cid: _usage_from_dict(cid, u) for cid, u in data.get("clusters", {}).items()},
            watched=tuple(_span_of(s) for s in data.get("watched", ())),
        )


def migrate(data: Mapping[str, Any] | None, state: State | None, home: tuple[str, str] = ("", "")) -> Mapping[str, Any]:
    """Bring a stored ledger to :data:`LEDGER_VERSION`; refuse a newer one (ValueError).

    * nothing stored (an upgrade from a release without the ledger, state v4 or
      earlier): a ledger is started from the state — each remembered cluster, its
      holds as an open held span since the earliest hold (so a hold taken before the
      upgrade counts in full); up time then comes from EMR's timeline at the next
      listing. Nothing before the upgrade is invented: no busy, idle or watched time.
    * version 1 → 2 (targets, DESIGN §17): each cluster gains ``target`` and ``region``, those of
      *home*: the one target the bot served before.
    """
    if not data:
        ledger = Ledger()
        if state is not None:
            for record in state.clusters.values():
                usage = Usage(record.id, record.name, record.first_seen, target=record.target, region=record.region)
                if record.holds and record.ending is None:
                    usage = replace(usage, held_since=min(h.since for h in record.holds))
                ledger = ledger.with_usage(usage)
        return ledger.to_dict()
    version = data.get("version")
    if isinstance(version, int) and version > LEDGER_VERSION:
        raise ValueError(
            f"the stored usage ledger is version {version}, newer than this code reads ({LEDGER_VERSION}): "
            "upgrade the plugin (nothing was changed)"
        )
    if version == 1:
        target, region = home
        clusters = {cid: {**u, "target": target, "region": region} for cid, u in data.get("clusters", {}).items()}
        data = {**data, "version": 2, "clusters": clusters}
        version = 2
    if version != LEDGER_VERSION:
        raise ValueError(f"unsupported usage ledger version {version!r} (this code reads {LEDGER_VERSION})")
    return data


# -- folding what the bot knows ---------------------------------------------------------------


def seen(ledger: Ledger, clusters: Iterable[ClusterInfo], now: datetime) -> Ledger:
    """A listing of the managed active clusters: EMR's creation time, names; seen_at to HEARTBEAT."""
    for info in clusters:
        old = ledger.clusters.get(info.id)
        usage = old or Usage(info.id, info.name, now)
        created = info.created_at or usage.created_at
        seen_at = usage.seen_at
        if seen_at is None or not seen_at <= now < seen_at + HEARTBEAT:
            seen_at = now
        usage = replace(
            usage,
            name=info.name,
            created_at=created,
            seen_at=seen_at,
            target=info.target or usage.target,
            region=info.region or usage.region,
        )
        if usage != old:
            ledger = ledger.with_usage(usage)
    return ledger


def ended(ledger: Ledger, info: ClusterInfo, now: datetime) -> Ledger:
    """AWS says the cluster ended (a re-read): its up time ends at EMR's EndDateTime; open spans close."""
    usage = ledger.clusters.get(info.id)
    if usage is None or usage.ended_at is not None:
        return ledger
    end = info.ended_at or now
    usage = replace(usage, ended_at=end, created_at=info.created_at or usage.created_at)
    return ledger.with_usage(_close(usage, end))


def _close(usage: Usage, at: datetime) -> Usage:
    if usage.unmanaged_since is not None:
        span = (usage.unmanaged_since, max(at, usage.unmanaged_since))
        usage = replace(usage, unmanaged=(*usage.unmanaged, span), unmanaged_since=None)
    if usage.held_since is not None:
        usage = replace(usage, held=(*usage.held, (usage.held_since, max(at, usage.held_since))), held_since=None)
    if usage.busy_since is not None:
        usage = replace(usage, busy=(*usage.busy, (usage.busy_since, max(at, usage.busy_since))), busy_since=None)
    return usage


def follow(ledger: Ledger, state: State, now: datetime) -> Ledger:
    """Fold the state as saved at *now*: held and busy spans open and close, rule terminations noted."""
    for record in state.clusters.values():
        old = ledger.clusters.get(record.id)
        usage = old or Usage(record.id, record.name, record.first_seen)
        if usage.ended_at is not None:
            continue
        held_now = bool(record.holds) and record.ending is None
        if held_now and usage.held_since is None:
            since = min(h.since for h in record.holds)
            if usage.held:
                since = max(since, usage.held[-1][1])  # never count a moment twice
            usage = replace(usage, held_since=min(since, now))
        elif not held_now and usage.held_since is not None:
            end = now
            if record.ending is not None:
                end = record.ending.at
            elif record.last_release is not None and record.last_release >= usage.held_since:
                end = record.last_release
            usage = replace(usage, held=(*usage.held, (usage.held_since, min(end, now))), held_since=None)
        unmanaged_now = record.absent == UNMANAGED and record.ending is None
        if unmanaged_now and usage.unmanaged_since is None:  # since the listing that first missed it
            usage = replace(usage, unmanaged_since=min(record.unseen_since or now, now))
        elif not unmanaged_now and usage.unmanaged_since is not None:  # a listing shows it managed again
            span = (usage.unmanaged_since, max(now, usage.unmanaged_since))
            usage = replace(usage, unmanaged=(*usage.unmanaged, span), unmanaged_since=None)
        busy_now = record.ending is None and (record.state in BUSY_STATES or record.activity == "busy")
        if busy_now and usage.busy_since is None:
            usage = replace(usage, busy_since=now)
        elif not busy_now and usage.busy_since is not None:
            usage = replace(usage, busy=(*usage.busy, (usage.busy_since, now)), busy_since=None)
        ending = record.ending
        if ending is not None and ending.rule is not None and (ending.at, ending.rule) not in usage.terminations:
            usage = replace(usage, terminations=(*usage.terminations, (ending.at, ending.rule)))
        if usage != old:
            ledger = ledger.with_usage(usage)
    for usage in list(ledger.clusters.values()):
        if usage.id not in state.clusters and (
            usage.held_since is not None or usage.busy_since is not None or usage.unmanaged_since is not None
        ):
            ledger = ledger.with_usage(_close(usage, usage.ended_at or now))
    return ledger


def watch(ledger: Ledger, now: datetime, gap: timedelta, *, exact: bool = False) -> Ledger:
    """The poller ran at *now*: extend the current watched span, or start one after a gap (the bot was down).

    The span's end moves at most once per HEARTBEAT (*exact*: to *now*, for a report).
    """
    if ledger.watched:
        start, end = ledger.watched[-1]
        if end <= now <= end + gap:
            if not exact and now - end < HEARTBEAT:
                return ledger
            return replace(ledger, watched=(*ledger.watched[:-1], (start, now)))
        if now < end:
            return ledger  # the clock went back: keep what is known
    return replace(ledger, watched=(*ledger.watched, (now, now)))


def instances_due(ledger: Ledger, state: State) -> list[str]:
    """Listed clusters whose instances are to be read: never read, or the cluster state changed since."""
    due = []
    for record in state.listed():
        usage = ledger.clusters.get(record.id)
        if usage is None or not usage.instances or usage.instances_state != record.state:
            due.append(record.id)
    return due


def resize_check_due(cluster_id: str, read_at: datetime, now: datetime, changing: bool) -> bool:
    """Are the instances of a cluster last read at *read_at* to be read again now, to notice a resize?

    While a group is resizing (*changing*): every :data:`SETTLE_CHECK`. Otherwise once per
    :data:`RESIZE_CHECK` slot, on a grid offset per cluster (a fixed phase from its id), so that
    clusters first read together are re-read spread over the ticks, not all in one.
    """
    if changing:
        return now - read_at >= SETTLE_CHECK
    step = int(RESIZE_CHECK.total_seconds())
    phase = timedelta(seconds=zlib.crc32(cluster_id.encode()) % step)
    return (now - _GRID - phase) // RESIZE_CHECK > (read_at - _GRID - phase) // RESIZE_CHECK


def instances_failed(ledger: Ledger, state: State, cluster_id: str, problem: str) -> Ledger:
    """The cluster's instances could not be read: why, so the report says it (its cost is unknown)."""
    usage = ledger.clusters.get(cluster_id)
    if usage is None:
        record = state.clusters.get(cluster_id)
        if record is None:
            return ledger
        usage = Usage(cluster_id, record.name, record.first_seen)
    if usage.instances_problem == problem:
        return ledger
    return ledger.with_usage(replace(usage, instances_problem=problem))


def instances_seen(ledger: Ledger, state: State, cluster_id: str, composition: Composition, now: datetime) -> Ledger:
    """The cluster's instances as just read: a new segment from *now* when they changed."""
    record = state.clusters.get(cluster_id)
    usage = ledger.clusters.get(cluster_id)
    if usage is None:
        if record is None:
            return ledger
        usage = Usage(cluster_id, record.name, record.first_seen)
    read_in = record.state if record is not None else usage.instances_state
    segments = usage.instances
    if not segments or segments[-1][1] != composition:
        segments = (*segments, (now if segments else usage.up_from, composition))
    return ledger.with_usage(replace(usage, instances=segments, instances_state=read_in, instances_problem=""))


def instance_types(ledger: Ledger) -> frozenset[str]:
    """Every instance type the ledger's clusters ran (the prices the report and status need)."""
    return frozenset(group.instance_type for u in ledger.clusters.values() for _, c in u.instances for group in c)


def bounded(ledger: Ledger, now: datetime) -> Ledger:
    """Only the last :data:`KEEP`: older spans, terminations and ended clusters are dropped."""
    cutoff = now - KEEP
    clusters: dict[str, Usage] = {}
    for cid, usage in ledger.clusters.items():
        if usage.ended_at is not None and usage.ended_at < cutoff:
            continue
        if (
            usage.ended_at is None
            and usage.seen_at is not None
            and usage.seen_at < cutoff
            and usage.first_seen < cutoff
        ):
            continue
        if usage.held and usage.held[0][1] < cutoff:
            usage = replace(usage, held=tuple(s for s in usage.held if s[1] >= cutoff))
        if usage.busy and usage.busy[0][1] < cutoff:
            usage = replace(usage, busy=tuple(s for s in usage.busy if s[1] >= cutoff))
        if usage.unmanaged and usage.unmanaged[0][1] < cutoff:
            usage = replace(usage, unmanaged=tuple(s for s in usage.unmanaged if s[1] >= cutoff))
        if usage.terminations and usage.terminations[0][0] < cutoff:
            usage = replace(usage, terminations=tuple(t for t in usage.terminations if t[0] >= cutoff))
        clusters[cid] = usage
    watched = ledger.watched
    if watched and watched[0][1] < cutoff:
        watched = tuple(s for s in watched if s[1] >= cutoff)
    if watched == ledger.watched and clusters == ledger.clusters:
        return ledger
    return Ledger(clusters, watched)


# -- cost now ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostSoFar:
    """A running cluster's cost from its creation to now, for `!emr status`."""

    cost: Cost | NoPrice | None  # None: its instances are not read yet
    composition: Composition
    up: timedelta
    problem: str = ""  # why its instances could not be read (cost None)


def cost_so_far(ledger: Ledger, prices: PriceTable, region: str, cluster_id: str, now: datetime) -> CostSoFar:
    usage = ledger.clusters.get(cluster_id)
    if usage is None or not usage.instances:
        return CostSoFar(None, (), timedelta(), usage.instances_problem if usage is not None else "")
    end = usage.up_until(now, active=True)
    cost = cost_between(prices, region, usage.instances, usage.up_from, end)
    return CostSoFar(cost, usage.instances[-1][1], max(end - usage.up_from, timedelta()))


# -- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Unknown:
    """A cluster whose cost the report cannot give, and why: never counted as $0.00."""

    cluster: str  # its name
    price: NoPrice | None = None  # the price table lacks one of its instance types
    problem: str = ""  # else its instances could not be read (AWS's answer; "" not read yet)


@dataclass(frozen=True)
class Figures:
    """One day's (or the total's) figures over the managed clusters."""

    up: timedelta = timedelta()
    held: timedelta = timedelta()
    busy: timedelta = timedelta()  # busy while nobody held it
    idle: timedelta = timedelta()  # up, unheld, no work, while the bot watched
    unwatched: timedelta = timedelta()  # up, unheld, while the bot was down: neither busy nor idle known
    terminations: Mapping[str, int] = field(default_factory=dict)
    cost: Cost = ZERO
    saving: Cost = ZERO
    unknown: tuple[Unknown, ...] = ()  # clusters whose cost is unknown: left out of *cost*, which is partial
    saving_unknown: bool = False  # a termination's saving is unknown: *saving* is partial

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.up + other.up,
            self.held + other.held,
            self.busy + other.busy,
            self.idle + other.idle,
            self.unwatched + other.unwatched,
            dict(Counter(self.terminations) + Counter(other.terminations)),
            self.cost + other.cost,
            self.saving + other.saving,
            tuple(dict.fromkeys(self.unknown + other.unknown)),
            self.saving_unknown or other.saving_unknown,
        )


@dataclass(frozen=True)
class Report:
    days: tuple[tuple[date, Figures], ...]
    total: Figures
    clusters: int  # clusters up at some time in the period
    prices: PriceTable
    end_of_day: time | None
    target: str | None = None  # one target's clusters only (None: every target's)


def report(
    ledger: Ledger,
    prices: PriceTable,
    region: str,
    zone: ZoneInfo,
    days: int,
    now: datetime,
    end_of_day: time | None,
    active: Iterable[str],
    target: str | None = None,
) -> Report:
    """The last *days* local days (today included, up to *now*): per day and in total.

    *active*: the ids of the clusters the state still has (their up time runs to *now*); *target*:
    that target's clusters only. Each cluster is priced in its own region (*region*: a cluster the
    ledger has no region for).
    """
    if not 1 <= days <= REPORT_MAX_DAYS:
        raise ValueError(f"days must be 1–{REPORT_MAX_DAYS}")
    active_ids = frozenset(active)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    windows = [(first + timedelta(days=i), _midnight(first + timedelta(days=i), zone)) for i in range(days)]
    bounds = [(day, start, _midnight(day + timedelta(days=1), zone)) for day, start in windows]
    period = (bounds[0][1], min(bounds[-1][2], now))
    day_starts = [start for _, start, _ in bounds]
    all_watched = merge(ledger.watched)
    watched_starts = [start for start, _ in all_watched]
    watched_ends = [end for _, end in all_watched]
    starts = _first_uses(ledger)
    per_day: dict[date, Figures] = {day: Figures() for day, _, _ in bounds}
    counted = 0
    home = region
    for usage in ledger.clusters.values():
        if target is not None and usage.target != target:
            continue
        region = usage.region or home
        up_end = min(usage.up_until(now, usage.id in active_ids), now)
        up = intersect([(usage.up_from, up_end)], [period]) if up_end > usage.up_from else []
        # Only while it was managed: a cluster whose tag was removed is not the bot's (DESIGN §3).
        up = subtract(up, merge([*usage.unmanaged, *_open(usage.unmanaged_since, now)]))
        if not up:
            continue
        counted += 1
        watched = all_watched[  # only the watched spans around this cluster's up time
            bisect.bisect_right(watched_ends, up[0][0]) : bisect.bisect_left(watched_starts, up[-1][1])
        ]
        held = intersect(merge([*usage.held, *_open(usage.held_since, now)]), up)
        busy_all = intersect(intersect(merge([*usage.busy, *_open(usage.busy_since, now)]), up), watched)
        busy = subtract(busy_all, held)
        unheld = subtract(up, held)
        idle = subtract(intersect(unheld, watched), busy)
        unwatched = subtract(unheld, watched)
        no_price = next(
            (r for _, c in usage.instances if isinstance(r := hourly(prices, region, c), NoPrice)),
            None,
        )
        unknown: tuple[Unknown, ...] = ()
        if no_price is not None:
            unknown = (Unknown(usage.name, price=no_price),)
        elif not usage.instances:  # never read: unknown, never $0.00
            unknown = (Unknown(usage.name, problem=usage.instances_problem),)
        # Only the days the cluster was up (a cluster of one day is one day's work, not ninety).
        first_day = bisect.bisect_right(day_starts, up[0][0]) - 1
        last_day = bisect.bisect_left(day_starts, up[-1][1])
        for day, start, end in bounds[max(first_day, 0) : last_day]:
            window = [(start, end)]
            day_up = intersect(up, window)
            if not day_up:
                continue
            cost: Cost = ZERO
            if not unknown:
                for a, b in day_up:
                    part = cost_between(prices, region, usage.instances, a, b)
                    assert not isinstance(part, NoPrice)
                    cost = cost + part
            per_day[day] = per_day[day] + Figures(
                up=length(day_up),
                held=length(intersect(held, window)),
                busy=length(intersect(busy, window)),
                idle=length(intersect(idle, window)),
                unwatched=length(intersect(unwatched, window)),
                cost=cost,
                unknown=unknown,
            )
        for at, rule in usage.terminations:
            day = at.astimezone(zone).date()
            if day not in per_day:
                continue
            saving = _saving(usage, prices, region, zone, at, rule, now, end_of_day, starts)
            per_day[day] = per_day[day] + Figures(
                terminations={rule: 1}, saving=saving or ZERO, unknown=unknown, saving_unknown=saving is None
            )
    rows = tuple((day, per_day[day]) for day, _, _ in bounds)
    total = Figures()
    for _, figures in rows:
        total = total + figures
    return Report(rows, total, counted, prices, end_of_day, target)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def _open(since: datetime | None, now: datetime) -> list[Span]:
    return [(since, now)] if since is not None and since < now else []


def _first_uses(ledger: Ledger) -> list[datetime]:
    """Moments someone took a cluster up: a hold, or a cluster's creation (sorted)."""
    moments: list[datetime] = []
    for usage in ledger.clusters.values():
        moments.append(usage.up_from)
        moments += [start for start, _ in usage.held]
        if usage.held_since is not None:
            moments.append(usage.held_since)
    return sorted(moments)


def _saving(
    usage: Usage,
    prices: PriceTable,
    region: str,
    zone: ZoneInfo,
    at: datetime,
    rule: str,
    now: datetime,
    end_of_day: time | None,
    starts: Sequence[datetime],
) -> Cost | None:
    """The estimated saving of one automatic termination (the definition is printed under the report).

    Idle rule: the cost of running on from the termination until that day's END_OF_DAY (the end of
    that local day when END_OF_DAY is off). End of day / overtime: until the first hold or cluster
    start after it, at most 24 h. Never beyond *now*; at the cluster's composition when it ended.
    None: unknown (its instances were never read, or a price is missing).
    """
    if rule == "idle":
        day = at.astimezone(zone).date()
        if end_of_day is not None:
            until = datetime.combine(day, end_of_day, zone).astimezone(UTC)
        else:
            until = _midnight(day + timedelta(days=1), zone)
    else:
        later = [s for s in starts if s > at]
        until = min([at + SAVING_CAP, *later[:1]])
    until = min(until, now)
    if until <= at:
        return ZERO
    if not usage.instances:
        return None
    composition = [c for since, c in usage.instances if since <= at] or [usage.instances[0][1]]
    cost = cost_between(prices, region, [(at, composition[-1])], at, until)
    return None if isinstance(cost, NoPrice) else cost


# -- plain-data converters -------------------------------------------------------------------


def _span(span: Span) -> list[str]:
    return [span[0].isoformat(), span[1].isoformat()]


def _span_of(raw: Sequence[str]) -> Span:
    return (datetime.fromisoformat(raw[0]), datetime.fromisoformat(raw[1]))


def _usage_to_dict(u: Usage) -> dict[str, Any]:
    return {
        "name": u.name,
        "first_seen": u.first_seen.isoformat(),
        "created_at": _iso(u.created_at),
        "ended_at": _iso(u.ended_at),
        "seen_at": _iso(u.seen_at),
        "instances": [
            [since.isoformat(), [[g.instance_type, g.count, g.spot] for g in composition]]
            for since, composition in u.instances
        ],
        "instances_state": u.instances_state,
        "instances_problem": u.instances_problem,
        "held": [_span(s) for s in u.held],
        "held_since": _iso(u.held_since),
        "busy": [_span(s) for s in u.busy],
        "busy_since": _iso(u.busy_since),
        "terminations": [[at.isoformat(), rule] for at, rule in u.terminations],
        "unmanaged": [_span(s) for s in u.unmanaged],
        "unmanaged_since": _iso(u.unmanaged_since),
        "target": u.target,
        "region": u.region,
    }


def _usage_from_dict(cluster_id: str, d: Mapping[str, Any]) -> Usage:
    first_seen = _dt(d["first_seen"])
    assert first_seen is not None
    return Usage(
        id=cluster_id,
        name=d["name"],
        first_seen=first_seen,
        created_at=_dt(d.get("created_at")),
        ended_at=_dt(d.get("ended_at")),
        seen_at=_dt(d.get("seen_at")),
        instances=tuple(
            (
                datetime.fromisoformat(since),
                tuple(Instances(str(t), int(n), bool(spot)) for t, n, spot in groups),
            )
            for since, groups in d.get("instances", ())
        ),
        instances_state=d.get("instances_state", ""),
        instances_problem=d.get("instances_problem", ""),
        held=tuple(_span_of(s) for s in d.get("held", ())),
        held_since=_dt(d.get("held_since")),
        busy=tuple(_span_of(s) for s in d.get("busy", ())),
        busy_since=_dt(d.get("busy_since")),
        terminations=tuple((datetime.fromisoformat(at), str(rule)) for at, rule in d.get("terminations", ())),
        unmanaged=tuple(_span_of(s) for s in d.get("unmanaged", ())),
        unmanaged_since=_dt(d.get("unmanaged_since")),
        target=d.get("target", ""),
        region=d.get("region", ""),
    )
