"""Account A's policy for several targets (DESIGN §17): written from TARGETS_FILE by a command, it allows
sts:AssumeRole on exactly every target's role (each once, sorted) and otherwise what the shipped policy
allows (reading the Price List); parliament finds nothing unexplained in it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from iam_eval import Request, allowed

from demo import policies
from deploy.account_a_policy import policy_for
from emrchatops.domain.targets import load_targets

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "deploy" / "targets.example.toml"
SAMPLE_ROLES = [
    "arn:aws:iam::111122223333:role/cre",
    "arn:aws:iam::444455556666:role/cre",
    "arn:aws:iam::777788889999:role/platform/emr-chatops",
]


def assume_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if s["Action"] == "sts:AssumeRole"]


def test_the_sample_s_policy_assumes_every_target_role_and_no_other() -> None:
    document = policy_for(load_targets(SAMPLE))
    [assume] = assume_statements(document)
    assert assume["Resource"] == SAMPLE_ROLES
    for role in SAMPLE_ROLES:
        assert allowed([document], Request("sts:AssumeRole", role))
    assert not allowed([document], Request("sts:AssumeRole", "arn:aws:iam::111122223333:role/admin"))
    assert not allowed([document], Request("sts:AssumeRole", "arn:aws:iam::999999999999:role/cre"))
    # The rest is the shipped policy's: reading the Price List, nothing else.
    shipped = policies.bot_policy(SAMPLE_ROLES[0])
    assert [s for s in document["Statement"] if s not in assume_statements(document)] == [
        s for s in shipped["Statement"] if s["Action"] != "sts:AssumeRole"
    ]


def test_a_role_shared_by_targets_is_listed_once_and_one_role_is_the_shipped_policy(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(
        '[defaults]\nrole = "cre"\nregions = ["ap-northeast-1"]\n'
        '[[targets]]\nname = "b"\naccount = "444455556666"\n'
        '[[targets]]\nname = "a"\naccount = "111122223333"\n'
        '[[targets]]\nname = "a-us"\naccount = "111122223333"\nregions = ["us-west-2"]\n'
    )
    [assume] = assume_statements(policy_for(load_targets(path)))
    assert assume["Resource"] == ["arn:aws:iam::111122223333:role/cre", "arn:aws:iam::444455556666:role/cre"]
    one = load_targets(SAMPLE)[:1]
    assert policy_for(one) == policies.bot_policy(SAMPLE_ROLES[0])  # deploy/iam/account-a-assume.json, filled in


def audit_module() -> Any:
    spec = importlib.util.spec_from_file_location("audit_policies", ROOT / "deploy" / "audit_policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_parliament_finds_nothing_unexplained_in_the_sample_s_policy() -> None:
    audit = audit_module()
    generated = audit.generated_policies()
    assert list(generated) == ["python -m deploy.account_a_policy deploy/targets.example.toml"]
    assert [why for _, why in audit.audit(generated) if why is None] == []
    # and would, for a role pattern or a second credential beside the roles
    document = next(iter(generated.values()))
    wildcard = json.loads(json.dumps(document).replace("role/cre", "role/*", 1))
    assert any(why is None for _, why in audit.audit({"wildcard": wildcard}))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [("-m", "deploy.account_a_policy"), ("deploy/account_a_policy.py",)])
def test_the_command_writes_the_policy(command: tuple[str, ...], tmp_path: Path) -> None:
    done = run(*command, str(SAMPLE))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == policy_for(load_targets(SAMPLE))
    out = tmp_path / "account-a.json"
    done = run(*command, str(SAMPLE), "--out", str(out))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert json.loads(out.read_text()) == policy_for(load_targets(SAMPLE))
    assert "3 roles" in done.stderr


def test_the_command_refuses_a_bad_file_naming_file_target_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "targets.toml"
    bad.write_text('[[targets]]\nname = "game-a"\naccount = "12ab"\nrole = "cre"\nregions = ["ap-northeast-1"]\n')
    done = run("deploy/account_a_policy.py", str(bad))
    assert done.returncode == 2 and done.stdout == ""
    assert f"EMR config TARGETS_FILE: {bad}, target game-a, key account: expected 12 digits, got '12ab'" in done.stderr


def test_make_names_the_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\naccount-a-policy:" in makefile and "-m deploy.account_a_policy $(TARGETS_FILE)" in makefile
