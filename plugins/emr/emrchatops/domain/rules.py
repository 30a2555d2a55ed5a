"""The pure rules: the idle rule, the end-of-day rule, overtime, and the state transitions.

Nothing here imports boto3 or errbot, and nothing reads the clock: every
function takes ``now`` (an aware UTC datetime) and returns a new
:class:`~emrchatops.domain.state.State` instead of mutating one.

The rules (DESIGN §6):

* **Idle rule** — a managed cluster in ``WAITING`` with no holds is idle since
  the latest of its ready time, its last release, the moment the bot first saw
  it (or saw it again after an absence), and the end of its latest work
  (a return to ``WAITING`` from a busy state, or the end of its latest step).
  It is terminated ``idle_minutes`` after that, warned ``warn_minutes`` before.
* **End-of-day rule** — once per local day, at the first tick at or after
  ``end_of_day`` in ``timezone``, every managed cluster is terminated, held or
  not, unless it has overtime for that working night (then at the overtime
  time). A cluster started after that day's pass is left to the idle rule.
* **The working night** of day D runs from D's end of day for
  :data:`NIGHT_LENGTH` (12 hours: to the next morning, past the longest
  overtime): ``!emr overtime 01:30`` asked at 00:40 belongs to the night that
  began the evening before.
* **Starting** (DESIGN §12) — a cluster started by ``!emr start`` is held by its
  starter from the first moment; the first tick that sees it ``WAITING`` or
  ``RUNNING`` announces it ready (once: the state says so before the notice
  goes out), and a re-read that finds it ended before that announces the failed
  start with EMR's reason (:func:`settle`).
* **The backstop** (DESIGN §12) — an unheld managed cluster carries EMR's own
  ``AutoTerminationPolicy`` (``IdleTimeout`` = BACKSTOP_MINUTES), a held one
  none: :func:`backstop_due` says which clusters' policy must change, one
  request each; a failure is noted (announced once) and retried.
* A termination that fails stays *doomed* and is retried every tick while its
  reason holds (idle: still WAITING, unheld and past the deadline; end of day
  and overtime: still that working night); each distinct failure is announced
  once. Right before any termination the plugin re-reads the cluster from AWS
  and :func:`termination_refusal` decides whether the decision still stands.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from emrchatops.domain.state import (
    REASON_LIMIT,
    UNMANAGED,
    UNSEEN,
    WARNED_LIMIT,
    Activity,
    ClusterInfo,
    ClusterRecord,
    Doom,
    Ending,
    Event,
    Hold,
    Overtime,
    Start,
    State,
)
from emrchatops.domain.vocabulary import ACTIVE_STATES, ACTIVITY_PERIOD, BUSY_STATES, ENDED_STATES, EventKind, Rule

OVERTIME_DEFAULT = timedelta(hours=2)
OVERTIME_LIMIT = timedelta(hours=8)
# A working night runs from END_OF_DAY to the next morning: longer than the longest overtime, so that an
# overtime ending at its bound still falls inside its night (and is acted on), shorter than a day.
NIGHT_LENGTH = timedelta(hours=12)
RECHECK = timedelta(minutes=5)  # how often a remembered cluster missing from listings is re-read
PERIOD = ACTIVITY_PERIOD
STALE = 3 * PERIOD  # a latest IsIdle datapoint older than this says nothing about now
BACKSTOP_RETRY = timedelta(minutes=5)  # a failed backstop change is retried by the poller at most this often
READY_STATES = frozenset({"WAITING", "RUNNING"})  # a started cluster is ready (RUNNING: its first step runs)
STARTED_REASON = "started it"  # the starter's hold, when `!emr start` was given no reason


# -- parameters -------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The rule parameters, taken from the plugin settings."""

    idle_minutes: int = 30
    warn_minutes: int = 5
    end_of_day: time | None = time(19, 0)
    timezone: ZoneInfo = ZoneInfo("Asia/Tokyo")  # noqa: RUF009 - ZoneInfo objects are immutable and cached
    remind_minutes: int | None = 120  # None: holds are never questioned
    grace_minutes: int = 15

    @property
    def remind(self) -> timedelta | None:
        return None if self.remind_minutes is None else timedelta(minutes=self.remind_minutes)

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.idle_minutes)

    @property
    def warn(self) -> timedelta:
        return timedelta(minutes=self.warn_minutes)

    def local_day(self, now: datetime) -> date:
        return now.astimezone(self.timezone).date()

    def end_of_day_at(self, day: date) -> datetime:
        """END_OF_DAY on local *day*, in UTC. DST-safe: zoneinfo resolves the local wall time."""
        assert self.end_of_day is not None
        local = datetime.combine(day, self.end_of_day, tzinfo=self.timezone)
        return local.astimezone(UTC)

    def night_of(self, now: datetime) -> date | None:
        """The day whose working night *now* is in (END_OF_DAY … + NIGHT_LENGTH), or None."""
        if self.end_of_day is None:
            return None
        today = self.local_day(now)
        for day in (today, today - timedelta(days=1)):
            start = self.end_of_day_at(day)
            if start <= now < start + NIGHT_LENGTH:
                return day
        return None

    def night_over(self, day: date, now: datetime) -> bool:
        return self.end_of_day is None or now >= self.end_of_day_at(day) + NIGHT_LENGTH


