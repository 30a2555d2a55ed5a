"""The ports the service is given: what it needs of AWS, of storage and of the chat.

The service is written against these protocols only; :mod:`emrchatops.aws`,
:mod:`emrchatops.store` and :mod:`emrchatops.chat` implement them, and tests hand the
service fakes instead of patching privates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from emrchatops.app.notices import Notice
from emrchatops.domain.buttons import Buttons
from emrchatops.domain.costs import Composition
from emrchatops.domain.state import Activity, ClusterInfo

#: The temporary credentials of one AssumeRole, as kept in storage (access key, secret, token, expiry).
Token = dict[str, str]


@dataclass(frozen=True)
class Listing:
    """One ``ListClusters`` of the active clusters: the managed ones, and the others (for their names)."""

    managed: list[ClusterInfo]
    others: list[ClusterInfo]


class Clusters(Protocol):
    """The clusters of one target, as EMR and CloudWatch tell them (:class:`emrchatops.aws.adapter.EmrAdapter`)."""

    def list_clusters(self) -> Listing: ...

    def describe(self, cluster_id: str) -> ClusterInfo: ...

    def read_instances(self, cluster_id: str) -> tuple[Composition, bool]:
        """What the cluster runs, and whether a group or fleet is resizing now."""
        ...

    def latest_step(self, cluster_id: str) -> tuple[datetime | None, bool]: ...

    def read_activity(
        self, cluster_ids: Sequence[str], now: datetime, window: timedelta
    ) -> dict[str, Activity | None]: ...

    def terminate(self, cluster: ClusterInfo | Any) -> None: ...

    def start(self, request: Mapping[str, Any]) -> str: ...

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


class Announcer(Protocol):
    """Posts a notice to the chat (the chat words it; *buttons* offer its commands where the chat can)."""

    def __call__(self, notice: Notice, buttons: Buttons | None, /) -> None: ...


__all__ = ["Announcer", "Clusters", "Listing", "Storage", "Token", "TokenStore"]
