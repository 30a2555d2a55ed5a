"""What the service tells the chat, as data: announcements and refusals, never sentences.

The service hands a :data:`Notice` to its announcer (posted to the target's
channel) or raises a domain error carrying a :data:`Refusal` in ``problem``
(answered to whoever asked). :mod:`emrchatops.chat.words` words each of them, once,
for the chat it goes to. The effects of the rules (:class:`~emrchatops.domain.rules.Warn`,
:class:`~emrchatops.domain.rules.Cancelled`, :class:`~emrchatops.domain.rules.Remind`)
are notices as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from emrchatops.domain.costs import PricesKept
from emrchatops.domain.decisions import Denied, NameProblem, StartRefused, TemplateProblem
from emrchatops.domain.errors import AwsError
from emrchatops.domain.rules import Cancelled, Expire, Ready, Remind, Warn
from emrchatops.domain.state import ClusterInfo, ClusterRecord, Hold, State
from emrchatops.domain.templates import Template
from emrchatops.domain.vocabulary import Rule

# -- announcements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PollerDown:
    """AWS failed a whole tick (the listing); announced once per failure code."""

    problem: str


@dataclass(frozen=True)
class PollerBack:
    """The poller reads AWS again after :class:`PollerDown`."""


@dataclass(frozen=True)
class TargetDown:
    """One target's listing failed in some of its regions while others were listed (DESIGN §17): its
    clusters are kept as they were; announced once per failure, in the target's channel."""

    target: str
    account: str
    regions: tuple[str, ...]
    problem: str


@dataclass(frozen=True)
class TargetBack:
    """The target is listed again after :class:`TargetDown`."""

    target: str
    account: str


@dataclass(frozen=True)
class ActivityDown:
    """CloudWatch's IsIdle cannot be read; announced once per failure code."""

    problem: str


@dataclass(frozen=True)
class ActivityBack:
    """IsIdle is read again after :class:`ActivityDown`."""


@dataclass(frozen=True)
class Expired:
    """A forgotten hold ended (§11): the effect, with the state and moment it happened in."""

    effect: Expire
    state: State
    now: datetime


@dataclass(frozen=True)
class BecameReady:
    """A cluster the bot follows is ready (§12)."""

    effect: Ready
    state: State
    now: datetime


@dataclass(frozen=True)
class StartFailure:
    """A cluster the bot started ended before it was ready (EMR's reason in *info*)."""

    record: ClusterRecord
    info: ClusterInfo


@dataclass(frozen=True)
class EndedOutside:
    """A held (or doomed) cluster ended outside the bot."""

    record: ClusterRecord
    info: ClusterInfo | None


@dataclass(frozen=True)
class LeftAlone:
    """A cluster lost the tag: the bot leaves it alone from now on."""

    record: ClusterRecord


@dataclass(frozen=True)
class BackstopFailed:
    """EMR's auto-termination policy could not be put (*wanted* seconds) or removed (0)."""

    record: ClusterRecord
    wanted: int
    problem: str


@dataclass(frozen=True)
class BackstopBack:
    """The backstop matches the holds again after :class:`BackstopFailed`."""

    record: ClusterRecord
    wanted: int


@dataclass(frozen=True)
class TerminationFailed:
    """An automatic termination failed; it is retried while its reason holds."""

    record: ClusterRecord
    rule: Rule
    problem: str


@dataclass(frozen=True)
class TerminatedByRule:
    """An automatic rule terminated the cluster."""

    record: ClusterRecord
    rule: Rule


@dataclass(frozen=True)
class ForceTerminated:
    """*name* terminated a cluster that *others* held (``--force``)."""

    record: ClusterRecord
    name: str
    others: Sequence[Hold]


@dataclass(frozen=True)
class OvertimeAnnounced:
    """*name* keeps the cluster past tonight's end of day, until *until*."""

    record: ClusterRecord
    name: str
    until: datetime


