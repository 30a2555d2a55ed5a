#!/usr/bin/env python3
"""Audit every IAM policy the project ships with parliament (pinned in requirements-dev.txt).

    python deploy/audit_policies.py        # deploy/check.sh runs it; exit 1 on an unexplained finding

What is audited: each file of deploy/iam/ and each policy inside deploy/cloudformation/*.yaml
(trust policies and permission policies alike), filled in with sample values (the JSON files'
placeholders; the templates' parameters, their defaults where they have one, and pseudo
parameters), because parliament needs real ARNs to check resources against actions; and the
policy deploy/account_a_policy.py writes for deploy/targets.example.toml (several targets).

How: parliament's own analysis with its community auditors, every severity down to INFO (the
parliament command line hides INFO and LOW-below by default). A finding passes only when an entry
of EXPLAINED matches it precisely; each entry says why the finding is wrong or accepted. Any other
finding fails the audit. Every finding is printed, explained or not.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo import policies  # noqa: E402 - after the repository is on the path

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
REGION = "ap-northeast-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_B}:role/cre"
EXTERNAL_ID = "sample-external-id-for-the-audit"

TABLE = "emr-chatops"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_A}:secret:emr-chatops/%s-AbCdEf"

JSON_VALUES = {
    "ACCOUNT_A_ID": ACCOUNT_A,
    "EXTERNAL_ID": EXTERNAL_ID,
    "ROLE_ARN": ROLE_ARN,
    **policies.cluster_values(ACCOUNT_B, REGION),
    **policies.table_values(ACCOUNT_A, REGION, TABLE),
}
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION}
TEMPLATE_VALUES = {
    "account-a.yaml": {**PSEUDO, "AWS::AccountId": ACCOUNT_A, "ClusterAccountRoleArn": ROLE_ARN},
    "account-b.yaml": {**PSEUDO, "AWS::AccountId": ACCOUNT_B, "BotAccountId": ACCOUNT_A, "ExternalId": EXTERNAL_ID},
    "dynamodb.yaml": {**PSEUDO, "AWS::AccountId": ACCOUNT_A, "StateTable": TABLE},
    "ecs-fargate.yaml": {
        **PSEUDO,
        "AWS::AccountId": ACCOUNT_A,
        "SlackBotTokenSecretArn": SECRET % "slack-bot-token",
        "SlackAppTokenSecretArn": SECRET % "slack-app-token",
        "ExternalIdSecretArn": SECRET % "external-id",
    },
    "account-b-stackset.yaml": {},  # account-b.yaml by its URL: its policies are audited there, it has none of its own
}


@dataclass(frozen=True)
class Finding:
    policy: str  # e.g. "deploy/iam/account-b-permissions.json"
    document: dict[str, Any]
    issue: str  # parliament's code, e.g. UNKNOWN_CONDITION_FOR_ACTION
    severity: str
    title: str
    detail: str


@dataclass(frozen=True)
class Explanation:
    issue: str
    applies: Callable[[Finding], bool]
    why: str


def _resource_tag_key_of_action_resource(finding: Finding) -> bool:
    """parliament 1.6.4 looks a service's condition key up in the *action's* own list of keys only, and
    misses those its own IAM data attaches to the action's resource type: TerminateJobFlows has none of
    its own, but its resource type `cluster` lists elasticmapreduce:ResourceTag/${TagKey}."""
    found = re.fullmatch(r"Unknown condition (\w+):ResourceTag/\S+ for action (\w+):(\w+)", finding.detail)
    if found is None or found.group(1) != found.group(2):
        return False
    service = next(s for s in _iam_definition() if s["prefix"] == found.group(2))
    privilege = next((p for p in service["privileges"] if p["privilege"] == found.group(3)), None)
    if privilege is None:
        return False
    types = {t["resource_type"].rstrip("*") for t in privilege["resource_types"]}
    return any(
        r["resource"] in types and f"{found.group(1)}:ResourceTag/${{TagKey}}" in r["condition_keys"]
        for r in service["resources"]
    )


def _is_trust_policy(finding: Finding) -> bool:
    statements = finding.document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    return finding.detail == "Statement contains neither Resource nor NotResource" and all(
        "Principal" in s and "Resource" not in s for s in statements
    )


def _assumes_named_roles(finding: Finding) -> bool:
    """One statement allows sts:AssumeRole, on named roles (one, or each target's: no pattern); any other
    only reads the Price List."""
    statements = finding.document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    assuming = [s for s in statements if s.get("Action") in ("sts:AssumeRole", ["sts:AssumeRole"])]
    others = [s for s in statements if s not in assuming]
    roles = _listed(assuming[0].get("Resource", [])) if len(assuming) == 1 else []
    return (
        finding.detail == ""
        and bool(roles)
        and all(re.fullmatch(r"arn:aws:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]+", str(r)) for r in roles)
        and all(_reads_prices_only(s) for s in others)
    )


def _reads_prices_only(statement: dict[str, Any]) -> bool:
    """An Allow of Price List actions that IAM calls Read (public prices: no credential, no resource)."""
    pricing = next(s for s in _iam_definition() if s["prefix"] == "pricing")
    reads = {f"pricing:{p['privilege']}" for p in pricing["privileges"] if p["access_level"] == "Read"}
    actions = _listed(statement.get("Action", []))
    return statement.get("Effect") == "Allow" and bool(actions) and set(actions) <= reads


PASS_ROLE_SERVICES = {"elasticmapreduce.amazonaws.com", "ec2.amazonaws.com"}


def _passes_only_the_cluster_roles(finding: Finding) -> bool:
    """The policy's only IAM action is iam:PassRole, on named roles of one account (no wildcard), passed
    only to EMR or EC2: what RunJobFlow needs to give a cluster its service and instance roles. (Parliament's
    community auditor counts iam:PassRole as permissions management; the IAM reference calls it Write.)"""
    statements = finding.document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    managing = [s for s in statements if any(a.lower().startswith("iam:") for a in _listed(s.get("Action", [])))]
    if finding.detail or not managing:
        return False
    for statement in managing:
        resources = _listed(statement.get("Resource", []))
        condition = statement.get("Condition", {})
        services = condition.get("StringEquals", {}).get("iam:PassedToService")
        if (
            statement.get("Effect") != "Allow"
            or _listed(statement["Action"]) != ["iam:PassRole"]
            or set(condition) != {"StringEquals"}
            or not resources
            or not all(re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", r) for r in resources)
            or not services
            or not set(_listed(services)) <= PASS_ROLE_SERVICES
        ):
            return False
    return True


def _listed(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


EXPLAINED = (
    Explanation(
        "UNKNOWN_CONDITION_FOR_ACTION",
        _resource_tag_key_of_action_resource,
        "parliament misses resource-type condition keys: the IAM reference (and parliament's own data) "
        "lists elasticmapreduce:ResourceTag/${TagKey} for the cluster resource of this action",
    ),
    Explanation(
        "MALFORMED",
        _is_trust_policy,
        "a role's trust policy names a Principal and has no Resource; parliament lints identity policies",
    ),
    Explanation(
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        _passes_only_the_cluster_roles,
        "iam:PassRole is how RunJobFlow gives a started cluster its roles: the policy allows it on the two "
        "named roles of the templates (ServiceRole, JobFlowRole's role) only, and only to EMR and EC2 "
        "(iam:PassedToService)",
    ),
    Explanation(
        "CREDENTIALS_EXPOSURE",
        _assumes_named_roles,
        "assuming the cluster account's role is the bot's purpose; the policy allows sts:AssumeRole "
        "on that one role ARN (or each target's, by ARN), and otherwise only reads AWS's Price List "
        "(pricing:GetProducts)",
    ),
)


def _iam_definition() -> list[dict[str, Any]]:
    import parliament

    definition: list[dict[str, Any]] = parliament.iam_definition
    return definition


def shipped_policies() -> dict[str, dict[str, Any]]:
    """Every shipped policy, filled in with the sample values, by where it is."""
    found = {f"deploy/iam/{name}": doc for name, doc in policies.json_policies(JSON_VALUES).items()}
    for template, names in TEMPLATE_VALUES.items():
        parameters = policies.load_template(template).get("Parameters", {})
        defaults = {name: str(p["Default"]) for name, p in parameters.items() if "Default" in p}
        for where, doc in policies.template_policies(template, {**defaults, **names}).items():
            found[f"deploy/cloudformation/{where}"] = doc
    templates = {path.name for path in policies.CFN_DIR.glob("*.yaml")}
    if templates != set(TEMPLATE_VALUES):
        raise SystemExit(f"give the audit sample values for every template: {sorted(templates)}")
    return found


SAMPLE_TARGETS = "deploy/targets.example.toml"


def generated_policies() -> dict[str, dict[str, Any]]:
    """The policy deploy/account_a_policy.py writes for the sample targets file, by the command that writes it."""
    from deploy.account_a_policy import policy_for
    from emrchatops.domain.targets import load_targets

    return {f"python -m deploy.account_a_policy {SAMPLE_TARGETS}": policy_for(load_targets(REPO / SAMPLE_TARGETS))}


def audit(documents: dict[str, dict[str, Any]]) -> list[tuple[Finding, str | None]]:
    """Each finding of each policy in *documents* (by where it is), with the reason it is accepted (None: not)."""
    import json

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports the deprecated pkg_resources
        import parliament

    # As `parliament --include-community-auditors` does: their findings need their settings.
    parliament.override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")
    results: list[tuple[Finding, str | None]] = []
    for where, document in documents.items():
        analysed = parliament.analyze_policy_string(
            json.dumps(document, indent=2), where, include_community_auditors=True
        )
        for raw in analysed.findings:
            raw = parliament.enhance_finding(raw)
            finding = Finding(where, document, raw.issue, raw.severity, raw.title, str(raw.detail))
            why = next((e.why for e in EXPLAINED if e.issue == finding.issue and e.applies(finding)), None)
            results.append((finding, why))
    return results


def main() -> int:
    import parliament

    shipped = {**shipped_policies(), **generated_policies()}
    results = audit(shipped)
    for finding, why in results:
        line = f"{finding.severity} {finding.issue} {finding.policy}: {finding.title}"
        line += f" ({finding.detail})" if finding.detail else ""
        print(line + (f"\n    explained: {why}" if why else "\n    NOT EXPLAINED"))
    unexplained = sum(why is None for _, why in results)
    print(
        f"parliament {parliament.__version__}: {len(shipped)} policies, {len(results)} findings, "
        f"{len(results) - unexplained} explained, {unexplained} unexplained"
    )
    return 1 if unexplained else 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports the deprecated pkg_resources
        import parliament  # noqa: F401 - imported once here, quietly
    sys.exit(main())
