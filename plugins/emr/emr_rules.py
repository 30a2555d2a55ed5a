"""The pure rules: holds, the idle rule, the end-of-day rule, overtime, history.

Nothing here imports boto3 or errbot, and nothing reads the clock: every
function takes ``now`` (an aware UTC datetime). The plugin keeps the state as
plain data (:meth:`State.to_dict`) in Errbot's storage and converts it at the
edge with :meth:`State.from_dict`; every function here returns a new
:class:`State` instead of mutating one.

The rules (DESIGN §6):

* **Idle rule** — a managed cluster in ``WAITING`` with no holds is idle since
  the latest of its ready time, its last release, the moment the bot first saw
  it, and the moment it came back to ``WAITING`` from a busy state. It is
  terminated ``idle_minutes`` after that, warned ``warn_minutes`` before.
* **End-of-day rule** — once per local day, at the first tick at or after
  ``end_of_day`` in ``timezone``, every managed cluster is terminated, held or
  not, unless it has overtime for that day (then at the overtime time). A
  cluster started after that day's pass is left to the idle rule.
* A termination that fails stays *doomed* and is retried every tick; each
  distinct failure is announced once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

STATE_VERSION = 1
ACTIVE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
BUSY_STATES = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING"})
HISTORY_LIMIT = 200
GONE_LIMIT = 100
WARNED_LIMIT = 20
REASON_LIMIT = 200
OVERTIME_DEFAULT = timedelta(hours=2)
OVERTIME_LIMIT = timedelta(hours=8)

Rule = Literal["idle", "end_of_day", "overtime"]


# -- small frozen types ----------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The rule parameters, taken from the plugin settings."""

    idle_minutes: int = 30
    warn_minutes: int = 5
    end_of_day: time | None = time(19, 0)
    timezone: ZoneInfo = ZoneInfo("Asia/Tokyo")  # noqa: RUF009 - ZoneInfo objects are immutable and cached

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


@dataclass(frozen=True)
class ClusterInfo:
    """A managed, active cluster as AWS reports it (the adapter's output)."""

    id: str
    name: str
    state: str
    created_at: datetime | None = None
    ready_at: datetime | None = None


@dataclass(frozen=True)
class Hold:
    """Someone declared they are using a cluster."""

    user: str  # the chat identity (``msg.frm.person``): stable, used for mentions
    name: str  # how to show them
    since: datetime
    reason: str = ""


@dataclass(frozen=True)
class Overtime:
    """A holder asked to keep the cluster past *day*'s end of day, until *until*."""

    until: datetime
    day: date
    by: str


@dataclass(frozen=True)
class Doom:
    """The cluster is due for termination by *rule*; retried until it is gone."""

    rule: str
    since: datetime
    failure: str | None = None  # the last failure code already announced


@dataclass(frozen=True)
class ClusterRecord:
    """What the bot remembers about one active managed cluster."""

    id: str
    name: str
    state: str
    first_seen: datetime
    ready_at: datetime | None = None
    waiting_since: datetime | None = None
    last_release: datetime | None = None
    holds: tuple[Hold, ...] = ()
    warned: tuple[str, ...] = ()
    overtime: Overtime | None = None
    doomed: Doom | None = None

    def holder(self, user: str) -> Hold | None:
        return next((h for h in self.holds if h.user == user), None)


@dataclass(frozen=True)
class Event:
    """One line of ``!emr history``."""

    at: datetime
    kind: str  # hold, release, warning, overtime, terminated, failed, gone
    cluster: str
    name: str
    who: str | None = None
    rule: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class State:
    """Everything the rules remember; persisted as plain data."""

    clusters: Mapping[str, ClusterRecord] = field(default_factory=dict)
    end_of_day_done: date | None = None
    gone: tuple[str, ...] = ()
    history: tuple[Event, ...] = ()

    # -- plain data ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "clusters": {cid: _record_to_dict(r) for cid, r in self.clusters.items()},
            "end_of_day_done": self.end_of_day_done.isoformat() if self.end_of_day_done else None,
            "gone": list(self.gone),
            "history": [_event_to_dict(e) for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> State:
        if not data:
            return cls()
        version = data.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"unsupported state version {version!r} (this code reads {STATE_VERSION})")
        done = data.get("end_of_day_done")
        return cls(
            clusters={cid: _record_from_dict(r, cid) for cid, r in data.get("clusters", {}).items()},
            end_of_day_done=date.fromisoformat(done) if done else None,
            gone=tuple(data.get("gone", ())),
            history=tuple(_event_from_dict(e) for e in data.get("history", ())),
        )

    def record(self, event: Event) -> State:
        return replace(self, history=(*self.history, event)[-HISTORY_LIMIT:])

    def with_cluster(self, record: ClusterRecord) -> State:
        return replace(self, clusters={**self.clusters, record.id: record})

    def without_cluster(self, cluster_id: str) -> State:
        clusters = {cid: r for cid, r in self.clusters.items() if cid != cluster_id}
        gone = (*(g for g in self.gone if g != cluster_id), cluster_id)[-GONE_LIMIT:]
        return replace(self, clusters=clusters, gone=gone)


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
    """Effect: terminate *cluster* now, because of *rule*."""

    cluster: ClusterRecord
    rule: str