# -- effects ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """The next automatic action on a cluster."""

    at: datetime
    rule: Rule
    idle_since: datetime | None = None

    def warning_key(self) -> str:
        return f"{self.rule}@{self.at.isoformat()}"


@dataclass(frozen=True)
class Warn:
    """Effect: tell NOTIFY_CHANNEL that *cluster* will be terminated at *deadline*."""

    cluster: ClusterRecord
    deadline: Deadline


@dataclass(frozen=True)
class Terminate:
    """Effect: terminate *cluster* now, because of *rule*, if AWS still shows it in one of *expect*."""

    cluster: ClusterRecord
    rule: Rule
    expect: frozenset[str] = frozenset(ACTIVE_STATES)


@dataclass(frozen=True)
class Cancelled:
    """Effect: a pending termination was dropped because its reason no longer holds."""

    cluster: ClusterRecord
    rule: Rule
    why: str


@dataclass(frozen=True)
class Remind:
    """Effect: ask *hold*'s holder whether they still use *cluster*; the hold ends at *ends_at* unless confirmed."""

    cluster: ClusterRecord
    hold: Hold
    ends_at: datetime
    quiet_since: datetime  # no work seen on the cluster since then


@dataclass(frozen=True)
class Expire:
    """Effect: *hold* ended, unconfirmed after its reminder; *cluster* is the record after it."""

    cluster: ClusterRecord
    hold: Hold


@dataclass(frozen=True)
class Ready:
    """Effect: the cluster the bot started is ready, *took* after `!emr start`; tell its starter."""

    cluster: ClusterRecord
    took: timedelta


Effect = Warn | Terminate | Cancelled | Remind | Expire | Ready


@dataclass(frozen=True)
class Settled:
    """What a fresh read of a remembered cluster that listings no longer show meant."""

    kind: Literal["ended", "start_failed", "unmanaged", "unchanged"]
    record: ClusterRecord
    info: ClusterInfo | None = None


# -- observing AWS ------------------------------------------------------------------


def observe(
    state: State,
    clusters: Iterable[ClusterInfo],
    now: datetime,
    *,
    listed_since: datetime | None = None,
    unreached: Collection[tuple[str, str]] = (),
) -> State:
    """Fold a fresh listing of the managed active clusters into the state.

    New clusters get ``first_seen = now``; a cluster coming back to WAITING from
    a busy state, or listed again after an absence, restarts its idle clock. A
    remembered cluster missing from the listing is only marked *unseen*: it
    keeps its holds until AWS says it ended (:func:`settle`). The caller must
    not fold a listing older than one already folded (see the plugin). A record
    made after the listing was asked for (*listed_since*: a cluster `!emr start`
    just started) cannot be in it, so its absence says nothing at all; nor does the absence of a
    record whose (target, region) the listing could not reach (*unreached*: a target denied or
    down, DESIGN §17): its clusters are kept as they were.
    """
    clusters_by_id = {c.id: c for c in clusters}
    new = dict(state.clusters)
    events: list[Event] = []
    for info in clusters_by_id.values():
        old = state.clusters.get(info.id)
        if old is None:
            new[info.id] = ClusterRecord(
                id=info.id,
                name=info.name,
                state=info.state,
                first_seen=now,
                ready_at=info.ready_at,
                template=info.template,
                target=info.target,
                region=info.region,
            )
            continue
        if old.ending is not None:
            continue  # AWS accepted its termination; a listing may lag behind
        waiting_since, worked_at = old.waiting_since, old.worked_at
        if old.absent or (info.state == "WAITING" and old.state in BUSY_STATES):
            waiting_since = now
        if info.state == "WAITING" and old.state == "RUNNING":
            worked_at = now  # a step ended
        if old.absent == UNMANAGED:
            events.append(Event(now, "managed", info.id, info.name, detail="carries the tag again"))
        new[info.id] = replace(
            old,
            name=info.name,
            state=info.state,
            ready_at=info.ready_at,
            waiting_since=waiting_since,
            worked_at=worked_at,
            absent="",
            unseen_since=None,
            template=info.template or old.template,
            target=info.target or old.target,
            region=info.region or old.region,
        )
    for cid, record in state.clusters.items():
        if listed_since is not None and record.first_seen > listed_since:
            continue
        if (record.target, record.region) in unreached:
            continue
        if cid not in clusters_by_id and record.ending is None and not record.absent:
            new[cid] = replace(record, absent=UNSEEN, unseen_since=now)
    result = replace(state, clusters=new)
    for event in events:
        result = result.record(event)
    return result.bounded()


