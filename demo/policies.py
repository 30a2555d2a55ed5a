"""The IAM policies shipped in ``deploy/``, filled in for a given setup.

The emulator's IAM-enforced flow and the demo load the very files of
``deploy/iam/``, so what the tests prove is what an operator deploys.
:func:`template_policies` reads the policies inside the CloudFormation
templates of ``deploy/cloudformation/`` the same way, for the policy tests and
the parliament audit (``deploy/audit_policies.py``).

Placeholders of the JSON files (``string.Template``): ``${ACCOUNT_A_ID}``,
``${EXTERNAL_ID}``, ``${ROLE_ARN}`` (account A's policy), ``${REGION}``,
``${ACCOUNT_B_ID}``, ``${CLUSTER_TAG_KEY}``, ``${CLUSTER_TAG_VALUE}``,
``${CLUSTER_SERVICE_ROLE}``, ``${CLUSTER_INSTANCE_ROLE}`` (account B's
permissions: the clusters' region and account, the managed tag, and the two
roles a started cluster is given: the templates' ``ServiceRole`` and the role of
their ``JobFlowRole`` instance profile), ``${TABLE_REGION}`` and ``${TABLE_NAME}``
(account A's state table for two instances, ``account-a-dynamodb.json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from string import Template
from typing import Any

from demo.emulator import ACCOUNT_B, MANAGED_TAG, REGION

# The roles the shipped templates pass (deploy/templates/*.json; account-b.yaml's ClusterServiceRoleName
# and ClusterInstanceRoleName default to them): those `aws emr create-default-roles` creates.
CLUSTER_ROLES = ("EMR_DefaultRole", "EMR_EC2_DefaultRole")

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
IAM_DIR = DEPLOY_DIR / "iam"
CFN_DIR = DEPLOY_DIR / "cloudformation"
POLICY_KEYS = ("PolicyDocument", "AssumeRolePolicyDocument")


def _load(name: str, **values: str) -> dict[str, Any]:
    text = Template((IAM_DIR / name).read_text(encoding="utf-8")).substitute(values)
    document: dict[str, Any] = json.loads(text)
    return document


def cluster_values(
    account_b_id: str = ACCOUNT_B,
    region: str = REGION,
    tag: tuple[str, str] = MANAGED_TAG,
    roles: tuple[str, str] = CLUSTER_ROLES,
) -> dict[str, str]:
    """The placeholders of ``account-b-permissions.json`` for clusters of *account_b_id* in *region*, tagged *tag*,
    started with the service and instance *roles*."""
    return {
        "ACCOUNT_B_ID": account_b_id,
        "REGION": region,
        "CLUSTER_TAG_KEY": tag[0],
        "CLUSTER_TAG_VALUE": tag[1],
        "CLUSTER_SERVICE_ROLE": roles[0],
        "CLUSTER_INSTANCE_ROLE": roles[1],
    }


def table_values(account_a_id: str, region: str, table: str = "emr-chatops") -> dict[str, str]:
    """The placeholders of ``account-a-dynamodb.json``: the bot's state table *table*, in *account_a_id* and *region*."""
    return {"ACCOUNT_A_ID": account_a_id, "TABLE_REGION": region, "TABLE_NAME": table}


def state_table_policy(account_a_id: str, region: str, table: str = "emr-chatops") -> dict[str, Any]:
    """Account A: the bot's identity may use its DynamoDB state table (storage/dynamodb.py), and nothing else."""
    return _load("account-a-dynamodb.json", **table_values(account_a_id, region, table))


