"""account-b.yaml to many accounts at once (DESIGN §17): account-b-stackset.yaml is a service-managed
CloudFormation StackSet of it, deployed to organizational units (and to accounts that join them later),
passing every parameter of account-b.yaml through unchanged, so the two cannot drift; cfn-lint checks
it with the others (tests/test_deploy.py, deploy/check.sh)."""

from __future__ import annotations

from typing import Any

from demo import policies

WRAPPER = "account-b-stackset.yaml"


def stackset() -> dict[str, Any]:
    [resource] = [r for r in policies.load_template(WRAPPER)["Resources"].values()]
    assert resource["Type"] == "AWS::CloudFormation::StackSet"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def test_it_is_a_service_managed_stackset_that_follows_the_organization() -> None:
    properties = stackset()
    assert properties["PermissionModel"] == "SERVICE_MANAGED"
    assert properties["AutoDeployment"]["Enabled"] is True  # an account that joins the OU gets the role
    assert properties["Capabilities"] == ["CAPABILITY_NAMED_IAM"]  # account-b.yaml names its role
    assert properties["TemplateURL"] == {"Ref": "AccountBTemplateUrl"}  # account-b.yaml itself, uploaded
    assert "TemplateBody" not in properties
    [group] = properties["StackInstancesGroup"]
    assert group["DeploymentTargets"] == {"OrganizationalUnitIds": {"Ref": "OrganizationalUnitIds"}}
    # IAM is global: a second region's stack would make the same role again, and fail.
    assert group["Regions"] == [{"Ref": "StackRegion"}]


def test_every_parameter_of_account_b_is_passed_through_as_account_b_defines_it() -> None:
    account_b = policies.load_template("account-b.yaml")["Parameters"]
    wrapper = policies.load_template(WRAPPER)["Parameters"]
    for name, definition in account_b.items():
        assert wrapper.get(name) == definition, name
    passed = {p["ParameterKey"]: p["ParameterValue"] for p in stackset()["Parameters"]}
    assert passed == {name: {"Ref": name} for name in account_b}
    own = set(wrapper) - set(account_b)
    assert own == {"AccountBTemplateUrl", "OrganizationalUnitIds", "StackRegion", "CallAs"}
