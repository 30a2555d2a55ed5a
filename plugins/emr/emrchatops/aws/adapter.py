"""The EMR adapter: the only place that knows EMR's API shapes.

It lists the clusters of account B (active states; *managed* ones carry
``CLUSTER_TAG``), re-reads one cluster right before a termination, reads a
cluster's latest steps and the ``IsIdle`` metric of the managed clusters
(CloudWatch), terminates, starts a cluster from a template (``RunJobFlow``),
and sets or removes EMR's own ``AutoTerminationPolicy`` (the backstop), all
through a :class:`~emrchatops.aws.crossaccount.CrossAccountSession`.

Tags are not in ``ListClusters``: a cluster's tags are read with
``DescribeCluster`` and the answer is kept for :data:`TAG_TTL` (5 minutes), so
a tag added or removed while the bot runs takes effect within that time, and a
steady-state poll costs one ``ListClusters`` plus one ``DescribeCluster`` per
active cluster every 5 minutes (12 per cluster per hour), spread over the ticks
(:func:`tag_phase`) rather than all due in one. Right before any
termination :meth:`EmrAdapter.describe` reads the cluster afresh, whatever the
cache says.

Every IAM action this module needs is listed in :data:`PERMISSIONS`, so the
policy shipped in ``deploy/iam/`` can be checked against the code; those that
change a cluster are also in :data:`MUTATING`, and the policy allows them only
on the clusters that carry the managed tag (``tests/test_policies.py``).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from emrchatops.app.ports import Listing
from emrchatops.aws.crossaccount import CrossAccountSession, RegionalSession
from emrchatops.domain.costs import Composition, Instances
from emrchatops.domain.errors import (
    AccessDeniedError,
    AwsError,
    EmrChatopsError,
    TagConditionDeniedError,
    TerminationProtectedError,
)
from emrchatops.domain.settings import TagSelector, policy_tag
from emrchatops.domain.state import Activity, ClusterInfo
from emrchatops.domain.templates import TEMPLATE_TAG
from emrchatops.domain.vocabulary import ACTIVE_STATES, ACTIVITY_PERIOD

ACTIVITY_PERMISSION = "cloudwatch:GetMetricData"  # IsIdle; GetMetricData has no resource-level permissions
START_PERMISSION = "elasticmapreduce:RunJobFlow"
# RunJobFlow hands the template's ServiceRole (to EMR) and JobFlowRole's role (to EC2) to AWS: IAM checks
# iam:PassRole on each (its only dependent action in the IAM reference). Tags given in RunJobFlow need no
# elasticmapreduce:AddTags: IAM lists no such dependency, and checks them as RunJobFlow's RequestTag keys.
PASS_ROLE_PERMISSION = "iam:PassRole"  # noqa: S105 - an IAM action name, not a password
# The instances a cluster runs, for its cost (DESIGN §13): read once and again after a state change.
INSTANCE_PERMISSIONS = (
    "elasticmapreduce:ListInstanceGroups",
    "elasticmapreduce:ListInstanceFleets",
    "elasticmapreduce:ListInstances",
)
PERMISSIONS = (
    "elasticmapreduce:ListClusters",
    "elasticmapreduce:DescribeCluster",
    "elasticmapreduce:ListSteps",
    "elasticmapreduce:TerminateJobFlows",
    ACTIVITY_PERMISSION,
    START_PERMISSION,
    PASS_ROLE_PERMISSION,
    "elasticmapreduce:GetAutoTerminationPolicy",
    "elasticmapreduce:PutAutoTerminationPolicy",
    "elasticmapreduce:RemoveAutoTerminationPolicy",
    *INSTANCE_PERMISSIONS,
)
# The actions of PERMISSIONS that change something. The shipped policy allows each EMR one only on the
# clusters of account B in REGION that carry the managed tag (condition elasticmapreduce:ResourceTag/
# <key> = <value>; a new cluster, RunJobFlow: elasticmapreduce:RequestTag/<key>), and iam:PassRole only
# on the two roles the templates name, only to EMR and EC2 (iam:PassedToService). tests/test_policies.py
# holds the policy to it, and checks against IAM's own access levels that no changing action is left out.
MUTATING = frozenset(
    {
        "elasticmapreduce:TerminateJobFlows",
        START_PERMISSION,
        PASS_ROLE_PERMISSION,
        "elasticmapreduce:PutAutoTerminationPolicy",
        "elasticmapreduce:RemoveAutoTerminationPolicy",
    }
)
TAG_TTL = timedelta(minutes=5)
PERIOD = ACTIVITY_PERIOD
QUERIES_PER_REQUEST = 500  # GetMetricData's limit
TAG_CACHE_LIMIT = 10_000
STEP_BUSY_STATES = ("PENDING", "RUNNING", "CANCEL_PENDING")
EARLIEST = datetime.min.replace(tzinfo=UTC)  # sorts clusters without a creation time first, on any host


def tag_phase(cluster_id: str) -> timedelta:
    """A fixed offset in [0, TAG_TTL) per cluster id (the same on every host and run)."""
    return timedelta(seconds=zlib.crc32(cluster_id.encode()) % int(TAG_TTL.total_seconds()))


class EmrAdapter:
    """Clusters of the cluster account: list, describe, steps, terminate."""

    def __init__(
        self,
        session: CrossAccountSession | RegionalSession,
        selector: TagSelector,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        target: str = "",
        region: str = "",
    ) -> None:
        self.session = session
        self.selector = selector
        self.clock = clock
        # Where its clusters are (DESIGN §17): stamped on every ClusterInfo it returns.
        self.target = target
        self.region = region
        # cluster id -> (carries the tag, its emr-chatops:template tag, read at)
        self._managed: dict[str, tuple[bool, str, datetime]] = {}
        self._lock = threading.Lock()
        self._describe_lock = threading.Lock()

    # -- listing ---------------------------------------------------------------------
    def list_clusters(self) -> Listing:
        """Active clusters, oldest first, split into managed and not managed."""
        summaries: list[dict[str, Any]] = []
        params: dict[str, Any] = {"ClusterStates": list(ACTIVE_STATES)}
        while True:
            page = self.session.call("emr", "list_clusters", "elasticmapreduce:ListClusters", **params)
            summaries.extend(page.get("Clusters", []))
            marker = page.get("Marker")
            if not marker:
                break
            params["Marker"] = marker
        clusters = [self._here(_info(s)) for s in summaries if s.get("Status", {}).get("State") in ACTIVE_STATES]
        clusters.sort(key=lambda c: (c.created_at or EARLIEST, c.name, c.id))
        managed: list[ClusterInfo] = []
        others: list[ClusterInfo] = []
        for cluster in clusters:
            if self._is_managed(cluster.id):
                template = self.template_of(cluster.id)
                managed.append(replace(cluster, template=template) if template else cluster)
            else:
                others.append(cluster)
        return Listing(managed, others)

    def template_of(self, cluster_id: str) -> str:
        """The cluster's ``emr-chatops:template`` tag as last read ("" unknown; `*` reads no tags)."""
        with self._lock:
            entry = self._managed.get(cluster_id)
        return entry[1] if entry is not None else ""

    def list_managed(self) -> list[ClusterInfo]:
        """Active clusters carrying the tag, oldest first."""
        return self.list_clusters().managed

    def _is_managed(self, cluster_id: str) -> bool:
        if self.selector.matches_all:
            return True
        cached = self._cached(cluster_id)
        if cached is not None:
            return cached
        # Single flight: concurrent commands that miss the cache wait for one
        # DescribeCluster instead of each asking for the same cluster's tags.
        with self._describe_lock:
            cached = self._cached(cluster_id)
            if cached is not None:
                return cached
            return self.describe(cluster_id).managed

    def _cached(self, cluster_id: str) -> bool | None:
        with self._lock:
            entry = self._managed.get(cluster_id)
        if entry is None:
            return None
        managed, _, read_at = entry
        now = self.clock()
        if not read_at <= now < read_at + TAG_TTL:  # expired (or the clock went back)
            return None
        return managed

    # -- instances (cost) ---------------------------------------------------------------
    def instances(self, cluster_id: str) -> Composition:
        """What the cluster runs (see :meth:`read_instances`)."""
        return self.read_instances(cluster_id)[0]

    def read_instances(self, cluster_id: str) -> tuple[Composition, bool]:
        """What the cluster runs: instance type, count and market of each instance group (or fleet),
        and whether a group or fleet is changing its size now (a resize under way: read it again soon).

        ``ListInstanceGroups`` (paginated) first; a cluster made of instance fleets has no
        groups (EMR answers with none, or refuses the call), so then ``ListInstanceFleets``.
        A fleet of one instance type gives its count from the provisioned capacity; a fleet
        that may mix types is counted with ``ListInstances`` (its running instances, by type
        and market). Before the cluster is ready, a group's requested count stands in for
        its running count (the instances are being launched, and billed).
        """
        try:
            groups = self._pages(
                "list_instance_groups", "elasticmapreduce:ListInstanceGroups", "InstanceGroups", cluster_id
            )
        except AwsError as error:
            # A fleet cluster: EMR refuses ListInstanceGroups as an invalid request (moto answers none).
            if type(error) is not AwsError or "InvalidRequestException" not in str(error):
                raise
            groups = []
        if groups:
            return group_composition(groups), any(group_changing(group) for group in groups)
        fleets = self._pages(
            "list_instance_fleets", "elasticmapreduce:ListInstanceFleets", "InstanceFleets", cluster_id
        )
        composition: list[Instances] = []
        for fleet in fleets:
            single = fleet_composition(fleet)
            if single is not None:
                composition += single
                continue
            running = self._pages(
                "list_instances",
                "elasticmapreduce:ListInstances",
                "Instances",
                cluster_id,
                InstanceFleetId=fleet.get("Id", ""),
                InstanceStates=["AWAITING_FULFILLMENT", "PROVISIONING", "BOOTSTRAPPING", "RUNNING"],
            )
            composition += instance_composition(running)
        return tuple(composition), any(fleet_changing(fleet) for fleet in fleets)

    def _pages(self, operation: str, action: str, key: str, cluster_id: str, **extra: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"ClusterId": cluster_id, **extra}
        while True:
            page = self.session.call("emr", operation, action, **params)
            items.extend(page.get(key, []))
            marker = page.get("Marker")
            if not marker:
                return items
            params["Marker"] = marker

    # -- one cluster -----------------------------------------------------------------
    def describe(self, cluster_id: str) -> ClusterInfo:
        """The cluster as AWS sees it now (state, tags → managed); refreshes the tag cache."""
        cluster = self.session.call(
            "emr", "describe_cluster", "elasticmapreduce:DescribeCluster", ClusterId=cluster_id
        )["Cluster"]
        tags = {t["Key"]: t.get("Value", "") for t in cluster.get("Tags", [])}
        managed = self.selector.matches(tags)
        template = tags.get(TEMPLATE_TAG, "")
        now = self.clock()
        with self._lock:
            if len(self._managed) >= TAG_CACHE_LIMIT:
                self._managed.clear()
            # A first read counts as made up to a TAG_TTL earlier, by a phase fixed per cluster: the
            # clusters first seen together (at start-up, 100 of them) are then re-read spread over
            # the ticks of TAG_TTL, not all in one tick; each is still re-read every TAG_TTL.
            first = cluster_id not in self._managed
            self._managed[cluster_id] = (managed, template, now - tag_phase(cluster_id) if first else now)
        return replace(self._here(_info(cluster, managed=managed)), template=template)

    def _here(self, info: ClusterInfo) -> ClusterInfo:
        return replace(info, target=self.target, region=self.region)

    def latest_step(self, cluster_id: str) -> tuple[datetime | None, bool]:
        """(end of the latest finished step, whether a step is pending or running) — one ListSteps.

        EMR lists steps newest first, so the first page holds the latest ones.
        """
        page = self.session.call("emr", "list_steps", "elasticmapreduce:ListSteps", ClusterId=cluster_id)
        ends: list[datetime] = []
        busy = False
        for step in page.get("Steps", []):
            status = step.get("Status", {})
            if status.get("State") in STEP_BUSY_STATES:
                busy = True
            end = _aware(status.get("Timeline", {}).get("EndDateTime"))
            if end is not None:
                ends.append(end)
        return (max(ends) if ends else None), busy

    def read_activity(self, cluster_ids: Sequence[str], now: datetime, window: timedelta) -> dict[str, Activity | None]:
        """EMR's ``IsIdle`` for every cluster over *window*: one GetMetricData request (per 500 clusters).

        Periods are aligned to 5 minutes, as CloudWatch aligns them; each period's
        minimum is read, so a period with any YARN work reads 0. A cluster
        without datapoints maps to None (metric not published yet, or too new).
        """
        end = _floor(now) + PERIOD  # the period in progress too
        start = _floor(now - window)
        points: dict[str, list[tuple[datetime, float]]] = {cid: [] for cid in cluster_ids}
        for first in range(0, len(cluster_ids), QUERIES_PER_REQUEST):
            chunk = list(cluster_ids[first : first + QUERIES_PER_REQUEST])
            queries = [
                {
                    "Id": f"c{i}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/ElasticMapReduce",
                            "MetricName": "IsIdle",
                            "Dimensions": [{"Name": "JobFlowId", "Value": cid}],
                        },
                        "Period": int(PERIOD.total_seconds()),
                        "Stat": "Minimum",
                    },
                    "ReturnData": True,
                }
                for i, cid in enumerate(chunk)
            ]
            params: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
            while True:
                page = self.session.call("cloudwatch", "get_metric_data", ACTIVITY_PERMISSION, **params)
                for result in page.get("MetricDataResults", []):
                    cid = chunk[int(result["Id"][1:])]
                    stamps = [_aware(t) for t in result.get("Timestamps", [])]
                    points[cid].extend(
                        (t, float(v)) for t, v in zip(stamps, result.get("Values", []), strict=False) if t
                    )
                token = page.get("NextToken")
                if not token:
                    break
                params["NextToken"] = token
        return {cid: _activity(series) for cid, series in points.items()}

    def tags(self, cluster_id: str) -> dict[str, str]:
        """The cluster's tags as AWS has them now (one DescribeCluster)."""
        cluster = self.session.call(
            "emr", "describe_cluster", "elasticmapreduce:DescribeCluster", ClusterId=cluster_id
        )["Cluster"]
        return {t["Key"]: t.get("Value", "") for t in cluster.get("Tags", [])}

    def terminate(self, cluster: ClusterInfo | Any) -> None:
        """Terminate one cluster; protection and IAM denials become clear errors."""
        try:
            self.session.call(
                "emr", "terminate_job_flows", "elasticmapreduce:TerminateJobFlows", JobFlowIds=[cluster.id]
            )
        except AccessDeniedError as error:
            raise self._explain_denial(error, cluster, "terminate") from None
        except AwsError as error:
            if "termination protected" in str(error).lower() or "terminationprotected" in str(error).lower():
                raise TerminationProtectedError(cluster.name, cluster.id) from None
            raise

    # -- starting, and the backstop (DESIGN §12) --------------------------------------------
    def start(self, request: Mapping[str, Any]) -> str:
        """RunJobFlow with a template's parameters (tags and backstop included); the new cluster's id.

        A denial names the action AWS names (``iam:PassRole`` for a role the policy may not pass);
        a validation error is AWS's own reason, in one line (see :mod:`emrchatops.aws.crossaccount`).
        """
        response = self.session.call("emr", "run_job_flow", START_PERMISSION, **request)
        return str(response["JobFlowId"])

    def put_backstop(self, cluster: ClusterInfo | Any, seconds: int) -> None:
        """EMR terminates the cluster after *seconds* of idleness, whoever is around (PutAutoTerminationPolicy)."""
        try:
            self.session.call(
                "emr",
                "put_auto_termination_policy",
                "elasticmapreduce:PutAutoTerminationPolicy",
                ClusterId=cluster.id,
                AutoTerminationPolicy={"IdleTimeout": seconds},
            )
        except AccessDeniedError as error:
            raise self._explain_denial(error, cluster, "change the auto-termination policy of") from None

    def remove_backstop(self, cluster: ClusterInfo | Any) -> None:
        """EMR no longer terminates the cluster when idle (RemoveAutoTerminationPolicy)."""
        try:
            self.session.call(
                "emr",
                "remove_auto_termination_policy",
                "elasticmapreduce:RemoveAutoTerminationPolicy",
                ClusterId=cluster.id,
            )
        except AccessDeniedError as error:
            raise self._explain_denial(error, cluster, "change the auto-termination policy of") from None

    def backstop(self, cluster_id: str) -> int | None:
        """The cluster's AutoTerminationPolicy IdleTimeout in seconds, or None without one (GetAutoTerminationPolicy)."""
        response = self.session.call(
            "emr",
            "get_auto_termination_policy",
            "elasticmapreduce:GetAutoTerminationPolicy",
            ClusterId=cluster_id,
        )
        timeout = (response.get("AutoTerminationPolicy") or {}).get("IdleTimeout")
        return int(timeout) if timeout is not None else None

    def _explain_denial(self, error: AccessDeniedError, cluster: ClusterInfo | Any, verb: str) -> AccessDeniedError:
        """A denied change (:data:`MUTATING`): IAM allows it only on clusters that carry the policy's tag, so
        say what this cluster carries. The policy's tag is CLUSTER_TAG, as the deploy guide sets it, or
        the shipped one when CLUSTER_TAG is ``*``. Costs one DescribeCluster, on a denial only; when
        that fails too, the plain denial stands."""
        required = policy_tag(self.selector)
        try:
            tags = self.tags(cluster.id)
        except EmrChatopsError:
            return error
        return TagConditionDeniedError(
            error, verb, str(required), required.matches(tags), (str(cluster.name), str(cluster.id)), tags
        )