Effect = Warn | Terminate


# -- observing AWS ------------------------------------------------------------------


def observe(state: State, clusters: Iterable[ClusterInfo], now: datetime) -> tuple[State, list[ClusterRecord]]:
    """Fold the current list of managed active clusters into the state.

    New clusters get ``first_seen = now``; a cluster coming back to WAITING
    from a busy state restarts its idle clock; a cluster already known as gone
    is ignored (a listing taken just before it was terminated). Clusters no longer listed are
    dropped (their holds end with them) and returned, so the caller can
    announce the ones that were being terminated.
    """
    seen: dict[str, ClusterRecord] = {}
    for info in clusters:
        if info.id in state.gone:
            continue  # a listing taken before its termination: cluster ids never come back
        old = state.clusters.get(info.id)
        if old is None:
            record = ClusterRecord(
                id=info.id,
                name=info.name,
                state=info.state,
                first_seen=now,
                ready_at=info.ready_at,
                waiting_since=None,
            )
        else:
            waiting_since = old.waiting_since
            if info.state == "WAITING" and old.state in BUSY_STATES:
                waiting_since = now
            record = replace(old, name=info.name, state=info.state, ready_at=info.ready_at, waiting_since=waiting_since)
        seen[info.id] = record
    vanished = [r for cid, r in state.clusters.items() if cid not in seen]
    new_state = replace(state, clusters=seen)
    for record in vanished:
        new_state = replace(new_state, gone=(*new_state.gone, record.id)[-GONE_LIMIT:])
        if record.doomed is None:
            new_state = new_state.record(
                Event(now, "gone", record.id, record.name, detail="terminated outside the bot")
            )
    return new_state, vanished


# -- deadlines ------------------------------------------------------------------------


def idle_since(record: ClusterRecord) -> datetime | None:
    """When an unheld WAITING cluster became idle; None when it is held or busy."""
    if record.state != "WAITING" or record.holds:
        return None
    moments = [m for m in (record.ready_at, record.last_release, record.first_seen, record.waiting_since) if m]
    return max(moments)


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
    if day is not None and not (record.overtime and record.overtime.day == day):
        candidates.append(Deadline(policy.end_of_day_at(day), "end_of_day"))
    if record.overtime is not None:
        candidates.append(Deadline(record.overtime.until, "overtime"))
    return min(candidates, key=lambda d: d.at) if candidates else None


def plan_tick(state: State, policy: Policy, now: datetime) -> tuple[State, list[Effect]]:
    """One poller tick: which warnings to send and which clusters to terminate.

    The returned state already records the warnings as sent and the doomed
    clusters, so it must be stored *before* the effects are carried out: a
    crash then loses a warning rather than sending it twice.
    """
    effects: list[Effect] = []
    new_state = state
    for record in state.clusters.values():
        if record.doomed is not None:
            effects.append(Terminate(record, record.doomed.rule))
            continue
        deadline = next_deadline(state, record, policy, now)
        if deadline is None:
            continue
        if now >= deadline.at:
            doomed = replace(record, doomed=Doom(deadline.rule, now))
            new_state = new_state.with_cluster(doomed)
            effects.append(Terminate(doomed, deadline.rule))
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


# -- commands as state transitions ----------------------------------------------


def add_hold(state: State, cluster_id: str, user: str, name: str, reason: str, now: datetime) -> State:
    """Add or refresh *user*'s hold; cancels a pending idle termination."""
    record = state.clusters[cluster_id]
    hold = Hold(user=user, name=name, since=now, reason=reason[:REASON_LIMIT])
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