def to_recheck(state: State, checked: Mapping[str, datetime], now: datetime) -> list[str]:
    """Remembered clusters missing from the listings that AWS should be asked about now.

    A newly missing one at once; then every :data:`RECHECK` (a wrong config may
    hide a cluster for hours: asking every tick would cost a request per tick).
    """
    due = []
    for record in state.clusters.values():
        if record.listed:
            continue
        last = checked.get(record.id)
        if last is None or now - last >= RECHECK:
            due.append(record.id)
    return due


def settle(state: State, info: ClusterInfo, now: datetime) -> tuple[State, Settled]:
    """Fold a fresh DescribeCluster of a remembered cluster that the listings no longer show."""
    record = state.clusters.get(info.id)
    if record is None:
        return state, Settled("unchanged", ClusterRecord(info.id, info.name, info.state, now), info)
    if info.state in ENDED_STATES:
        state = state.without_cluster(record.id)
        if record.ending is None and record.start is not None and not record.start.notified:
            # It ended before it was ever ready: the start failed (TERMINATED_WITH_ERRORS, or someone
            # terminated it meanwhile). Said once: the record leaves with this very state.
            detail = f"{info.reason or 'no reason given'} ({info.state})"
            event = Event(now, "start_failed", record.id, record.name, who=record.start.by_name, detail=detail)
            return state.record(event), Settled("start_failed", record, info)
        if record.ending is None:
            holders = ", ".join(h.name for h in record.holds)
            detail = f"outside the bot ({info.reason or info.state})" + (f"; holders: {holders}" if holders else "")
            rule = record.doomed.rule if record.doomed else None
            state = state.record(Event(now, "ended", record.id, record.name, rule=rule, detail=detail))
        return state, Settled("ended", record, info)
    if not info.managed and info.active:
        if record.absent == UNMANAGED:
            return state, Settled("unchanged", record, info)
        updated = replace(record, absent=UNMANAGED, doomed=None, state=info.state, ending=None)
        event = Event(now, "unmanaged", record.id, record.name, detail="no longer carries the tag")
        return state.with_cluster(updated).record(event), Settled("unmanaged", updated, info)
    return state, Settled("unchanged", record, info)


# -- deadlines ------------------------------------------------------------------------


def busy(record: ClusterRecord) -> bool:
    """Working now: a step runs (or the cluster starts), or the latest IsIdle datapoint is 0."""
    return record.state in BUSY_STATES or record.activity == "busy"


def last_work(record: ClusterRecord, now: datetime) -> datetime | None:
    """The latest moment the cluster was seen working (now, when it is busy)."""
    return now if busy(record) else record.worked_at


def idle_since(record: ClusterRecord) -> datetime | None:
    """When an unheld WAITING cluster without work became idle; None when it is held or busy."""
    if record.state != "WAITING" or record.holds or record.activity == "busy":
        return None
    moments = (record.ready_at, record.last_release, record.first_seen, record.waiting_since, record.worked_at)
    return max(m for m in moments if m)


def next_end_of_day_day(state: State, policy: Policy, now: datetime) -> date | None:
    """The local day whose end-of-day pass comes next (today until the pass ran, then tomorrow)."""
    if policy.end_of_day is None:
        return None
    today = policy.local_day(now)
    return today + timedelta(days=1) if state.end_of_day_done == today else today


