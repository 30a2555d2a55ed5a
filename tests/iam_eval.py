"""A small evaluator of IAM identity policies, for the tests: what one request gets from some policies.

moto's IAM enforcement treats a condition key it has no value for as satisfied, so it cannot tell
whether the shipped tag condition refuses an untagged cluster. This evaluator can, for the subset of
AWS's policy evaluation logic the shipped policies use, and refuses (:class:`Unsupported`) anything
else instead of guessing:

* an explicit Deny wins; else an Allow allows; else the request is denied (implicit deny);
* ``Action``/``NotAction`` with ``*`` and ``?`` wildcards, case-insensitive (as IAM compares actions);
* ``Resource``/``NotResource`` with ``*`` and ``?`` wildcards, case-sensitive (a wildcard may span
  ``:`` here; the shipped policies have none in the account or region segment, where it would matter);
* ``Condition``: every operator of the block holds (AND), every key under an operator holds (AND),
  and a key holds when any of its values matches (OR). Operators: ``StringEquals``,
  ``StringNotEquals``, ``StringLike``, ``StringNotLike``, ``Null``, each also with ``IfExists``.
  Condition key names are case-insensitive, values case-sensitive. A key missing from the request
  matches no positive operator, satisfies a negated one (as AWS documents) and any ``…IfExists``.

Not covered, and refused: policy variables (``${aws:…}``), ``ForAnyValue:``/``ForAllValues:``,
other operators, ``Principal`` (trust and resource policies), permission boundaries, SCPs, sessions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}


class Unsupported(Exception):
    """The policy uses something this evaluator does not implement: extend it, do not guess."""


@dataclass(frozen=True)
class Request:
    """One authorisation question: may *action* be done on *resource*, with these context keys?"""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def cluster_request(action: str, arn: str, tags: Mapping[str, str]) -> Request:
    """A request on an EMR cluster: its tags are the ``ResourceTag`` context keys, as EMR sets them."""
    context: dict[str, str] = {}
    for key, value in tags.items():
        context[f"elasticmapreduce:ResourceTag/{key}"] = value
        context[f"aws:ResourceTag/{key}"] = value
    return Request(action, arn, context)


def decide(documents: Iterable[Mapping[str, Any]], request: Request) -> str:
    """``"Allow"``, ``"ImplicitDeny"`` or ``"ExplicitDeny"`` for *request* under all *documents* together."""
    allowed = False
    for document in documents:
        for statement in _statements(document):
            if not _applies(statement, request):
                continue
            if statement["Effect"] == "Deny":
                return "ExplicitDeny"
            if statement["Effect"] != "Allow":
                raise Unsupported(f"Effect {statement['Effect']!r}")
            allowed = True
    return "Allow" if allowed else "ImplicitDeny"


def allowed(documents: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return decide(documents, request) == "Allow"


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if document.get("Version") != "2012-10-17":
        raise Unsupported("policy Version other than 2012-10-17 (policy variables differ)")
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    known = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if set(statement) - known:
        raise Unsupported(f"statement elements {sorted(set(statement) - known)}")
    if ("Action" in statement) == ("NotAction" in statement):
        raise Unsupported("a statement needs exactly one of Action and NotAction")
    if ("Resource" in statement) == ("NotResource" in statement):
        raise Unsupported("a statement needs exactly one of Resource and NotResource")
    if "Action" in statement:
        action_ok = _any_match(statement["Action"], request.action, ignore_case=True)
    else:
        action_ok = not _any_match(statement["NotAction"], request.action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _any_match(statement["Resource"], request.resource, ignore_case=False)
    else:
        resource_ok = not _any_match(statement["NotResource"], request.resource, ignore_case=False)
    return action_ok and resource_ok and _conditions_hold(statement.get("Condition", {}), request.context)


def _any_match(patterns: str | list[str], value: str, *, ignore_case: bool) -> bool:
    return any(_glob(pattern, value, ignore_case=ignore_case) for pattern in _listed(patterns))


def _glob(pattern: str, value: str, *, ignore_case: bool) -> bool:
    if "${" in pattern:
        raise Unsupported(f"policy variable in {pattern!r}")
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _listed(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise Unsupported(f"non-string value in {value!r}")
    return values


def _conditions_hold(block: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    lowered = {key.lower(): value for key, value in context.items()}
    for operator, keys in block.items():
        if ":" in operator:
            raise Unsupported(f"set operator {operator}")
        base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
        if base not in STRING_OPERATORS | {"Null"}:
            raise Unsupported(f"condition operator {operator}")
        for key, expected in keys.items():
            if "${" in key:
                raise Unsupported(f"policy variable in condition key {key!r}")
            actual = lowered.get(key.lower())
            if base == "Null":
                if _listed(expected) not in (["true"], ["false"]):
                    raise Unsupported(f"Null needs true or false, not {expected!r}")
                if (actual is None) != (_listed(expected) == ["true"]):
                    return False
                continue
            if actual is None:
                if if_exists or base.startswith("StringNot"):
                    continue
                return False
            like = base.endswith("Like")
            matched = any(_glob(v, actual, ignore_case=False) if like else v == actual for v in _listed(expected))
            if matched == base.startswith("StringNot"):
                return False
    return True