def overtime_until(policy: Policy, state: State, hhmm: time | None, now: datetime) -> tuple[datetime, date]:
    """Resolve ``!emr overtime [HH:MM]`` to an absolute time and the day it extends.

    The time is the first HH:MM after tonight's end of day (so ``01:00`` means
    after midnight). Raises ValueError with a user-facing message when it is
    in the past, not after the end of day, or beyond the bound.
    """
    day = next_end_of_day_day(state, policy, now)
    if day is None:
        raise ValueError("the end-of-day rule is off (END_OF_DAY is not set): there is nothing to extend")
    if day != policy.local_day(now):
        raise ValueError("tonight's end-of-day pass has already run; this cluster is now only under the idle rule")
    end = policy.end_of_day_at(day)
    limit = end + OVERTIME_LIMIT
    if hhmm is None:
        until = end + OVERTIME_DEFAULT
    else:
        local = datetime.combine(day, hhmm, tzinfo=policy.timezone)
        if local.astimezone(UTC) <= end:
            local = datetime.combine(day + timedelta(days=1), hhmm, tzinfo=policy.timezone)
        until = local.astimezone(UTC)
    if until <= now:
        raise ValueError(f"{hhmm:%H:%M} is already past")  # pragma: no cover - after end only
    if until > limit:
        last = limit.astimezone(policy.timezone)
        raise ValueError(f"overtime can last until {last:%H:%M} at the latest ({OVERTIME_LIMIT} after end of day)")
    return until, day


def set_overtime(
    state: State, cluster_id: str, user: str, name: str, until: datetime, day: date, now: datetime
) -> State:
    record = state.clusters[cluster_id]
    doomed = None if record.doomed and record.doomed.rule == "end_of_day" else record.doomed
    event = Event(now, "overtime", cluster_id, record.name, who=name, detail=until.isoformat())
    updated = replace(record, overtime=Overtime(until=until, day=day, by=user), doomed=doomed)
    return state.with_cluster(updated).record(event)


def terminated(state: State, cluster_id: str, now: datetime, *, rule: str | None, who: str | None) -> State:
    """The cluster was terminated (by a rule or a person): forget it, remember why."""
    record = state.clusters.get(cluster_id)
    name = record.name if record else cluster_id
    detail = ", ".join(h.name for h in record.holds) if record and record.holds else ""
    event = Event(
        now, "terminated", cluster_id, name, who=who, rule=rule, detail=f"holders: {detail}" if detail else ""
    )
    return state.without_cluster(cluster_id).record(event)


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


# -- plain-data converters -----------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _record_to_dict(r: ClusterRecord) -> dict[str, Any]:
    return {
        "name": r.name,
        "state": r.state,
        "first_seen": r.first_seen.isoformat(),
        "ready_at": _iso(r.ready_at),
        "waiting_since": _iso(r.waiting_since),
        "last_release": _iso(r.last_release),
        "holds": [{"user": h.user, "name": h.name, "since": h.since.isoformat(), "reason": h.reason} for h in r.holds],
        "warned": list(r.warned),
        "overtime": (
            {"until": r.overtime.until.isoformat(), "day": r.overtime.day.isoformat(), "by": r.overtime.by}
            if r.overtime
            else None
        ),
        "doomed": (
            {"rule": r.doomed.rule, "since": r.doomed.since.isoformat(), "failure": r.doomed.failure}
            if r.doomed
            else None
        ),
    }


def _record_from_dict(d: Mapping[str, Any], cluster_id: str | None = None) -> ClusterRecord:
    overtime = d.get("overtime")
    doomed = d.get("doomed")
    first_seen = _dt(d["first_seen"])
    assert first_seen is not None
    return ClusterRecord(
        id=cluster_id or d.get("id", ""),
        name=d["name"],
        state=d["state"],
        first_seen=first_seen,
        ready_at=_dt(d.get("ready_at")),
        waiting_since=_dt(d.get("waiting_since")),
        last_release=_dt(d.get("last_release")),
        holds=tuple(
            Hold(user=h["user"], name=h["name"], since=datetime.fromisoformat(h["since"]), reason=h.get("reason", ""))
            for h in d.get("holds", ())
        ),
        warned=tuple(d.get("warned", ())),
        overtime=(
            Overtime(datetime.fromisoformat(overtime["until"]), date.fromisoformat(overtime["day"]), overtime["by"])
            if overtime
            else None
        ),
        doomed=(
            Doom(doomed["rule"], datetime.fromisoformat(doomed["since"]), doomed.get("failure")) if doomed else None
        ),
    )


def _event_to_dict(e: Event) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(),
        "kind": e.kind,
        "cluster": e.cluster,
        "name": e.name,
        "who": e.who,
        "rule": e.rule,
        "detail": e.detail,
    }


def _event_from_dict(d: Mapping[str, Any]) -> Event:
    return Event(
        at=datetime.fromisoformat(d["at"]),
        kind=d["kind"],
        cluster=d["cluster"],
        name=d["name"],
        who=d.get("who"),
        rule=d.get("rule"),
        detail=d.get("detail", ""),
    )
