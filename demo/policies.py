"""The IAM policies shipped in ``deploy/iam/``, filled in for a given setup.

The emulator's IAM-enforced flow and the demo load these very files, so what
the tests prove is what an operator deploys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from string import Template
from typing import Any

IAM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "iam"


def _load(name: str, **values: str) -> dict[str, Any]:
    text = Template((IAM_DIR / name).read_text(encoding="utf-8")).substitute(values)
    document: dict[str, Any] = json.loads(text)
    return document


def permission_policy(*, without: Iterable[str] = ()) -> dict[str, Any]:
    """Account B: the EMR actions the bot calls, and nothing else (minus *without*, to test denials)."""
    document = _load("account-b-permissions.json")
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
