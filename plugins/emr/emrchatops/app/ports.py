"""The ports the service is given: what it needs of AWS, of storage and of the chat.

The service is written against these protocols only; :mod:`emrchatops.aws`,
:mod:`emrchatops.store` and :mod:`emrchatops.chat` implement them, and tests hand the
service fakes instead of patching privates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from emrchatops.app.notices import Notice
from emrchatops.domain.buttons import Buttons
from emrchatops.domain.costs import Composition
from emrchatops.domain.errors import AwsError
from emrchatops.domain.state import Activity, ClusterInfo, ClusterRecord

#: The temporary credentials of one AssumeRole, as kept in storage (access key, secret, token, expiry).
Token = dict[str, str]


#: (target, region): where a cluster runs (DESIGN §17).
Where = tuple[str, str]
#: A cluster as the service names it to AWS: its id, or a record or listed cluster (which say where it is).
ClusterRef = ClusterInfo | ClusterRecord | str


@dataclass(frozen=True)
class Listing:
    """One ``ListClusters`` of the active clusters: the managed ones, and the others (for their names).

    *unreached*: the (target, region)s whose listing failed this time, with the error (several
    targets: the others were listed; their clusters are kept as they were)."""

    managed: list[ClusterInfo]
    others: list[ClusterInfo]
    unreached: Mapping[Where, AwsError] = field(default_factory=dict)


class Clusters(Protocol):
    """The clusters of every target, as EMR and CloudWatch tell them (:class:`emrchatops.aws.fleet.Fleet`
    over one :class:`emrchatops.aws.adapter.EmrAdapter` per target and region)."""

    def list_clusters(self) -> Listing: ...

    def describe(self, cluster: ClusterRef) -> ClusterInfo: ...

    def read_instances(self, cluster: ClusterRef) -> tuple[Composition, bool]:
        """What the cluster runs, and whether a group or fleet is resizing now."""
        ...

    def latest_step(self, cluster: ClusterRef) -> tuple[datetime | None, bool]: ...

    def read_activity(
        self, clusters: Sequence[ClusterRef], now: datetime, window: timedelta
    ) -> dict[str, Activity | None]: ...

    def terminate(self, cluster: ClusterInfo | Any) -> None: ...

    def start(self, request: Mapping[str, Any], where: Where | None = None) -> str: ...

    def put_backstop(self, cluster: ClusterInfo | Any, seconds: int) -> None: ...

    def remove_backstop(self, cluster: ClusterInfo | Any) -> None: ...


class Storage(Protocol):
    """The plugin's persistent storage (Errbot's is a MutableMapping): what the service uses of it."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __contains__(self, key: object) -> bool: ...

    def __delitem__(self, key: str) -> None: ...


class TokenStore(Protocol):
    """Where the temporary credentials live between calls and restarts (the plugin storage)."""

    def load(self) -> Token | None: ...

    def save(self, token: Token | None) -> None: ...


class Conflict(Exception):
    """The stored state moved on since it was read (another instance wrote it): re-read and re-decide."""


class LeaseLost(Exception):
    """This instance no longer holds the poller's lease: what it decided must not be acted on."""


@dataclass(frozen=True)
class Fence:
    """Proof that this instance holds the poller's lease (its owner and fencing counter), for fenced saves."""

    name: str
    owner: str
    fencing: int


class StateStore(Protocol):
    """One versioned value of the plugin's storage (the state): load -> (data, revision); save over a revision.

    ``save`` raises :class:`Conflict` when the stored revision is not *revision* (nothing written),
    and with a *fence* :class:`LeaseLost` when the lease moved on. ``shared`` says whether another
    process may write it (then every transaction reads it afresh; no cross-instance stale cache).
    """

    shared: bool

    def load(self) -> tuple[Any, int]: ...

    def save(self, data: Any, revision: int, fence: Fence | None, now: datetime) -> int: ...


class PollerLease(Protocol):
    """The poller's lease: only its holder runs the rules (two instances, DESIGN §18)."""

    def acquire(self, now: datetime) -> Fence | None:
        """Take or renew the lease; None when another live instance holds it."""
        ...

    def release(self, now: datetime) -> None:
        """A clean stop: the next instance takes over at its next tick."""
        ...


class Once(Protocol):
    """Recorded ids, each acted on once (a redelivered Slack envelope)."""

    def first(self, key: str, now: datetime) -> bool:
        """True the first time *key* is seen (within its expiry), False after."""
        ...


class Announcer(Protocol):
    """Posts a notice to the chat (the chat words it; *buttons* offer its commands where the chat can)."""

    def __call__(self, notice: Notice, buttons: Buttons | None, /) -> None: ...


__all__ = [
    "Announcer",
    "ClusterRef",
    "Clusters",
    "Conflict",
    "Fence",
    "LeaseLost",
    "Listing",
    "Once",
    "PollerLease",
    "StateStore",
    "Storage",
    "Token",
    "TokenStore",
    "Where",
]