def _info(summary: dict[str, Any], *, managed: bool = True) -> ClusterInfo:
    status = summary.get("Status", {})
    timeline = status.get("Timeline", {})
    reason = status.get("StateChangeReason", {}) or {}
    return ClusterInfo(
        id=summary["Id"],
        name=summary.get("Name") or summary["Id"],
        state=status.get("State", "UNKNOWN"),
        created_at=_aware(timeline.get("CreationDateTime")),
        ready_at=_aware(timeline.get("ReadyDateTime")),
        managed=managed,
        ended_at=_aware(timeline.get("EndDateTime")),
        reason=str(reason.get("Message") or reason.get("Code") or ""),
    )


def _activity(series: list[tuple[datetime, float]]) -> Activity | None:
    if not series:
        return None
    latest_at, latest = max(series)
    busy_periods = [t for t, value in series if value < 0.5]  # IsIdle = 0: YARN work in that period
    work_ended = max(busy_periods) + PERIOD if busy_periods else None
    return Activity(latest_at=latest_at, busy=latest < 0.5, work_ended=work_ended)


def _floor(moment: datetime) -> datetime:
    step = int(PERIOD.total_seconds())
    seconds = int(moment.timestamp()) // step * step
    return datetime.fromtimestamp(seconds, tz=UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


LIVE_GROUP_STATES = frozenset({"PROVISIONING", "BOOTSTRAPPING", "RUNNING", "RECONFIGURING", "RESIZING", "SUSPENDED"})


def group_composition(groups: Sequence[Mapping[str, Any]]) -> Composition:
    """``ListInstanceGroups``' groups as instances: running count, or requested while it provisions."""
    out: list[Instances] = []
    for group in groups:
        state = group.get("Status", {}).get("State", "")
        if state not in LIVE_GROUP_STATES:
            continue  # ENDED, TERMINATED …: nothing runs
        running = int(group.get("RunningInstanceCount") or 0)
        count = running if running or state == "RUNNING" else int(group.get("RequestedInstanceCount") or 0)
        if state == "RESIZING":
            count = max(running, int(group.get("RequestedInstanceCount") or 0))
        if count:
            out.append(Instances(str(group.get("InstanceType", "")), count, group.get("Market") == "SPOT"))
    return tuple(out)


CHANGING_STATES = frozenset({"PROVISIONING", "BOOTSTRAPPING", "RESIZING"})


def group_changing(group: Mapping[str, Any]) -> bool:
    """An instance group whose size is changing: being provisioned or resized, or not yet at its requested count."""
    state = group.get("Status", {}).get("State", "")
    if state in CHANGING_STATES:
        return True
    running, requested = group.get("RunningInstanceCount"), group.get("RequestedInstanceCount")
    return state == "RUNNING" and running is not None and requested is not None and int(running) != int(requested)


def fleet_changing(fleet: Mapping[str, Any]) -> bool:
    """An instance fleet whose size is changing: being provisioned or resized, or short of its target capacity."""
    if fleet.get("Status", {}).get("State", "") in CHANGING_STATES:
        return True
    return any(
        fleet.get(f"Provisioned{market}Capacity") is not None
        and fleet.get(f"Target{market}Capacity") is not None
        and int(fleet[f"Provisioned{market}Capacity"]) != int(fleet[f"Target{market}Capacity"])
        for market in ("OnDemand", "Spot")
    )


def fleet_composition(fleet: Mapping[str, Any]) -> list[Instances] | None:
    """A fleet of one instance type, from its provisioned capacity (units / weight); None if it mixes types."""
    specs = fleet.get("InstanceTypeSpecifications", [])
    if fleet.get("Status", {}).get("State") in ("TERMINATING", "TERMINATED"):
        return []
    if len(specs) != 1:
        return None
    spec = specs[0]
    weight = max(int(spec.get("WeightedCapacity") or 1), 1)
    out = []
    for units, spot in (
        (fleet.get("ProvisionedOnDemandCapacity") or fleet.get("TargetOnDemandCapacity") or 0, False),
        (fleet.get("ProvisionedSpotCapacity") or fleet.get("TargetSpotCapacity") or 0, True),
    ):
        count = -(-int(units) // weight)  # ceiling: a unit of a larger instance is a whole instance
        if count:
            out.append(Instances(str(spec.get("InstanceType", "")), count, spot))
    return out


def instance_composition(instances: Sequence[Mapping[str, Any]]) -> list[Instances]:
    """``ListInstances``' instances, counted by type and market."""
    counts: dict[tuple[str, bool], int] = {}
    for instance in instances:
        key = (str(instance.get("InstanceType", "")), instance.get("Market") == "SPOT")
        counts[key] = counts.get(key, 0) + 1
    return [Instances(t, n, spot) for (t, spot), n in sorted(counts.items())]