def next_deadline(state: State, record: ClusterRecord, policy: Policy, now: datetime) -> Deadline | None:
    """The earliest automatic termination ahead for *record*, or None."""
    candidates: list[Deadline] = []
    since = idle_since(record)
    if since is not None:
        candidates.append(Deadline(since + policy.idle, "idle", since))
    day = next_end_of_day_day(state, policy, now)
    if day is not None and record.start is not None and record.start.at >= policy.end_of_day_at(day):
        # Started after that day's end of day (its pass done or still to come): tonight the idle rule
        # and hold reminders apply, the end of day from the next day on (DESIGN §12).
        day += timedelta(days=1)
    if day is not None and not (record.overtime and record.overtime.day == day):
        candidates.append(Deadline(policy.end_of_day_at(day), "end_of_day"))
    if record.overtime is not None and not policy.night_over(record.overtime.day, now):
        candidates.append(Deadline(record.overtime.until, "overtime"))
    return min(candidates, key=lambda d: d.at) if candidates else None


def after_end_of_day(policy: Policy, now: datetime) -> bool:
    """Whether *now* is past today's END_OF_DAY: a cluster started now is left to the idle rule tonight."""
    return policy.end_of_day is not None and now >= policy.end_of_day_at(policy.local_day(now))


def needs_step_check(state: State, record: ClusterRecord, policy: Policy, now: datetime) -> bool:
    """Must the idle clock be checked against the cluster's steps before this tick acts?

    A step that ran between two ticks (WAITING → RUNNING → WAITING) or while the
    bot was down is invisible in listings. It only matters when the idle rule is
    about to act, so the steps are read then: when the warning is due and when
    the termination is due (at most two ListSteps per idle period).
    """
    if not record.listed or record.doomed is not None:
        return False
    deadline = next_deadline(state, record, policy, now)
    if deadline is None or deadline.rule != "idle":
        return False
    if now >= deadline.at:
        return True
    return (
        bool(policy.warn_minutes) and now >= deadline.at - policy.warn and deadline.warning_key() not in record.warned
    )


def steps_seen(state: State, cluster_id: str, last_end: datetime | None, running: bool, now: datetime) -> State:
    """Fold what ListSteps said: a step still running, or one that ended later than the bot knew."""
    record = state.clusters.get(cluster_id)
    if record is None:
        return state
    moment = now if running else last_end
    if moment is None or (record.worked_at is not None and record.worked_at >= moment):
        return state
    return state.with_cluster(replace(record, worked_at=min(moment, now)))


def reading_says(reading: Activity | None, now: datetime) -> Literal["busy", "idle", "stale", "none"]:
    """What one cluster's IsIdle reading says of *now*: the rules' own decision (the doctor asks it too).

    ``none``: no datapoint in the window read; ``stale``: the latest datapoint is older than
    :data:`STALE` (the metric stopped), so it says nothing about now.
    """
    if reading is None:
        return "none"
    if now - reading.latest_at > STALE:
        return "stale"
    return "busy" if reading.busy else "idle"


def activity_seen(state: State, readings: Mapping[str, Activity | None], now: datetime) -> State:
    """Fold one IsIdle reading of the managed clusters (None: no datapoint for that cluster).

    A latest datapoint older than :data:`STALE` says nothing about now (the
    metric stopped, or CloudWatch could not be read for a while): activity
    unknown, and the idle rule goes by the cluster state and steps (§6).
    """
    new = state
    for cluster_id, reading in readings.items():
        record = new.clusters.get(cluster_id)
        if record is None:
            continue
        if reading is None or reading_says(reading, now) == "stale":
            updated = replace(record, activity="", activity_at=reading.latest_at if reading else record.activity_at)
        else:
            worked_at = record.worked_at
            if reading.work_ended is not None and (worked_at is None or reading.work_ended > worked_at):
                worked_at = reading.work_ended
            updated = replace(
                record,
                activity="busy" if reading.busy else "idle",
                activity_at=reading.latest_at,
                worked_at=worked_at,
            )
        if updated != record:
            new = new.with_cluster(updated)
    return new


def activity_unknown(state: State, now: datetime) -> State:
    """Forget activity read longer than :data:`STALE` ago (CloudWatch unreadable, or switched off)."""
    new = state
    for record in state.clusters.values():
        if record.activity and (record.activity_at is None or now - record.activity_at > STALE):
            new = new.with_cluster(replace(record, activity=""))
    return new