@dataclass(frozen=True)
class PricesFailed:
    """PRICES=api: the daily read of AWS's prices failed (*kept*: what costs use meanwhile); announced once."""

    why: str
    kept: PricesKept


Notice = (
    Warn
    | Cancelled
    | Remind
    | Expired
    | BecameReady
    | StartFailure
    | EndedOutside
    | LeftAlone
    | PollerDown
    | PollerBack
    | ActivityDown
    | ActivityBack
    | BackstopFailed
    | BackstopBack
    | TerminationFailed
    | TerminatedByRule
    | ForceTerminated
    | OvertimeAnnounced
    | PricesFailed
    | TargetDown
    | TargetBack
)

# -- refusals (carried by a domain error's ``problem``) -----------------------------------------


@dataclass(frozen=True)
class NoCluster:
    """No managed cluster is active (*state* names what the bot still remembers)."""

    state: State | None = None


@dataclass(frozen=True)
class Unnamed:
    """The words name no managed cluster, or several."""

    problem: NameProblem


@dataclass(frozen=True)
class GoneMeanwhile:
    """The cluster ended between naming it and acting on it."""

    cluster: ClusterInfo | ClusterRecord


@dataclass(frozen=True)
class NoTemplate:
    """``!emr start`` named no template, an unknown one, or several are possible."""

    problem: TemplateProblem


@dataclass(frozen=True)
class StartNotAllowed:
    """A start that would duplicate a cluster or exceed MAX_CLUSTERS."""

    refused: StartRefused


@dataclass(frozen=True)
class StartFailed:
    """AWS refused RunJobFlow."""

    template: Template
    error: AwsError


@dataclass(frozen=True)
class ReasonTooLong:
    length: int
    limit: int


@dataclass(frozen=True)
class NotAllowed:
    """A decision of :mod:`emrchatops.domain.decisions` said no."""

    denied: Denied
    record: ClusterRecord


@dataclass(frozen=True)
class NotTerminated:
    """AWS would not terminate (termination protection, …)."""

    record: ClusterRecord
    why: str


@dataclass(frozen=True)
class NoOvertime:
    """The overtime asked for is out of bounds."""

    problem: ValueError


@dataclass(frozen=True)
class Contended:
    """Another instance kept changing the state while a command was decided (several tries): try again."""


Refusal = (
    Contended
    | NoCluster
    | Unnamed
    | GoneMeanwhile
    | NoTemplate
    | StartNotAllowed
    | StartFailed
    | ReasonTooLong
    | NotAllowed
    | NotTerminated
    | NoOvertime
)

__all__ = [
    "ActivityBack",
    "ActivityDown",
    "BackstopBack",
    "BackstopFailed",
    "BecameReady",
    "Contended",
    "EndedOutside",
    "Expired",
    "ForceTerminated",
    "GoneMeanwhile",
    "LeftAlone",
    "NoCluster",
    "NoOvertime",
    "NoTemplate",
    "NotAllowed",
    "NotTerminated",
    "Notice",
    "OvertimeAnnounced",
    "PollerBack",
    "PollerDown",
    "PricesFailed",
    "ReasonTooLong",
    "Refusal",
    "StartFailed",
    "StartFailure",
    "StartNotAllowed",
    "TargetBack",
    "TargetDown",
    "TerminatedByRule",
    "TerminationFailed",
    "Unnamed",
    "target_of",
]


def target_of(notice: object) -> str | None:
    """The target a notice is about (its channel is that target's ``notify``), or None (the bot's own)."""
    target = getattr(notice, "target", None)
    if isinstance(target, str):
        return target or None
    for attribute in ("record", "cluster", "info"):
        value = getattr(notice, attribute, None)
        if isinstance(value, ClusterRecord | ClusterInfo):
            return value.target or None
    effect = getattr(notice, "effect", None)
    return target_of(effect) if effect is not None else None
