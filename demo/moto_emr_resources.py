"""Make moto's IAM enforcement see the cluster an EMR request is about, as AWS does.

moto authorises a request against the resource its service's response class
names (``_determine_resource``) and against ``"*"`` when it names none, which is
the case of EMR (moto 5.2). A statement that allows an EMR action only on
``arn:aws:elasticmapreduce:<region>:<account>:cluster/*`` — the shipped policy —
then matches no request, and the emulator would refuse every DescribeCluster,
ListSteps and TerminateJobFlows.

:func:`install` makes moto authorise each EMR request against the ARN of every
cluster it names (``ClusterId``, ``JobFlowId``, ``JobFlowIds``, ``ResourceId``),
in the caller's account and in the region the request was signed for, so the
account and region in a policy's Resource are enforced by the emulator. A
request that names no cluster (``ListClusters``, ``RunJobFlow``) is checked
against ``"*"``, as before (those actions have no resource in AWS either).

It also names CloudWatch actions as IAM does (``cloudwatch:GetMetricData``,
where moto says ``monitoring:…``), so the shipped policy's statement for the
``IsIdle`` metric is what the emulator enforces.

Two things of EMR that moto (5.2) lacks, for ``!emr start`` and its backstop (DESIGN §12):

* **EMR's AutoTerminationPolicy.** moto accepts ``AutoTerminationPolicy`` in
  RunJobFlow and drops it, and does not implement ``PutAutoTerminationPolicy``,
  ``GetAutoTerminationPolicy`` or ``RemoveAutoTerminationPolicy`` at all (the
  server answers 500). :func:`install` adds the three actions to moto's EMR
  responses and keeps the policy of RunJobFlow: the ``IdleTimeout`` is stored on
  moto's cluster and returned as EMR returns it (no ``AutoTerminationPolicy``
  without one). They go through moto's request handling, so IAM enforcement and
  the cluster ARNs above apply to them like to any EMR action. The emulator
  only stores the policy: it never terminates an idle cluster by it.
* **iam:PassRole.** RunJobFlow hands the template's ``ServiceRole`` and the role
  of its ``JobFlowRole`` instance profile to AWS; IAM then checks
  ``iam:PassRole`` on each, which moto does not. With enforcement on, the
  emulator checks it on ``arn:aws:iam::<account>:role/<name>`` for both names
  (the instance profile is taken to hold the role of the same name, EMR's own
  convention). Like the tag condition, the ``iam:PassedToService`` condition is
  not evaluated by moto: ``tests/test_policies.py`` checks it.

What it does not do: moto evaluates no ``elasticmapreduce:ResourceTag/…``
condition. Its enforcement treats a condition key it has no value for as
satisfied, so a tag condition neither allows nor denies anything here; the
condition logic is checked by ``tests/test_policies.py`` instead.
"""

from __future__ import annotations

from typing import Any

_INSTALLED = "_emr_chatops_cluster_arns"
_ID_PARAMETERS = ("ClusterId", "JobFlowId", "JobFlowIds", "ResourceId")


def install() -> None:
    """Patch moto's EMR responses (once per process; idempotent)."""
    from moto.emr.responses import ElasticMapReduceResponse

    if getattr(ElasticMapReduceResponse, _INSTALLED, False):
        return
    authorize_one = ElasticMapReduceResponse._authenticate_and_authorize_normal_action

    def authorize(self: Any, resource: str = "*") -> None:
        for arn in cluster_arns(self) or [resource]:
            authorize_one(self, arn)

    ElasticMapReduceResponse._authenticate_and_authorize_normal_action = authorize  # type: ignore[method-assign]
    setattr(ElasticMapReduceResponse, _INSTALLED, True)
    _name_actions_as_iam_does()
    _auto_termination_policies()
    _pass_roles_on_run_job_flow()
    _regional_clusters()


def _regional_clusters() -> None:
    """EMR is regional: a cluster lives in the region its RunJobFlow was signed for, and a listing in
    another region does not show it. moto files every EMR request to an endpoint URL without a region
    name (the emulator's loopback address) under its default region; here the region the request was
    signed for decides, as for moto's other services (DESIGN §17: one target in two regions)."""
    from moto.emr.responses import ElasticMapReduceResponse

    from_url = ElasticMapReduceResponse.get_region_from_url

    def get_region_from_url(self: Any, request: Any, full_url: str) -> str:
        region = from_url(self, request, full_url)
        if region == self.default_region:
            return signed_region(request.headers.get("Authorization", "")) or region
        return region

    ElasticMapReduceResponse.get_region_from_url = get_region_from_url  # type: ignore[method-assign]


# -- EMR's AutoTerminationPolicy ------------------------------------------------------------------

_IDLE_TIMEOUT = "_emr_chatops_idle_timeout"  # on moto's Cluster: the policy's IdleTimeout (seconds), or absent
_ENDED = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")


def idle_timeout(cluster: Any) -> int | None:
    """The AutoTerminationPolicy IdleTimeout stored on one of moto's clusters (None: no policy)."""
    value = getattr(cluster, _IDLE_TIMEOUT, None)
    return int(value) if value is not None else None