def doom_reason_gone(state: State, record: ClusterRecord, policy: Policy, now: datetime) -> str | None:
    """Why a pending termination no longer holds, or None when it still does."""
    doom = record.doomed
    assert doom is not None
    if doom.rule == "idle":
        if record.holds:
            return "someone holds it"
        if record.state != "WAITING":
            return f"it is busy ({record.state})"
        if record.activity == "busy":
            return "it is busy (YARN work)"
        since = idle_since(record)
        if since is not None and since + policy.idle > now:
            return "it did work since"
        return None
    day = doom.day or policy.night_of(doom.since) or policy.local_day(doom.since)
    if policy.end_of_day is None:
        return "the end-of-day rule is off"
    if policy.night_over(day, now):
        return "that working night is over"
    if doom.rule == "end_of_day" and record.overtime is not None and record.overtime.day == day:
        return "it has overtime"
    if doom.rule == "overtime" and (record.overtime is None or record.overtime.until > now):
        return "its overtime was extended"
    return None


def plan_tick(state: State, policy: Policy, now: datetime) -> tuple[State, list[Effect]]:
    """One poller tick: which warnings to send, which clusters to terminate, which pending terminations to drop.

    Only clusters in the latest listing are considered (an unseen one may be
    stale or no longer managed). The returned state already records warnings
    as sent and clusters as doomed, so it must be stored *before* the effects
    are carried out: a crash then loses a warning rather than sending it twice.
    """
    effects: list[Effect] = []
    new_state = state
    for record in state.listed():
        start = record.start
        if start is not None and not start.notified and record.state in READY_STATES:
            took = max((record.ready_at or now) - start.at, timedelta(0))
            record = replace(record, start=replace(start, notified=True))
            event = Event(
                now, "ready", record.id, record.name, who=start.by_name, detail=f"{int(took.total_seconds())}"
            )
            new_state = new_state.with_cluster(record).record(event)
            effects.append(Ready(record, took))
        original = record
        record, hold_effects = _reminders(record, policy, now)
        if record is not original:
            new_state = new_state.with_cluster(record)
        for effect in hold_effects:
            kind: EventKind = "expired" if isinstance(effect, Expire) else "reminder"
            detail = "" if isinstance(effect, Expire) else effect.ends_at.isoformat()
            new_state = new_state.record(Event(now, kind, record.id, record.name, who=effect.hold.name, detail=detail))
        effects.extend(hold_effects)
        if record.doomed is not None:
            why = doom_reason_gone(state, record, policy, now)
            if why is None:
                expect = frozenset({"WAITING"}) if record.doomed.rule == "idle" else frozenset(ACTIVE_STATES)
                effects.append(Terminate(record, record.doomed.rule, expect))
            else:
                kept = replace(record, doomed=None)
                event = Event(now, "cancelled", record.id, record.name, rule=record.doomed.rule, detail=why)
                new_state = new_state.with_cluster(kept).record(event)
                effects.append(Cancelled(kept, record.doomed.rule, why))
            continue
        deadline = next_deadline(new_state, record, policy, now)
        if deadline is None:
            continue
        if now >= deadline.at:
            day = None
            if deadline.rule != "idle":
                day = record.overtime.day if deadline.rule == "overtime" and record.overtime else policy.local_day(now)
            doomed = replace(record, doomed=Doom(deadline.rule, now, day=day))
            new_state = new_state.with_cluster(doomed)
            expect = frozenset({"WAITING"}) if deadline.rule == "idle" else frozenset(ACTIVE_STATES)
            effects.append(Terminate(doomed, deadline.rule, expect))
        elif policy.warn_minutes and now >= deadline.at - policy.warn and deadline.warning_key() not in record.warned:
            warned = replace(record, warned=(*record.warned, deadline.warning_key())[-WARNED_LIMIT:])
            new_state = new_state.with_cluster(warned).record(
                Event(now, "warning", record.id, record.name, rule=deadline.rule, detail=deadline.at.isoformat())
            )
            effects.append(Warn(warned, deadline))
    if policy.end_of_day is not None:
        today = policy.local_day(now)
        if state.end_of_day_done != today and now >= policy.end_of_day_at(today):
            new_state = replace(new_state, end_of_day_done=today)
    return new_state, effects


