"""IAM says what the code says: the role may do exactly the adapter's actions, change only the
managed clusters of its own account and region, start only clusters that carry the managed tag, and
pass only the two cluster roles, to EMR and EC2 — whatever the bot's code does.

moto's IAM enforcement (tests/test_iam.py) checks the actions and, with demo/moto_emr_resources.py,
the account and region of a cluster's ARN; it treats the tag condition as satisfied. So the
condition is checked here, with tests/iam_eval.py over the shipped documents — the JSON file and
the policy inside account-b.yaml, each filled in as a deployment fills it in — and IAM's own access
levels (parliament's copy of the IAM reference) decide which actions count as changes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from iam_eval import Request, Unsupported, allowed, cluster_request, decide

from demo import policies
from demo.emulator import MANAGED_TAG
from emrchatops.aws import prices
from emrchatops.aws.adapter import MUTATING, PERMISSIONS
from emrchatops.domain.settings import SHIPPED_POLICY_TAG, Settings

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION = "222222222222", "eu-west-1"  # not the emulator's: the values must come from the setup
CLUSTERS = f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/*"
MANAGED = {"emr-chatops": "true", "team": "data"}
UNMANAGED = {"team": "etl"}
KEY_ONLY_VARIANT = '"Null": {"elasticmapreduce:ResourceTag/emr-chatops": "false"}'
KEY_ONLY_START_VARIANT = '"Null": {"elasticmapreduce:RequestTag/emr-chatops": "false"}'
ROLES = [f"arn:aws:iam::{ACCOUNT}:role/{name}" for name in policies.CLUSTER_ROLES]
PASSED_TO = {"StringEquals": {"iam:PassedToService": ["elasticmapreduce.amazonaws.com", "ec2.amazonaws.com"]}}
START = "elasticmapreduce:RunJobFlow"
PASS_ROLE = "iam:PassRole"


def default_tag() -> tuple[str, str]:
    tag = Settings(role_arn=f"arn:aws:iam::{ACCOUNT}:role/cre").cluster_tag
    assert tag.key is not None and tag.value is not None
    return tag.key, tag.value


def json_permissions(tag: tuple[str, str] | None = None) -> dict[str, Any]:
    return policies.permission_policy(account_b_id=ACCOUNT, region=REGION, tag=tag or default_tag())


def template_permissions(tag: tuple[str, str] | None = None, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """account-b.yaml's permissions as CloudFormation fills them in: its defaults, unless *tag* or *overrides* say otherwise."""
    parameters = policies.load_template("account-b.yaml")["Parameters"]
    names = {name: str(p["Default"]) for name, p in parameters.items() if "Default" in p}
    names.update({"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT})
    names.update({"BotAccountId": "111111111111", "ExternalId": "an-external-id-for-the-test"})
    if tag is not None:
        names.update({"ClusterTagKey": tag[0], "ClusterTagValue": tag[1]})
    names.update(overrides or {})
    found = policies.template_policies("account-b.yaml", names)
    return found["account-b.yaml:ChatopsClusterRole.Policies[0].PolicyDocument"]


SHIPPED = {"deploy/iam/account-b-permissions.json": json_permissions, "account-b.yaml": template_permissions}


@pytest.fixture(params=sorted(SHIPPED))
def shipped(request: pytest.FixtureRequest) -> Any:
    """Each shipped form of account B's permissions, as a function of the managed tag."""
    return SHIPPED[request.param]


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def listed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


@cache
def iam_reference() -> dict[str, dict[str, Any]]:
    """IAM's actions ("service:Action" -> access level and resource types), from parliament's data file.

    Read from the file, not imported: parliament's import has side effects (pkg_resources)."""
    spec = importlib.util.find_spec("parliament")
    assert spec is not None and spec.origin is not None, "parliament is in requirements-dev.txt"
    services = json.loads((Path(spec.origin).parent / "iam_definition.json").read_text(encoding="utf-8"))
    return {
        f"{service['prefix']}:{p['privilege']}": p
        for service in services
        for p in service["privileges"]
        if service["prefix"] in {"elasticmapreduce", "cloudwatch", "iam", "sts", "pricing"}
    }


def has_resource(action: str) -> bool:
    """Whether IAM knows a resource for *action* (DescribeCluster: a cluster; ListClusters, RunJobFlow: none)."""
    return any(t["resource_type"] for t in iam_reference()[action]["resource_types"])


def cluster(cluster_id: str = "j-2AXXXXXXGAPLF", account: str = ACCOUNT, region: str = REGION) -> str:
    return f"arn:aws:elasticmapreduce:{region}:{account}:cluster/{cluster_id}"


# -- what the code declares ------------------------------------------------------------------------


def test_the_shipped_policies_allow_exactly_the_actions_the_adapter_declares(shipped: Any) -> None:
    document = shipped()
    assert all(s["Effect"] == "Allow" and "Action" in s and "Resource" in s for s in statements(document))
    actions = [a for s in statements(document) for a in listed(s["Action"])]
    assert not [a for a in actions if "*" in a or "?" in a], "list every action by name, read ones too"
    assert sorted(set(actions)) == sorted(PERMISSIONS)


def test_every_action_that_changes_something_is_declared_mutating() -> None:
    # IAM's own access levels decide: an action added to PERMISSIONS that is not a read or a list
    # (Write, Tagging, Permissions management) must be in MUTATING, and so under the tag condition.
    levels = {action: iam_reference()[action]["access_level"] for action in PERMISSIONS}
    assert {a for a, level in levels.items() if level not in ("Read", "List")} == set(MUTATING)
    assert set(MUTATING) <= set(PERMISSIONS)


def test_each_changing_action_is_allowed_only_on_tagged_clusters_of_the_account_and_region(shipped: Any) -> None:
    key, value = default_tag()
    for action in sorted(MUTATING):
        if action == PASS_ROLE:
            # Not an EMR action: RunJobFlow's dependency. The two roles of the templates, to EMR and EC2 only.
            granting = [s for s in statements(shipped()) if action in listed(s["Action"])]
            assert [listed(s["Resource"]) for s in granting] == [ROLES]
            assert [s.get("Condition") for s in granting] == [PASSED_TO]
            continue
        assert action.startswith("elasticmapreduce:"), f"{action}: say here which condition it must carry"
        # On a cluster: the tag it carries. Creating one (RunJobFlow, no resource yet): the tag in the request.
        if has_resource(action):
            condition_key, resources = "elasticmapreduce:ResourceTag", [CLUSTERS]
        else:
            condition_key, resources = "elasticmapreduce:RequestTag", ["*"]
        granting = [s for s in statements(shipped()) if action in listed(s["Action"])]
        assert granting, action
        for statement in granting:
            assert listed(statement["Resource"]) == resources, f"{action} on {statement['Resource']}"
            assert statement.get("Condition") == {"StringEquals": {f"{condition_key}/{key}": value}}, (
                f"{action} ({statement.get('Sid')}) must carry the managed-tag condition"
            )


def test_read_actions_are_as_narrow_as_the_api_allows(shipped: Any) -> None:
    for statement in statements(shipped()):
        for action in listed(statement["Action"]):
            # An action with a resource type (DescribeCluster, ListSteps) is limited to the clusters of
            # the account and region; one without (ListClusters, cloudwatch:GetMetricData) can only be "*";
            # iam:PassRole, to the two roles of the templates in the account.
            if action == PASS_ROLE:
                assert listed(statement["Resource"]) == ROLES
                continue
            assert listed(statement["Resource"]) == ([CLUSTERS] if has_resource(action) else ["*"]), action


def test_the_tag_the_policies_name_by_default_is_the_default_cluster_tag() -> None:
    parameters = policies.load_template("account-b.yaml")["Parameters"]
    template_default = (parameters["ClusterTagKey"]["Default"], parameters["ClusterTagValue"]["Default"])
    assert template_default == default_tag() == MANAGED_TAG == (SHIPPED_POLICY_TAG.key, SHIPPED_POLICY_TAG.value)


# -- what IAM then decides ---------------------------------------------------------------------------


def test_a_tagged_cluster_of_the_account_and_region_may_be_terminated(shipped: Any) -> None:
    request = cluster_request("elasticmapreduce:TerminateJobFlows", cluster(), MANAGED)
    assert decide([shipped()], request) == "Allow"


@pytest.mark.parametrize(
    ("why", "arn", "tags"),
    [
        ("untagged", cluster(), UNMANAGED),
        ("no tags at all", cluster(), {}),
        ("the tag with another value", cluster(), {"emr-chatops": "false"}),
        ("the value in another case", cluster(), {"emr-chatops": "True"}),
        ("the value as another key", cluster(), {"managed": "true"}),
        ("another account", cluster(account="333333333333"), MANAGED),
        ("another region", cluster(region="us-east-1"), MANAGED),
        ("not a cluster", f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:studio/es-1", MANAGED),
    ],
)
def test_a_termination_outside_the_scope_is_refused_by_iam(
    shipped: Any, why: str, arn: str, tags: dict[str, str]
) -> None:
    request = cluster_request("elasticmapreduce:TerminateJobFlows", arn, tags)
    assert decide([shipped()], request) == "ImplicitDeny", why


def start_request(tags: dict[str, str]) -> Request:
    """RunJobFlow with these tags in the request: EMR sets them as RequestTag keys (and the tag keys)."""
    context = {f"elasticmapreduce:RequestTag/{k}": v for k, v in tags.items()}
    context |= {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    return Request(START, "*", context)


def test_a_start_is_allowed_only_with_the_managed_tag_in_the_request(shipped: Any) -> None:
    document = shipped()
    bot_tags = {"emr-chatops:template": "analytics", "emr-chatops:started-by": "U0ALICE"}
    assert decide([document], start_request({"emr-chatops": "true", **bot_tags})) == "Allow"
    for why, tags in [
        ("without the managed tag", bot_tags),
        ("no tags at all", {}),
        ("the tag with another value", {"emr-chatops": "false", **bot_tags}),
        ("the value in another case", {"emr-chatops": "True"}),
    ]:
        assert decide([document], start_request(tags)) == "ImplicitDeny", why


def pass_role(role: str, service: str, account: str = ACCOUNT) -> Request:
    return Request(PASS_ROLE, f"arn:aws:iam::{account}:role/{role}", {"iam:PassedToService": service})


def test_the_role_passes_only_the_two_cluster_roles_and_only_to_emr_and_ec2(shipped: Any) -> None:
    document = shipped()
    assert allowed([document], pass_role("EMR_DefaultRole", "elasticmapreduce.amazonaws.com"))
    assert allowed([document], pass_role("EMR_EC2_DefaultRole", "ec2.amazonaws.com"))
    for why, request in [
        ("an admin role", pass_role("Admin", "ec2.amazonaws.com")),
        ("the bot's own role", pass_role("cre", "elasticmapreduce.amazonaws.com")),
        ("a role of the same name elsewhere", pass_role("EMR_DefaultRole", "ec2.amazonaws.com", "333333333333")),
        ("to another service", pass_role("EMR_DefaultRole", "lambda.amazonaws.com")),
        ("to no named service", Request(PASS_ROLE, ROLES[0])),
    ]:
        assert decide([document], request) == "ImplicitDeny", why


def test_a_deployment_with_other_cluster_roles_passes_those(shipped: Any) -> None:
    if shipped is template_permissions:
        names = {"ClusterServiceRoleName": "DataEmrService", "ClusterInstanceRoleName": "DataEmrNodes"}
        document = template_permissions(overrides=names)
    else:
        document = policies.permission_policy(
            account_b_id=ACCOUNT, region=REGION, roles=("DataEmrService", "DataEmrNodes")
        )
    assert allowed([document], pass_role("DataEmrNodes", "ec2.amazonaws.com"))
    assert not allowed([document], pass_role("EMR_EC2_DefaultRole", "ec2.amazonaws.com"))


def test_the_role_parameters_cannot_break_the_policy_json() -> None:
    parameters = policies.load_template("account-b.yaml")["Parameters"]
    for name, default in (
        ("ClusterServiceRoleName", "EMR_DefaultRole"),
        ("ClusterInstanceRoleName", "EMR_EC2_DefaultRole"),
    ):
        pattern = re.compile(parameters[name]["AllowedPattern"])
        assert parameters[name]["Default"] == default and pattern.match(default)
        for bad in ('a"b', "a\\b", "", "a/b", "a*", "x" * 65):
            assert not pattern.match(bad), (name, bad)


def test_reads_see_every_cluster_of_the_account_and_region_and_no_other(shipped: Any) -> None:
    # The bot reads an untagged cluster's tags to know it is not managed; it may read, never change it.
    document = shipped()
    for action in ("elasticmapreduce:DescribeCluster", "elasticmapreduce:ListSteps"):
        assert allowed([document], cluster_request(action, cluster(), UNMANAGED)), action
        assert not allowed([document], cluster_request(action, cluster(account="333333333333"), MANAGED)), action
        assert not allowed([document], cluster_request(action, cluster(region="us-east-1"), MANAGED)), action
    assert allowed([document], Request("elasticmapreduce:ListClusters", "*"))


def test_no_other_emr_action_is_allowed_even_on_a_managed_cluster(shipped: Any) -> None:
    document = shipped()
    others = sorted(a for a in iam_reference() if a.startswith("elasticmapreduce:") and a not in PERMISSIONS)
    assert "elasticmapreduce:AddTags" in others and "elasticmapreduce:ModifyCluster" in others
    granted = [
        action
        for action in others
        for resource in (cluster(), "*")
        if allowed([document], cluster_request(action, resource, MANAGED))
    ]
    assert granted == []


def test_a_deployment_with_another_tag_protects_by_that_tag(shipped: Any) -> None:
    document = shipped(("team", "data"))
    terminate = "elasticmapreduce:TerminateJobFlows"
    assert allowed([document], cluster_request(terminate, cluster(), {"team": "data"}))
    assert not allowed([document], cluster_request(terminate, cluster(), {"emr-chatops": "true"}))


def variant(
    document: dict[str, Any], condition: dict[str, Any] | None, start_condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The shipped policy as the operator guide's variants say: the Condition of the statement that changes clusters
    replaced (None: deleted), and the start's replaced by *start_condition* when given; never PassRole's."""
    changed = json.loads(json.dumps(document))
    for statement in changed["Statement"]:
        actions = set(listed(statement["Action"]))
        if PASS_ROLE in actions:
            continue
        if START in actions:
            if start_condition is not None:
                statement["Condition"] = start_condition
            continue
        if actions & MUTATING:
            statement.pop("Condition")
            if condition is not None:
                statement["Condition"] = condition
    return changed


def test_the_documented_key_only_variant_accepts_any_value_of_the_key_and_nothing_else() -> None:
    guide = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    assert KEY_ONLY_VARIANT in guide and KEY_ONLY_START_VARIANT in guide, (
        "the operator guide documents these conditions"
    )
    document = variant(
        json_permissions(), json.loads("{" + KEY_ONLY_VARIANT + "}"), json.loads("{" + KEY_ONLY_START_VARIANT + "}")
    )
    terminate = "elasticmapreduce:TerminateJobFlows"
    for value in ("true", "yes", ""):
        assert allowed([document], cluster_request(terminate, cluster(), {"emr-chatops": value})), value
        assert allowed([document], start_request({"emr-chatops": value})), value
    assert not allowed([document], start_request({"team": "data"}))
    assert not allowed([document], cluster_request(terminate, cluster(), UNMANAGED))
    assert not allowed([document], cluster_request(terminate, cluster(account="333333333333"), MANAGED))


def test_the_documented_star_variant_protects_nothing_in_the_account_and_region() -> None:
    document = variant(json_permissions(), None)
    terminate = "elasticmapreduce:TerminateJobFlows"
    assert allowed([document], cluster_request(terminate, cluster(), UNMANAGED))
    assert allowed([document], cluster_request(terminate, cluster(), {}))
    assert not allowed([document], cluster_request(terminate, cluster(region="us-east-1"), {}))
    # Starts keep the tag: with `*` the bot still tags what it starts with the shipped emr-chatops=true.
    assert allowed([document], start_request({"emr-chatops": "true"}))
    assert not allowed([document], pass_role("Admin", "ec2.amazonaws.com"))


# -- account A's state table (two instances on DynamoDB, DESIGN §18) ------------------------------------


@cache
def dynamodb_storage() -> Any:
    """storage/dynamodb.py, whose OPERATIONS and PERMISSIONS say what it calls."""
    spec = importlib.util.spec_from_file_location("emr_chatops_dynamodb_storage", ROOT / "storage" / "dynamodb.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/bot-state"


def state_policies() -> dict[str, dict[str, Any]]:
    """The shipped state-table policy: the JSON file and the one inside dynamodb.yaml, each filled in as deployed."""
    names = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "StateTable": "bot-state"}
    [inside] = policies.template_policies("dynamodb.yaml", names).values()
    return {"json": policies.state_table_policy(ACCOUNT, REGION, "bot-state"), "dynamodb.yaml": inside}


def test_the_state_table_policy_allows_exactly_the_storage_s_actions_on_the_table_only() -> None:
    for where, document in state_policies().items():
        [statement] = statements(document)
        assert statement["Effect"] == "Allow" and "Condition" not in statement, where
        assert sorted(listed(statement["Action"])) == sorted(dynamodb_storage().PERMISSIONS), where
        assert listed(statement["Resource"]) == [TABLE], where


def test_iam_allows_the_bot_its_table_and_nothing_else_in_dynamodb() -> None:
    module = dynamodb_storage()
    for where, document in state_policies().items():
        for action in module.PERMISSIONS:
            assert allowed([document], Request(action, TABLE)), (where, action)
        for why, request in [
            ("another table", Request("dynamodb:GetItem", TABLE.replace("bot-state", "payroll"))),
            ("a table of the same name elsewhere", Request("dynamodb:GetItem", TABLE.replace(ACCOUNT, "333333333333"))),
            ("another region", Request("dynamodb:PutItem", TABLE.replace(REGION, "us-east-1"))),
            ("an index", Request("dynamodb:Query", TABLE + "/index/by-owner")),
            ("a scan of the whole table", Request("dynamodb:Scan", TABLE)),
            ("a batch write", Request("dynamodb:BatchWriteItem", TABLE)),
            ("deleting the table", Request("dynamodb:DeleteTable", TABLE)),
            ("creating tables (only the demo and tests do)", Request("dynamodb:CreateTable", TABLE)),
            ("turning point-in-time recovery off", Request("dynamodb:UpdateContinuousBackups", TABLE)),
        ]:
            assert decide([document], request) == "ImplicitDeny", (where, why)


def test_the_storage_declares_real_iam_actions_and_the_api_operations_behind_them() -> None:
    module = dynamodb_storage()
    services = json.loads(
        (Path(str(importlib.util.find_spec("parliament").origin)).parent / "iam_definition.json").read_text()
    )
    known = {f"dynamodb:{p['privilege']}" for s in services if s["prefix"] == "dynamodb" for p in s["privileges"]}
    declared = {a for actions in (*module.OPERATIONS.values(), *module.CREATE_OPERATIONS.values()) for a in actions}
    assert declared <= known
    assert "dynamodb:TransactWriteItems" not in known  # IAM checks each item of a transaction instead


# -- the evaluator itself: each rule it applies, against a policy written for it --------------------


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ANY = {"Effect": "Allow", "Action": "elasticmapreduce:*", "Resource": "*"}


@pytest.mark.parametrize(
    ("statements_", "request_", "expected"),
    [
        ([ANY], Request("elasticmapreduce:ListClusters", "*"), "Allow"),
        ([ANY], Request("ElasticMapReduce:listclusters", "*"), "Allow"),  # action names ignore case
        ([ANY], Request("ec2:TerminateInstances", "*"), "ImplicitDeny"),
        ([ANY, {**ANY, "Effect": "Deny"}], Request("elasticmapreduce:ListClusters", "*"), "ExplicitDeny"),
        ([{**ANY, "Resource": "arn:aws:x:::a/*"}], Request("elasticmapreduce:X", "arn:aws:x:::a/b"), "Allow"),
        ([{**ANY, "Resource": "arn:aws:x:::a/*"}], Request("elasticmapreduce:X", "arn:aws:x:::A/b"), "ImplicitDeny"),
        ([{**ANY, "Resource": "arn:aws:x:::a/?"}], Request("elasticmapreduce:X", "arn:aws:x:::a/bc"), "ImplicitDeny"),
        (
            [{"Effect": "Allow", "NotAction": "elasticmapreduce:Terminate*", "Resource": "*"}],
            Request("elasticmapreduce:TerminateJobFlows", "*"),
            "ImplicitDeny",
        ),
        (
            [{**ANY, "Condition": {"StringEquals": {"K": ["a", "b"]}}}],
            Request("elasticmapreduce:X", "*", {"k": "b"}),  # key names ignore case; values OR
            "Allow",
        ),
        ([{**ANY, "Condition": {"StringEquals": {"k": "a"}}}], Request("elasticmapreduce:X", "*", {}), "ImplicitDeny"),
        ([{**ANY, "Condition": {"StringNotEquals": {"k": "a"}}}], Request("elasticmapreduce:X", "*", {}), "Allow"),
        (
            [{**ANY, "Condition": {"StringEqualsIfExists": {"k": "a"}}}],
            Request("elasticmapreduce:X", "*", {}),
            "Allow",
        ),
        (
            [{**ANY, "Condition": {"StringEquals": {"k": "a", "j": "b"}}}],
            Request("elasticmapreduce:X", "*", {"k": "a"}),  # keys AND
            "ImplicitDeny",
        ),
        ([{**ANY, "Condition": {"StringLike": {"k": "a*"}}}], Request("elasticmapreduce:X", "*", {"k": "ab"}), "Allow"),
        ([{**ANY, "Condition": {"Null": {"k": "false"}}}], Request("elasticmapreduce:X", "*", {}), "ImplicitDeny"),
        ([{**ANY, "Condition": {"Null": {"k": "true"}}}], Request("elasticmapreduce:X", "*", {}), "Allow"),
    ],
)
def test_the_evaluator_applies_iam_s_rules(statements_: list[dict[str, Any]], request_: Request, expected: str) -> None:
    assert decide([_policy(*statements_)], request_) == expected


@pytest.mark.parametrize(
    "statement",
    [
        {**ANY, "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}}},
        {**ANY, "Condition": {"ArnLike": {"aws:SourceArn": "arn:*"}}},
        {**ANY, "Resource": "arn:aws:s3:::${aws:username}/*"},
        {**ANY, "Principal": "*"},
    ],
)
def test_the_evaluator_refuses_what_it_does_not_implement(statement: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        decide([_policy(statement)], Request("elasticmapreduce:ListClusters", "arn:aws:s3:::alice/x"))


# -- parliament -----------------------------------------------------------------------------------------


@cache
def audit_module() -> Any:
    spec = importlib.util.spec_from_file_location("audit_policies", ROOT / "deploy" / "audit_policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def unexplained(documents: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{f.issue}: {f.detail}" for f, why in audit_module().audit(documents) if why is None]


def test_parliament_finds_nothing_unexplained_in_any_shipped_policy() -> None:
    shipped = audit_module().shipped_policies()
    # 4 JSON files; the same 4 inside account-a.yaml, account-b.yaml and dynamodb.yaml; the ECS roles' 3.
    assert len(shipped) == 11
    assert unexplained(shipped) == []


def test_parliament_would_catch_what_the_policies_must_not_be() -> None:
    # Part one's policy: TerminateJobFlows (and the reads) on every resource of every account.
    part_one = _policy(
        {
            "Effect": "Allow",
            "Action": ["elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"],
            "Resource": "*",
        }
    )
    assert any(issue.startswith("RESOURCE_STAR") for issue in unexplained({"part-one": part_one}))
    typo = _policy({"Effect": "Allow", "Action": "elasticmapreduce:TerminateJobFlow", "Resource": CLUSTERS})
    assert any(issue.startswith("UNKNOWN_ACTION") for issue in unexplained({"typo": typo}))
    # The trust-policy explanation does not excuse a permission statement without a Resource,
    no_resource = _policy({"Effect": "Allow", "Action": "elasticmapreduce:ListClusters"})
    assert any(issue.startswith("MALFORMED") for issue in unexplained({"no-resource": no_resource}))
    # and the resource-tag explanation does not excuse a tag condition on an action without a resource.
    listing = _policy(
        {
            "Effect": "Allow",
            "Action": "elasticmapreduce:ListClusters",
            "Resource": "*",
            "Condition": {"StringEquals": {"elasticmapreduce:ResourceTag/emr-chatops": "true"}},
        }
    )
    assert any(re.match("UNKNOWN_CONDITION_FOR_ACTION", i) for i in unexplained({"listing": listing}))
    # Account A's explanation: assuming one named role, and reading prices; not a second credential beside them.
    assume = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/cre"}
    prices_read = {"Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"}
    assert unexplained({"account-a": _policy(assume, prices_read)}) == []
    tokens = {"Effect": "Allow", "Action": ["pricing:GetProducts", "sts:GetSessionToken"], "Resource": "*"}
    assert any(i.startswith("CREDENTIALS_EXPOSURE") for i in unexplained({"tokens": _policy(assume, tokens)}))
    any_role = {**assume, "Resource": "*"}
    assert any(i.startswith("CREDENTIALS_EXPOSURE") for i in unexplained({"any": _policy(any_role, prices_read)}))


# -- account A: the bot's own identity ----------------------------------------------------------------


def account_a_policies() -> dict[str, dict[str, Any]]:
    """Account A's policy, as the JSON file and as account-a.yaml's managed policy, for a role in account B."""
    role = f"arn:aws:iam::{ACCOUNT}:role/cre"
    names = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": "111111111111"}
    [template] = policies.template_policies("account-a.yaml", {**names, "ClusterAccountRoleArn": role}).values()
    return {"deploy/iam/account-a-assume.json": policies.bot_policy(role), "account-a.yaml": template}


@pytest.mark.parametrize("where", ["deploy/iam/account-a-assume.json", "account-a.yaml"])
def test_account_a_may_assume_the_role_and_read_prices_and_nothing_else(where: str) -> None:
    document = account_a_policies()[where]
    actions = sorted({a for s in statements(document) for a in listed(s["Action"])})
    assert actions == sorted({"sts:AssumeRole", *prices.PERMISSIONS}), "the actions the code declares, by name"
    role = f"arn:aws:iam::{ACCOUNT}:role/cre"
    assert allowed([document], Request("sts:AssumeRole", role))
    assert not allowed([document], Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/other"))
    # The Price List has no resource to name (IAM lists none for GetProducts): "*", and only that action.
    assert all(not has_resource(action) for action in prices.PERMISSIONS)
    assert all(iam_reference()[action]["access_level"] == "Read" for action in prices.PERMISSIONS)
    assert allowed([document], Request("pricing:GetProducts", "*"))
    others = [a for a in iam_reference() if a.startswith("pricing:") and a not in prices.PERMISSIONS]
    assert "pricing:DescribeServices" in others
    assert not [a for a in others if allowed([document], Request(a, "*"))]
    assert not allowed([document], Request("elasticmapreduce:ListClusters", "*")), "EMR only through the role"
