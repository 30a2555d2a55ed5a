"""The bot's memory: small frozen types, and the versioned plain data they are stored as.

Nothing here imports boto3 or errbot, and nothing reads the clock. The plugin
keeps the state in Errbot's storage as plain data (:meth:`State.to_dict`:
str/int/ISO-8601 strings, dicts, lists) and converts it at the edge with
:meth:`State.from_dict`, which also migrates the formats of earlier releases
and refuses, rather than drops, a format newer than this code knows.

A cluster is remembered from the first listing that shows it managed until
AWS itself says it has ended (a terminal state in ``DescribeCluster``):
absence from one listing proves nothing (a stale listing, a wrong
``CLUSTER_TAG`` for a while), so such a record is only marked *unseen* and
keeps its holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from emrchatops.domain.vocabulary import ACTIVE_STATES, EventKind, Rule
from emrchatops.domain.vocabulary import iso as _iso
from emrchatops.domain.vocabulary import parse_iso as _dt

STATE_VERSION = 5
HISTORY_LIMIT = 200
WARNED_LIMIT = 20
REASON_LIMIT = 200
RECORD_LIMIT = 200  # clusters remembered at once (active ones are far fewer; see State.bounded)

# Why a remembered cluster is missing from the latest listing of managed clusters.
UNSEEN = "unseen"  # not in the listing; AWS not asked yet, or could not answer
UNMANAGED = "unmanaged"  # AWS says it is active but it no longer carries CLUSTER_TAG


@dataclass(frozen=True)
class ClusterInfo:
    """A cluster as AWS reports it (the adapter's output)."""

    id: str
    name: str
    state: str
    created_at: datetime | None = None
    ready_at: datetime | None = None
    managed: bool = True  # carries CLUSTER_TAG (listings only return managed clusters)
    ended_at: datetime | None = None
    reason: str = ""  # EMR's state-change reason, e.g. "User request"
    template: str = ""  # the tag emr-chatops:template (started from that template), when the tags were read
    target: str = ""  # the target (TARGETS_FILE, or TARGET_NAME) whose listing showed it
    region: str = ""  # … in this region

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Activity:
    """What EMR's ``IsIdle`` metric says of one cluster (DESIGN §10).

    *latest_at* is the start of the latest 5-minute period with a datapoint,
    *busy* whether that datapoint is 0 (YARN work running), *work_ended* the
    end of the latest period with ``IsIdle`` = 0 in the window read.
    """

    latest_at: datetime
    busy: bool
    work_ended: datetime | None = None


@dataclass(frozen=True)
class Hold:
    """Someone declared they are using a cluster."""

    user: str  # the chat identity (``msg.frm.person``): stable, used for mentions
    name: str  # how to show them
    since: datetime
    reason: str = ""
    confirmed: datetime | None = None  # the latest `!emr lock` by the holder (None: since)
    reminded_at: datetime | None = None  # a reminder is pending since then (DESIGN §11)

    @property
    def confirmed_at(self) -> datetime:
        return self.confirmed or self.since


@dataclass(frozen=True)
class Overtime:
    """A holder asked to keep the cluster through the working night of *day*, until *until*."""

    until: datetime
    day: date
    by: str


@dataclass(frozen=True)
class Doom:
    """The cluster is due for termination by *rule*; retried while the reason holds.

    *day* is the working night an end-of-day or overtime termination belongs to.
    """

    rule: Rule
    since: datetime
    failure: str | None = None  # the last failure code already announced
    day: date | None = None


@dataclass(frozen=True)
class Start:
    """The bot started this cluster (`!emr start`): who asked, when, from which template (DESIGN §12).

    *notified* is set once its outcome — ready, or failed to start — has been announced,
    so the announcement is made once, also across restarts.
    """

    at: datetime  # when RunJobFlow was accepted
    by: str  # the starter's chat identity (mentioned in the notices)
    by_name: str
    template: str
    notified: bool = False


@dataclass(frozen=True)
class Ending:
    """AWS accepted a termination (by *who*, or by *rule*); the record leaves when AWS says it ended."""

    at: datetime
    who: str | None = None
    rule: Rule | None = None


@dataclass(frozen=True)
class ClusterRecord:
    """What the bot remembers about one managed cluster."""

    id: str
    name: str
    state: str
    first_seen: datetime
    ready_at: datetime | None = None
    waiting_since: datetime | None = None  # back to WAITING from work, or seen again after an absence
    last_release: datetime | None = None
    holds: tuple[Hold, ...] = ()
    warned: tuple[str, ...] = ()
    overtime: Overtime | None = None
    doomed: Doom | None = None
    absent: str = ""  # "", UNSEEN or UNMANAGED
    unseen_since: datetime | None = None
    ending: Ending | None = None
    worked_at: datetime | None = None  # the end of the latest work seen: a step, a busy state, IsIdle = 0
    activity: str = ""  # "busy" / "idle" from the latest IsIdle datapoint; "" unknown
    activity_at: datetime | None = None  # the latest IsIdle datapoint's period
    template: str = ""  # the template it was started from ("" unknown: not started from one, or tags not read)
    start: Start | None = None  # started by the bot
    # EMR's AutoTerminationPolicy as the bot last set it: IdleTimeout seconds, 0 none (held), None not set yet.
    backstop: int | None = None
    backstop_failure: str = ""  # the failure code of the pending backstop change, announced once
    target: str = ""  # the target it belongs to (DESIGN §17): its account, role, channel and admins
    region: str = ""  # the target's region it runs in

    def holder(self, user: str) -> Hold | None:
        return next((h for h in self.holds if h.user == user), None)

    @property
    def listed(self) -> bool:
        """In the latest listing of managed clusters and not being terminated: the rules and commands apply."""
        return not self.absent and self.ending is None


@dataclass(frozen=True)
class Event:
    """One line of ``!emr history``."""

    at: datetime
    kind: EventKind
    cluster: str
    name: str
    who: str | None = None
    rule: Rule | None = None
    detail: str = ""
    target: str = ""  # the cluster's target ("" in events of a time before targets had names)


@dataclass(frozen=True)
class State:
    """Everything the rules remember; persisted as plain data."""

    clusters: Mapping[str, ClusterRecord] = field(default_factory=dict)
    end_of_day_done: date | None = None
    history: tuple[Event, ...] = ()

    # -- plain data ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "clusters": {cid: _record_to_dict(r) for cid, r in self.clusters.items()},
            "end_of_day_done": self.end_of_day_done.isoformat() if self.end_of_day_done else None,
            "history": [_event_to_dict(e) for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, home: tuple[str, str] = ("", "")) -> State:
        """Decode stored state, migrating earlier formats; a newer format is refused (ValueError).

        *home* is the (target, region) that state of a release before targets (version 4 and
        earlier) belongs to: the one target then configured.
        """
        if not data:
            return cls()
        data = migrate(data, home)
        done = data.get("end_of_day_done")
        return cls(
            clusters={cid: _record_from_dict(r, cid) for cid, r in data.get("clusters", {}).items()},
            end_of_day_done=date.fromisoformat(done) if done else None,
            history=tuple(_event_from_dict(e) for e in data.get("history", ())),
        )

    # -- small helpers ---------------------------------------------------------
    def record(self, event: Event) -> State:
        """Add *event* to the history (dated with its cluster's target when the event does not say it)."""
        if not event.target and (known := self.clusters.get(event.cluster)) is not None:
            event = replace(event, target=known.target)
        return replace(self, history=(*self.history, event)[-HISTORY_LIMIT:])

    def with_cluster(self, record: ClusterRecord) -> State:
        return replace(self, clusters={**self.clusters, record.id: record})

    def without_cluster(self, cluster_id: str) -> State:
        return replace(self, clusters={cid: r for cid, r in self.clusters.items() if cid != cluster_id})

    def listed(self) -> list[ClusterRecord]:
        return [r for r in self.clusters.values() if r.listed]

    def bounded(self) -> State:
        """At most RECORD_LIMIT records: the oldest unheld ones that are not listed go first."""
        if len(self.clusters) <= RECORD_LIMIT:
            return self
        spare = sorted((r for r in self.clusters.values() if not r.listed and not r.holds), key=lambda r: r.first_seen)
        excess = len(self.clusters) - RECORD_LIMIT
        drop = {r.id for r in spare[:excess]}
        return replace(self, clusters={cid: r for cid, r in self.clusters.items() if cid not in drop})


def migrate(data: Mapping[str, Any], home: tuple[str, str] = ("", "")) -> Mapping[str, Any]:
    """Bring stored state of an earlier release to :data:`STATE_VERSION`.

    * version 1 (part one) kept a list ``gone`` of cluster ids never to be seen
      again; remembering a cluster as gone forever is what lost clusters and
      holds after one stale listing, so it is dropped. Records gain ``absent``,
      ``unseen_since`` and ``ending`` (all empty).
    * version 2 → 3: records gain ``worked_at``, ``activity``, ``activity_at``;
      holds gain ``confirmed`` and ``reminded_at`` (all empty: nothing known yet).
    * version 3 → 4: records gain ``template``, ``start`` (clusters the bot started),
      ``backstop`` and ``backstop_failure`` (EMR's auto-termination policy as the bot set it).
      Empty: no cluster was started by the bot before, and the backstop is "not set yet",
      so the poller sets it once on each unheld cluster.
    * version 4 → 5 (targets, DESIGN §17): records gain ``target`` and ``region``, events
      ``target``: each belongs to *home*, the (target, region) the bot served alone before.
    """
    version = data.get("version")
    if isinstance(version, int) and version > STATE_VERSION:
        raise ValueError(
            f"the stored state is version {version}, newer than this code reads ({STATE_VERSION}): "
            "upgrade the plugin (nothing was changed)"
        )
    if version == 1:
        data = {k: v for k, v in data.items() if k != "gone"} | {"version": 2}
        version = 2
    if version == 2:
        # Version 3 (activity, hold reminders) only adds fields whose absence means "none yet".
        data = {**data, "version": 3}
        version = 3
    if version == 3:
        # Version 4 (starts, the backstop) only adds fields whose absence means "none yet".
        data = {**data, "version": 4}
        version = 4
    if version == 4:
        target, region = home
        data = {
            **data,
            "version": 5,
            "clusters": {cid: {**r, "target": target, "region": region} for cid, r in data.get("clusters", {}).items()},
            "history": [{**e, "target": target} for e in data.get("history", ())],
        }
        version = 5
    if version != STATE_VERSION:
        raise ValueError(f"unsupported state version {version!r} (this code reads {STATE_VERSION})")
    return data


# -- plain-data converters -----------------------------------------------------


def _record_to_dict(r: ClusterRecord) -> dict[str, Any]:
    return {
        "name": r.name,
        "state": r.state,
        "first_seen": r.first_seen.isoformat(),
        "ready_at": _iso(r.ready_at),
        "waiting_since": _iso(r.waiting_since),
        "last_release": _iso(r.last_release),
        "holds": [_hold_to_dict(h) for h in r.holds],
        "warned": list(r.warned),
        "overtime": (
            {"until": r.overtime.until.isoformat(), "day": r.overtime.day.isoformat(), "by": r.overtime.by}
            if r.overtime
            else None
        ),
        "doomed": (
            {
                "rule": r.doomed.rule,
                "since": r.doomed.since.isoformat(),
                "failure": r.doomed.failure,
                "day": r.doomed.day.isoformat() if r.doomed.day else None,
            }
            if r.doomed
            else None
        ),
        "absent": r.absent,
        "unseen_since": _iso(r.unseen_since),
        "ending": ({"at": r.ending.at.isoformat(), "who": r.ending.who, "rule": r.ending.rule} if r.ending else None),
        "worked_at": _iso(r.worked_at),
        "activity": r.activity,
        "activity_at": _iso(r.activity_at),
        "template": r.template,
        "start": (
            {
                "at": r.start.at.isoformat(),
                "by": r.start.by,
                "by_name": r.start.by_name,
                "template": r.start.template,
                "notified": r.start.notified,
            }
            if r.start
            else None
        ),
        "backstop": r.backstop,
        "backstop_failure": r.backstop_failure,
        "target": r.target,
        "region": r.region,
    }


def _hold_to_dict(h: Hold) -> dict[str, Any]:
    return {
        "user": h.user,
        "name": h.name,
        "since": h.since.isoformat(),
        "reason": h.reason,
        "confirmed": _iso(h.confirmed),
        "reminded_at": _iso(h.reminded_at),
    }


def _hold_from_dict(h: Mapping[str, Any]) -> Hold:
    return Hold(
        user=h["user"],
        name=h["name"],
        since=datetime.fromisoformat(h["since"]),
        reason=h.get("reason", ""),
        confirmed=_dt(h.get("confirmed")),
        reminded_at=_dt(h.get("reminded_at")),
    )


def _record_from_dict(d: Mapping[str, Any], cluster_id: str) -> ClusterRecord:
    overtime = d.get("overtime")
    doomed = d.get("doomed")
    ending = d.get("ending")
    start = d.get("start")
    first_seen = _dt(d["first_seen"])
    assert first_seen is not None
    return ClusterRecord(
        id=cluster_id,
        name=d["name"],
        state=d["state"],
        first_seen=first_seen,
        ready_at=_dt(d.get("ready_at")),
        waiting_since=_dt(d.get("waiting_since")),
        last_release=_dt(d.get("last_release")),
        holds=tuple(_hold_from_dict(h) for h in d.get("holds", ())),
        warned=tuple(d.get("warned", ())),
        overtime=(
            Overtime(datetime.fromisoformat(overtime["until"]), date.fromisoformat(overtime["day"]), overtime["by"])
            if overtime
            else None
        ),
        doomed=(
            Doom(
                doomed["rule"],
                datetime.fromisoformat(doomed["since"]),
                doomed.get("failure"),
                date.fromisoformat(doomed["day"]) if doomed.get("day") else None,
            )
            if doomed
            else None
        ),
        absent=d.get("absent", ""),
        unseen_since=_dt(d.get("unseen_since")),
        ending=(
            Ending(datetime.fromisoformat(ending["at"]), ending.get("who"), ending.get("rule")) if ending else None
        ),
        worked_at=_dt(d.get("worked_at")),
        activity=d.get("activity", ""),
        activity_at=_dt(d.get("activity_at")),
        template=d.get("template", ""),
        start=(
            Start(
                datetime.fromisoformat(start["at"]),
                start["by"],
                start["by_name"],
                start["template"],
                bool(start.get("notified", False)),
            )
            if start
            else None
        ),
        backstop=d.get("backstop"),
        backstop_failure=d.get("backstop_failure", ""),
        target=d.get("target", ""),
        region=d.get("region", ""),
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
        "target": e.target,
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
        target=d.get("target", ""),
    )