def _reminders(record: ClusterRecord, policy: Policy, now: datetime) -> tuple[ClusterRecord, list[Remind | Expire]]:
    """Hold reminders and expiry (DESIGN §11) for one cluster: the updated record and what to announce.

    A hold unconfirmed for ``remind`` on a cluster that did no work in that time
    gets one reminder; unconfirmed ``grace`` later it ends, and the idle clock
    starts then. Work on the cluster after the reminder withdraws it.
    """
    remind = policy.remind
    if remind is None or not record.holds or record.doomed is not None:
        return record, []
    work = last_work(record, now)
    holds: list[Hold] = []
    reminders: list[Remind] = []
    expired: list[Hold] = []
    for hold in record.holds:
        if hold.reminded_at is not None:
            if work is not None and work > hold.reminded_at:
                holds.append(replace(hold, reminded_at=None))  # work started: the question is moot
            elif now >= hold.reminded_at + policy.grace:
                expired.append(hold)
            else:
                holds.append(hold)
            continue
        if now - hold.confirmed_at >= remind and (work is None or now - work >= remind):
            reminded = replace(hold, reminded_at=now)
            holds.append(reminded)
            quiet_since = max(work, hold.since) if work is not None else hold.since
            reminders.append(Remind(record, reminded, now + policy.grace, quiet_since))
        else:
            holds.append(hold)
    if tuple(holds) == record.holds:
        return record, []
    updated = replace(record, holds=tuple(holds))
    if expired and not holds:
        updated = replace(updated, last_release=now)  # the idle clock starts when the last hold ends
    effects: list[Remind | Expire] = [replace(r, cluster=updated) for r in reminders]
    effects += [Expire(updated, hold) for hold in expired]
    return updated, effects


def termination_refusal(record: ClusterRecord, fresh: ClusterInfo, expect: Iterable[str]) -> str | None:
    """Re-read right before a termination: why it must not go ahead, or None.

    The decision was made on *record* (what the bot remembered); *fresh* is
    what DescribeCluster says now.
    """
    if fresh.state in ENDED_STATES:
        return f"it is already {fresh.state}"
    if not fresh.managed:
        return "it no longer carries the managed tag"
    if fresh.state not in expect:
        return f"it is {fresh.state} now (was {record.state})"
    return None


# -- commands as state transitions ----------------------------------------------


def started(
    state: State,
    cluster_id: str,
    name: str,
    template: str,
    user: str,
    user_name: str,
    reason: str,
    now: datetime,
    *,
    backstop: int | None,
    where: tuple[str, str] = ("", ""),
) -> State:
    """RunJobFlow accepted `!emr start`: remember the new cluster at once, held by its starter (in the
    (target, region) *where* it was started).

    It is remembered before any listing shows it, so that a second `!emr start` sees it,
    and *backstop* is the IdleTimeout it was created with (None: BACKSTOP_MINUTES off).
    """
    hold = Hold(user=user, name=user_name, since=now, reason=(reason or STARTED_REASON)[:REASON_LIMIT])
    record = ClusterRecord(
        id=cluster_id,
        name=name,
        state="STARTING",
        first_seen=now,
        holds=(hold,),
        template=template,
        start=Start(at=now, by=user, by_name=user_name, template=template),
        backstop=backstop,
        target=where[0],
        region=where[1],
    )
    event = Event(now, "start", cluster_id, name, who=user_name, detail=f"template {template}")
    held = Event(now, "hold", cluster_id, name, who=user_name, detail=hold.reason)
    return state.with_cluster(record).record(event).record(held)


def backstop_wanted(record: ClusterRecord, seconds: int) -> int:
    """The IdleTimeout EMR should hold for *record*: none (0) while someone holds it, else *seconds*."""
    return 0 if record.holds else seconds


def backstop_due(
    state: State,
    seconds: int,
    now: datetime,
    tried: Mapping[str, datetime],
    only: str | None = None,
) -> list[tuple[str, int]]:
    """Which managed clusters' AutoTerminationPolicy must change now, and to what (0: remove it).

    A cluster whose last change failed is tried again at most every :data:`BACKSTOP_RETRY`
    by the poller (*tried*: when the bot last asked, per cluster); a command asks for its
    own cluster (*only*) at once.
    """
    due = []
    for record in state.listed():
        if only is not None and record.id != only:
            continue
        wanted = backstop_wanted(record, seconds)
        if record.backstop == wanted:
            continue
        last = tried.get(record.id)
        if only is None and record.backstop_failure and last is not None and now - last < BACKSTOP_RETRY:
            continue
        due.append((record.id, wanted))
    return due


