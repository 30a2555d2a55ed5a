"""Every target's clusters as one :class:`~emrchatops.app.ports.Clusters` (DESIGN §17).

A bot serving several AWS accounts and regions keeps one :class:`EmrAdapter` per (target,
region), each on the STS session of its target's (role ARN, external id) — regions and targets
with the same role share one. :class:`Fleet` puts them behind the one port the service knows:

* ``list_clusters`` lists every (target, region) at once on a bounded pool (``MAX_PARALLEL``,
  by default 8): 60 listings take about as long as the slowest one, not their sum. The clusters
  come back stamped with their target and region. A (target, region) that fails — denied,
  throttled, unreachable, or hanging until the client's timeout — is left out and named in
  :attr:`Listing.unreached` with its error: the others' clusters are listed and their rules run,
  and the service keeps the unreached one's clusters as they were (absence proves nothing).
  Only when every (target, region) fails does the listing fail, as one target's would.
* every call about one cluster goes to the adapter of the cluster's (target, region): from the
  record or listing it comes with, else from where a listing last showed that id.

With one (target, region) the fleet is that adapter with nothing in between: no pool, no thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from emrchatops.app.ports import ClusterRef, Listing, Where
from emrchatops.aws.adapter import EARLIEST, EmrAdapter
from emrchatops.domain.costs import Composition
from emrchatops.domain.errors import AwsError
from emrchatops.domain.state import Activity, ClusterInfo

DEFAULT_PARALLEL = 8
WHERE_LIMIT = 5000  # cluster ids whose place is remembered from the listings (then forgotten and learned again)


class Fleet:
    """The adapters of every (target, region), listed concurrently and addressed per cluster."""

    def __init__(self, adapters: Mapping[Where, EmrAdapter], *, max_parallel: int = DEFAULT_PARALLEL) -> None:
        if not adapters:
            raise ValueError("a fleet needs at least one (target, region)")
        self.adapters = dict(adapters)  # in the order of the targets and their regions
        self._where: dict[str, Where] = {}  # cluster id -> where a listing or a describe last showed it
        self._lock = threading.Lock()
        workers = max(1, min(max_parallel, len(self.adapters)))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="emr-fleet") if len(self.adapters) > 1 else None

    def close(self) -> None:
        """Let the pool's threads go (a listing in flight finishes on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- where a cluster is ------------------------------------------------------------------
    def _learn(self, clusters: Sequence[ClusterInfo]) -> None:
        with self._lock:
            if len(self._where) + len(clusters) > WHERE_LIMIT:
                self._where.clear()
            for cluster in clusters:
                self._where[cluster.id] = (cluster.target, cluster.region)

    def adapter_of(self, cluster: ClusterRef) -> EmrAdapter:
        """The adapter of the (target, region) *cluster* is in (an id, a record or a listed cluster)."""
        if len(self.adapters) == 1:
            return next(iter(self.adapters.values()))
        if not isinstance(cluster, str):
            where = (cluster.target, cluster.region)
            if where in self.adapters:
                return self.adapters[where]
            cluster_id = cluster.id
        else:
            cluster_id = cluster
        with self._lock:
            known = self._where.get(cluster_id)
        if known is None or known not in self.adapters:
            raise AwsError(f"no configured target and region has listed cluster {cluster_id} yet")
        return self.adapters[known]

    # -- the port ----------------------------------------------------------------------------
    def list_clusters(self) -> Listing:
        """Every (target, region)'s active clusters; those that failed in :attr:`Listing.unreached`."""
        if self._pool is None:
            listing = next(iter(self.adapters.values())).list_clusters()
            self._learn(listing.managed + listing.others)
            return listing
        futures: dict[Where, Future[Listing]] = {
            where: self._pool.submit(adapter.list_clusters) for where, adapter in self.adapters.items()
        }
        managed: list[ClusterInfo] = []
        others: list[ClusterInfo] = []
        unreached: dict[Where, AwsError] = {}
        for where, future in futures.items():
            try:
                listing = future.result()
            except AwsError as error:
                unreached[where] = error
                continue
            managed.extend(listing.managed)
            others.extend(listing.others)
        if len(unreached) == len(self.adapters):
            raise next(iter(unreached.values()))
        order = _oldest_first
        managed.sort(key=order)
        others.sort(key=order)
        self._learn(managed + others)
        return Listing(managed, others, unreached)

    def describe(self, cluster: ClusterRef) -> ClusterInfo:
        info = self.adapter_of(cluster).describe(_id(cluster))
        self._learn([info])
        return info

    def read_instances(self, cluster: ClusterRef) -> tuple[Composition, bool]:
        return self.adapter_of(cluster).read_instances(_id(cluster))

    def latest_step(self, cluster: ClusterRef) -> tuple[datetime | None, bool]:
        return self.adapter_of(cluster).latest_step(_id(cluster))

    def read_activity(
        self, clusters: Sequence[ClusterRef], now: datetime, window: timedelta
    ) -> dict[str, Activity | None]:
        """``IsIdle`` of every cluster: one GetMetricData per (target, region) that has some, at once."""
        groups: dict[Where, list[str]] = {}
        for cluster in clusters:
            adapter = self.adapter_of(cluster)
            groups.setdefault((adapter.target, adapter.region), []).append(_id(cluster))
        if self._pool is None or len(groups) <= 1:
            readings: dict[str, Activity | None] = {}
            for where, ids in groups.items():
                readings.update(self.adapters[where].read_activity(ids, now, window))
            return readings
        futures = {
            where: self._pool.submit(self.adapters[where].read_activity, ids, now, window)
            for where, ids in groups.items()
        }
        readings = {}
        for future in futures.values():
            readings.update(future.result())  # a failure fails the reading, as one target's would
        return readings

    def terminate(self, cluster: ClusterInfo | Any) -> None:
        self.adapter_of(cluster).terminate(cluster)

    def start(self, request: Mapping[str, Any], where: Where | None = None) -> str:
        adapter = self.adapters[where] if where is not None else next(iter(self.adapters.values()))
        return adapter.start(request)

    def put_backstop(self, cluster: ClusterInfo | Any, seconds: int) -> None:
        self.adapter_of(cluster).put_backstop(cluster, seconds)

    def remove_backstop(self, cluster: ClusterInfo | Any) -> None:
        self.adapter_of(cluster).remove_backstop(cluster)


def _id(cluster: ClusterRef) -> str:
    return cluster if isinstance(cluster, str) else cluster.id


def _oldest_first(cluster: ClusterInfo) -> tuple[datetime, str, str, str, str]:
    return (cluster.created_at or EARLIEST, cluster.name, cluster.target, cluster.region, cluster.id)
