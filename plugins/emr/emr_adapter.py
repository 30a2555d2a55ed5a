"""The EMR adapter: the only place that knows EMR's API shapes.

It lists the *managed* clusters of account B (active states, carrying
``CLUSTER_TAG``) and terminates them, through a
:class:`~crossaccount.CrossAccountSession`. A cluster's tags are read once per
cluster id (``DescribeCluster``) and cached, so a steady-state poll costs one
``ListClusters`` (filtered by state on the server) and nothing more.

Every IAM action this module needs is listed in :data:`PERMISSIONS`, so the
policy shipped in ``deploy/iam/`` can be checked against the code.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from crossaccount import CrossAccountSession
from emr_errors import AwsError, TerminationProtectedError
from emr_rules import ACTIVE_STATES, ClusterInfo
from emr_settings import TagSelector

PERMISSIONS = (
    "elasticmapreduce:ListClusters",
    "elasticmapreduce:DescribeCluster",
    "elasticmapreduce:TerminateJobFlows",
)
TAG_CACHE_LIMIT = 10_000


class EmrAdapter:
    """Managed clusters of the cluster account, and their termination."""

    def __init__(self, session: CrossAccountSession, selector: TagSelector) -> None:
        self.session = session
        self.selector = selector
        self._managed: dict[str, bool] = {}  # cluster id -> carries the tag (ids are never reused)
        self._lock = threading.Lock()
        self._describe_lock = threading.Lock()

    def list_managed(self) -> list[ClusterInfo]:
        """Active clusters carrying the tag, oldest first."""
        summaries: list[dict[str, Any]] = []
        params: dict[str, Any] = {"ClusterStates": list(ACTIVE_STATES)}
        while True:
            page = self.session.call("emr", "list_clusters", "elasticmapreduce:ListClusters", **params)
            summaries.extend(page.get("Clusters", []))
            marker = page.get("Marker")
            if not marker:
                break
            params["Marker"] = marker
        clusters = [self._info(s) for s in summaries if s.get("Status", {}).get("State") in ACTIVE_STATES]
        managed = [c for c in clusters if self._is_managed(c.id)]
        return sorted(managed, key=lambda c: (c.created_at or datetime.min.astimezone(), c.name, c.id))

    def _is_managed(self, cluster_id: str) -> bool:
        if self.selector.matches_all:
            return True
        with self._lock:
            known = self._managed.get(cluster_id)
        if known is not None:
            return known
        # Single flight: concurrent commands that miss the cache wait for one
        # DescribeCluster instead of each asking for the same cluster's tags.
        with self._describe_lock:
            with self._lock:
                known = self._managed.get(cluster_id)
            if known is not None:
                return known
            cluster = self.session.call(
                "emr", "describe_cluster", "elasticmapreduce:DescribeCluster", ClusterId=cluster_id
            )["Cluster"]
            tags = {t["Key"]: t.get("Value", "") for t in cluster.get("Tags", [])}
            managed = self.selector.matches(tags)
            with self._lock:
                if len(self._managed) >= TAG_CACHE_LIMIT:
                    self._managed.clear()
                self._managed[cluster_id] = managed
            return managed

    @staticmethod
    def _info(summary: dict[str, Any]) -> ClusterInfo:
        status = summary.get("Status", {})
        timeline = status.get("Timeline", {})
        return ClusterInfo(
            id=summary["Id"],
            name=summary.get("Name", summary["Id"]),
            state=status.get("State", "UNKNOWN"),
            created_at=_aware(timeline.get("CreationDateTime")),
            ready_at=_aware(timeline.get("ReadyDateTime")),
        )

    def terminate(self, cluster: ClusterInfo | Any) -> None:
        """Terminate one managed cluster; protection and IAM denials become clear errors."""
        try:
            self.session.call(
                "emr", "terminate_job_flows", "elasticmapreduce:TerminateJobFlows", JobFlowIds=[cluster.id]
            )
        except AwsError as error:
            if "termination protected" in str(error).lower() or "terminationprotected" in str(error).lower():
                raise TerminationProtectedError(cluster.name, cluster.id) from None
            raise


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.astimezone()