def permission_policy(
    *,
    without: Iterable[str] = (),
    account_b_id: str = ACCOUNT_B,
    region: str = REGION,
    tag: tuple[str, str] = MANAGED_TAG,
    roles: tuple[str, str] = CLUSTER_ROLES,
) -> dict[str, Any]:
    """Account B: the EMR actions the bot calls, and nothing else (minus *without*, to test denials).

    Filled in for the emulator's account B and region, the default managed tag and the shipped
    templates' roles, unless told otherwise.
    """
    document = _load("account-b-permissions.json", **cluster_values(account_b_id, region, tag, roles))
    removed = set(without)
    statements = [{**s, "Action": [a for a in s["Action"] if a not in removed]} for s in document["Statement"]]
    document["Statement"] = [s for s in statements if s["Action"]]
    return document


def trust_policy(account_a_id: str, external_id: str) -> dict[str, Any]:
    """Account B: who may assume the role (account A, with the ExternalId)."""
    return _load("account-b-trust.json", ACCOUNT_A_ID=account_a_id, EXTERNAL_ID=external_id)


def bot_policy(role_arn: str) -> dict[str, Any]:
    """Account A: the bot's identity may assume the role in account B."""
    return _load("account-a-assume.json", ROLE_ARN=role_arn)


def json_policies(values: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every policy file of ``deploy/iam/``, by file name, its placeholders filled from *values*."""
    return {
        path.name: json.loads(Template(path.read_text(encoding="utf-8")).substitute(values))
        for path in sorted(IAM_DIR.glob("*.json"))
    }


# -- CloudFormation ----------------------------------------------------------------------------


def load_template(name: str) -> dict[str, Any]:
    """A template of ``deploy/cloudformation/`` with the short-form tags (!Ref, !Sub …) in their long form."""
    import yaml  # requirements-dev.txt: only the tests and the deploy checks read templates

    # A SafeLoader of our own (created per call: the constructor below must not reach yaml.SafeLoader).
    cfn_loader: Any = type("CfnLoader", (yaml.SafeLoader,), {})

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    cfn_loader.add_multi_constructor("!", construct)
    loader = cfn_loader((CFN_DIR / name).read_text(encoding="utf-8"))
    try:
        template: dict[str, Any] = loader.get_single_data()
    finally:
        loader.dispose()
    return template


def resolve(node: Any, names: Mapping[str, str]) -> Any:
    """Replace ``Ref`` and ``Fn::Sub`` of the names in *names* by their text.

    A name that *names* lacks fails (a policy must not depend on anything else), and any
    other intrinsic function is left as is, so it cannot compare equal to a JSON file by accident.
    """
    if isinstance(node, list):
        return [resolve(item, names) for item in node]
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            if node["Ref"] not in names:
                raise KeyError(f"unexpected !Ref {node['Ref']} in a policy")
            return names[node["Ref"]]
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):

            def sub(match: re.Match[str]) -> str:
                if match.group(1) not in names:
                    raise KeyError(f"unexpected ${{{match.group(1)}}} in !Sub")
                return names[match.group(1)]

            return re.sub(r"\$\{([^}!]+)\}", sub, node["Fn::Sub"])
        return {key: resolve(value, names) for key, value in node.items()}
    return node


def policy_document(node: Any, names: Mapping[str, str]) -> dict[str, Any]:
    """A template's policy document, resolved with *names*; a JSON string (``!Sub |``) is parsed."""
    document = resolve(node, names)
    if isinstance(document, str):
        document = json.loads(document)
    assert isinstance(document, dict), f"not a policy document: {document!r}"
    return document


def _policy_nodes(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in POLICY_KEYS:
                yield f"{where}.{key}", value
            else:
                yield from _policy_nodes(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _policy_nodes(item, f"{where}[{i}]")


def template_policies(name: str, names: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every policy document inside template *name* (trust and permissions), resolved with *names*.

    Keyed by where it is, e.g. ``account-b.yaml:ChatopsClusterRole.Policies[0].PolicyDocument``.
    """
    resources = load_template(name)["Resources"]
    return {
        f"{name}:{where}": policy_document(node, names)
        for logical_id, resource in resources.items()
        for where, node in _policy_nodes(resource.get("Properties", {}), logical_id)
    }