def _auto_termination_policies() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.emr.exceptions import InvalidRequestException, ValidationException
    from moto.emr.responses import ElasticMapReduceResponse

    def active_cluster(response: Any) -> Any:
        cluster = response.backend.describe_cluster(response._get_param("ClusterId"))  # NoSuchCluster if unknown
        if cluster.state in _ENDED:
            raise InvalidRequestException(f"Cluster {cluster.id} is in state {cluster.state}.")
        return cluster

    def put_auto_termination_policy(self: Any) -> Any:
        cluster = active_cluster(self)
        timeout = (self._get_param("AutoTerminationPolicy") or {}).get("IdleTimeout")
        if timeout is None or not 60 <= int(timeout) <= 604800:
            raise ValidationException("IdleTimeout must be between 60 and 604800 seconds.")
        setattr(cluster, _IDLE_TIMEOUT, int(timeout))
        return EmptyResult()

    def get_auto_termination_policy(self: Any) -> Any:
        cluster = self.backend.describe_cluster(self._get_param("ClusterId"))
        timeout = idle_timeout(cluster)
        return ActionResult({} if timeout is None else {"AutoTerminationPolicy": {"IdleTimeout": timeout}})

    def remove_auto_termination_policy(self: Any) -> Any:
        cluster = active_cluster(self)
        if hasattr(cluster, _IDLE_TIMEOUT):
            delattr(cluster, _IDLE_TIMEOUT)
        return EmptyResult()

    run_job_flow = ElasticMapReduceResponse.run_job_flow

    def run_job_flow_keeping_the_policy(self: Any) -> Any:
        result = run_job_flow(self)
        timeout = (self._get_param("AutoTerminationPolicy") or {}).get("IdleTimeout")
        if timeout is not None:
            cluster_id = result.result["JobFlowId"]  # type: ignore[index]  # the dict run_job_flow returns
            setattr(self.backend.clusters[cluster_id], _IDLE_TIMEOUT, int(timeout))
        return result

    for function in (put_auto_termination_policy, get_auto_termination_policy, remove_auto_termination_policy):
        setattr(ElasticMapReduceResponse, function.__name__, function)
    ElasticMapReduceResponse.run_job_flow = run_job_flow_keeping_the_policy  # type: ignore[method-assign]


# -- iam:PassRole on RunJobFlow -------------------------------------------------------------------


def _pass_roles_on_run_job_flow() -> None:
    from moto.emr.responses import ElasticMapReduceResponse
    from moto.iam.access_control import IAMRequest
    from moto.utilities.utils import get_partition

    class PassRoleRequest(IAMRequest):
        """An IAM check of iam:PassRole for the request's own credentials (moto names it after the request)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._action = "iam:PassRole"

    authorize = ElasticMapReduceResponse._authenticate_and_authorize_normal_action

    def authorize_with_pass_role(self: Any, resource: str = "*") -> None:
        authorize(self, resource)
        if self._get_action() != "RunJobFlow":
            return
        partition = get_partition(self.region)
        for name in (self._get_param("ServiceRole"), self._get_param("JobFlowRole")):
            if name:
                arn = name if name.startswith("arn:") else f"arn:{partition}:iam::{self.current_account}:role/{name}"
                self._authenticate_and_authorize_action(PassRoleRequest, arn)

    ElasticMapReduceResponse._authenticate_and_authorize_normal_action = authorize_with_pass_role  # type: ignore[method-assign]


# moto names the action it authorises after the signing name of the endpoint ("monitoring:GetMetricData");
# IAM names CloudWatch's actions "cloudwatch:…", and so does the shipped policy.
_IAM_PREFIXES = {"monitoring": "cloudwatch"}


def _name_actions_as_iam_does() -> None:
    from moto.iam.access_control import IAMRequestBase

    init = IAMRequestBase.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        service, _, verb = self._action.partition(":")
        if service in _IAM_PREFIXES:
            self._action = f"{_IAM_PREFIXES[service]}:{verb}"

    IAMRequestBase.__init__ = __init__  # type: ignore[method-assign]


def cluster_arns(response: Any) -> list[str]:
    """The ARNs of the clusters an EMR request names, in the caller's account and signed-for region."""
    from moto.utilities.utils import get_partition

    ids: list[str] = []
    for name in _ID_PARAMETERS:
        value = response._get_param(name)
        if isinstance(value, str) and value:
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(str(v) for v in value)
    if not ids:
        return []
    region = signed_region(response.headers.get("Authorization", "")) or response.region
    account = response.current_account
    return [f"arn:{get_partition(region)}:elasticmapreduce:{region}:{account}:cluster/{cid}" for cid in ids]


def signed_region(authorization: str) -> str | None:
    """The region of a SigV4 ``Authorization`` header's credential scope (``Credential=KEY/date/region/service/…``)."""
    if "Credential=" not in authorization:
        return None
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return scope[2] if len(scope) > 3 and scope[2] else None