def backstop_set(state: State, cluster_id: str, seconds: int) -> tuple[State, bool]:
    """EMR accepted the change: the cluster now holds *seconds* (0: none). True when a failure was pending."""
    record = state.clusters.get(cluster_id)
    if record is None:
        return state, False
    recovered = bool(record.backstop_failure)
    return state.with_cluster(replace(record, backstop=seconds, backstop_failure="")), recovered


def backstop_failed(state: State, cluster_id: str, code: str) -> tuple[State, bool]:
    """A backstop change failed; True when this failure is new for the cluster (announce it once)."""
    record = state.clusters.get(cluster_id)
    if record is None or record.backstop_failure == code:
        return state, False
    return state.with_cluster(replace(record, backstop_failure=code)), True


def add_hold(state: State, cluster_id: str, user: str, name: str, reason: str, now: datetime) -> State:
    """Add *user*'s hold, or confirm it (withdrawing a reminder); cancels a pending idle termination."""
    record = state.clusters[cluster_id]
    existing = record.holder(user)
    if existing is None:
        hold = Hold(user=user, name=name, since=now, reason=reason[:REASON_LIMIT])
    else:  # a confirmation: the hold goes on (its reason too, unless a new one is given)
        hold = replace(
            existing, name=name, reason=reason[:REASON_LIMIT] or existing.reason, confirmed=now, reminded_at=None
        )
    holds = (*(h for h in record.holds if h.user != user), hold)
    doomed = None if record.doomed and record.doomed.rule == "idle" else record.doomed
    event = Event(now, "hold", cluster_id, record.name, who=name, detail=hold.reason)
    return state.with_cluster(replace(record, holds=holds, doomed=doomed)).record(event)


def drop_hold(state: State, cluster_id: str, user: str, now: datetime, *, by: str | None = None) -> State:
    """Drop *user*'s hold (by an admin when *by* is given); the last release starts the idle clock."""
    record = state.clusters[cluster_id]
    dropped = record.holder(user)
    if dropped is None:
        return state
    holds = tuple(h for h in record.holds if h.user != user)
    last_release = now if not holds else record.last_release
    detail = f"by {by}" if by else ""
    event = Event(now, "release", cluster_id, record.name, who=dropped.name, detail=detail)
    return state.with_cluster(replace(record, holds=holds, last_release=last_release)).record(event)


def overtime_night(policy: Policy, state: State, record: ClusterRecord, now: datetime) -> date:
    """The working night ``!emr overtime`` on *record* would extend; ValueError says why there is none.

    Before tonight's end of day: tonight. During a working night (also after
    midnight): that night, if its pass is still to run today, or the cluster
    already has overtime for it (an extension), or it is being terminated by
    that night's pass (overtime rescues it).
    """
    if policy.end_of_day is None:
        raise ValueError("the end-of-day rule is off (END_OF_DAY is not set): there is nothing to extend")
    night = policy.night_of(now)
    if night is None:
        day = next_end_of_day_day(state, policy, now)
        assert day is not None
        return day
    has_overtime = record.overtime is not None and record.overtime.day == night
    doomed_tonight = (
        record.doomed is not None and record.doomed.rule in ("end_of_day", "overtime") and record.doomed.day == night
    )
    pass_to_come = state.end_of_day_done != night and policy.local_day(now) == night
    if has_overtime or doomed_tonight or pass_to_come:
        return night
    if state.end_of_day_done != night:
        raise ValueError("last night's end-of-day pass did not run (the bot was down then): there is nothing to extend")
    raise ValueError("tonight's end-of-day pass has already run; this cluster is only under the idle rule tonight")


def overtime_until(
    policy: Policy, state: State, record: ClusterRecord, hhmm: time | None, now: datetime
) -> tuple[datetime, date]:
    """Resolve ``!emr overtime [HH:MM]`` to an absolute time and the working night it extends.

    HH:MM is the first such time after that night's end of day (so ``01:00``
    means after midnight, and asked at 00:40 it is 20 minutes away). The
    default is two hours after the end of day, or two hours from now when
    that has passed. Raises ValueError with a user-facing message when there
    is no night to extend, the time is past, or it is beyond the bound.
    """
    night = overtime_night(policy, state, record, now)
    end = policy.end_of_day_at(night)
    limit = end + OVERTIME_LIMIT
    if hhmm is None:
        until = max(end, now) + OVERTIME_DEFAULT
        until = min(until, limit)
        if until <= now:
            raise ValueError(f"overtime can last until {limit.astimezone(policy.timezone):%H:%M} at the latest")
    else:
        local = datetime.combine(night, hhmm, tzinfo=policy.timezone)
        if local.astimezone(UTC) <= end:
            local = datetime.combine(night + timedelta(days=1), hhmm, tzinfo=policy.timezone)
        until = local.astimezone(UTC)
        if until > limit:
            last = limit.astimezone(policy.timezone)
            raise ValueError(f"overtime can last until {last:%H:%M} at the latest ({OVERTIME_LIMIT} after end of day)")
        if until <= now:
            raise ValueError(f"{hhmm:%H:%M} is already past")
    return until, night


