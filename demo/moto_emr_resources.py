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
