#!/usr/bin/env python3
"""Write account A's IAM policy for every target of a TARGETS_FILE (DESIGN §17).

    python -m deploy.account_a_policy /etc/emr-chatops/targets.toml > account-a.json
    python deploy/account_a_policy.py targets.toml --out account-a.json
    make account-a-policy TARGETS_FILE=/etc/emr-chatops/targets.toml POLICY_OUT=account-a.json

The bot's own identity (account A) may assume exactly every target's role (each ARN once, sorted)
and otherwise what deploy/iam/account-a-assume.json allows (reading AWS's Price List): that file is
the template, so the two cannot drift; for one target the output is that file filled in. Attach the
output to the identity the bot runs as (for example `aws iam put-role-policy --role-name BOT-ROLE
--policy-name emr-chatops --policy-document file://account-a.json`), instead of account-a.yaml's
policy, which names one role.

The file is checked as the bot checks it at start (a bad one: exit status 2, the file, the target and
the key named on stderr); nothing is asked of AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "plugins" / "emr") not in sys.path:
    sys.path.insert(0, str(REPO / "plugins" / "emr"))

from emrchatops.domain.errors import ConfigError  # noqa: E402 - after the plugin folder is on the path
from emrchatops.domain.targets import Target, load_targets  # noqa: E402

SHIPPED = REPO / "deploy" / "iam" / "account-a-assume.json"
ASSUME = "sts:AssumeRole"


def policy_for(targets: Sequence[Target]) -> dict[str, Any]:
    """deploy/iam/account-a-assume.json with its one role replaced by every target's role."""
    roles = sorted({t.role_arn for t in targets})
    if not roles:
        raise ValueError("no target")
    document: dict[str, Any] = json.loads(Template(SHIPPED.read_text(encoding="utf-8")).substitute(ROLE_ARN=roles[0]))
    assuming = [s for s in document["Statement"] if s.get("Action") == ASSUME]
    if len(assuming) != 1:
        raise ValueError(f"{SHIPPED.name}: expected one statement allowing {ASSUME}")
    assuming[0]["Resource"] = roles[0] if len(roles) == 1 else roles
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.account_a_policy", description="Write account A's IAM policy from a TARGETS_FILE."
    )
    parser.add_argument("targets_file", help="the bot's TARGETS_FILE (TOML)")
    parser.add_argument("--out", help="write the policy here (default: standard output)")
    args = parser.parse_args(argv)
    try:
        targets = load_targets(args.targets_file)
    except ConfigError as problem:
        print(problem, file=sys.stderr)
        return 2
    document = policy_for(targets)
    text = json.dumps(document, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        roles = len({t.role_arn for t in targets})
        print(
            f"{args.out}: sts:AssumeRole on {roles} role{'s' * (roles != 1)} of {len(targets)} targets", file=sys.stderr
        )
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