def set_overtime(
    state: State, cluster_id: str, user: str, name: str, until: datetime, day: date, now: datetime
) -> State:
    """Record overtime for the working night *day*; rescues a cluster doomed by that night's rules."""
    record = state.clusters[cluster_id]
    doomed = None if record.doomed and record.doomed.rule in ("end_of_day", "overtime") else record.doomed
    event = Event(now, "overtime", cluster_id, record.name, who=name, detail=until.isoformat())
    # Asking for overtime says "I am using it": it confirms the asker's hold (DESIGN §11).
    holds = tuple(replace(h, confirmed=now, reminded_at=None) if h.user == user else h for h in record.holds)
    updated = replace(record, overtime=Overtime(until=until, day=day, by=user), doomed=doomed, holds=holds)
    return state.with_cluster(updated).record(event)


def terminated(state: State, cluster_id: str, now: datetime, *, rule: Rule | None, who: str | None) -> State:
    """AWS accepted the termination (by a rule or a person): holds end; the record waits for AWS to confirm."""
    record = state.clusters[cluster_id]
    detail = ", ".join(h.name for h in record.holds)
    event = Event(
        now, "terminated", cluster_id, record.name, who=who, rule=rule, detail=f"holders: {detail}" if detail else ""
    )
    ending = replace(record, holds=(), doomed=None, overtime=None, ending=Ending(now, who, rule), state="TERMINATING")
    return state.with_cluster(ending).record(event)


def termination_failed(state: State, cluster_id: str, code: str, message: str, now: datetime) -> tuple[State, bool]:
    """Note a failed automatic termination; True when this failure is new (announce it once)."""
    record = state.clusters.get(cluster_id)
    if record is None or record.doomed is None:
        return state, False
    if record.doomed.failure == code:
        return state, False
    updated = replace(record, doomed=replace(record.doomed, failure=code))
    event = Event(now, "failed", cluster_id, record.name, rule=record.doomed.rule, detail=message[:300])
    return state.with_cluster(updated).record(event), True


def refused_termination(state: State, cluster_id: str, fresh: ClusterInfo, why: str, now: datetime) -> State:
    """A re-read refused an automatic termination: drop the doom, take AWS's state, say why in history."""
    record = state.clusters.get(cluster_id)
    if record is None:
        return state
    updated = replace(record, doomed=None, state=fresh.state if fresh.active else record.state)
    if fresh.state == "WAITING" and record.state in BUSY_STATES:
        updated = replace(updated, waiting_since=now)
    if fresh.active and not fresh.managed:
        updated = replace(updated, absent=UNMANAGED)
    rule = record.doomed.rule if record.doomed else None
    event = Event(now, "cancelled", cluster_id, record.name, rule=rule, detail=why)
    return state.with_cluster(updated).record(event)


__all__ = [
    "ACTIVE_STATES",
    "REASON_LIMIT",
    "Activity",
    "Cancelled",
    "ClusterInfo",
    "ClusterRecord",
    "Deadline",
    "Effect",
    "Expire",
    "Hold",
    "Policy",
    "Ready",
    "Remind",
    "Settled",
    "State",
    "Terminate",
    "Warn",
    "activity_seen",
    "activity_unknown",
    "add_hold",
    "after_end_of_day",
    "backstop_due",
    "backstop_failed",
    "backstop_set",
    "backstop_wanted",
    "busy",
    "drop_hold",
    "last_work",
    "needs_step_check",
    "next_deadline",
    "observe",
    "overtime_night",
    "overtime_until",
    "plan_tick",
    "reading_says",
    "refused_termination",
    "set_overtime",
    "settle",
    "started",
    "steps_seen",
    "terminated",
    "termination_failed",
    "termination_refusal",
    "to_recheck",
]
