"""IAM's policy evaluation rules, as `make check-iam` applies them.

One request (an action, one resource ARN, condition-key values) against the
statements of one identity policy set (a role's inline policies):

- An explicit ``Deny`` that matches wins over any ``Allow``. With no
  matching statement at all, the request is denied (implicit deny).
- ``Action`` / ``NotAction``: matched case-insensitively; ``*`` matches any
  run of characters, ``?`` one character (``kms:GenerateDataKey*``).
- ``Resource`` / ``NotResource``: ``*`` alone matches anything. Otherwise the
  ARN's first five parts (``arn:partition:service:region:account``) are
  matched part by part, and the resource part (everything after the fifth
  colon, which may itself hold ``:`` and ``/``) as a whole, case-sensitively,
  with the same wildcards. A request whose resource is ``*`` (an action
  without resource-level permissions) is matched only by ``*``. Each resource
  of a call is its own request: all must be allowed.
- ``Condition``: every operator block must hold, and within a block every
  key; a key holds if any of its policy values matches (OR). Condition keys
  are case-insensitive. Implemented operators: ``StringEquals``,
  ``StringNotEquals``, ``StringLike``, ``StringNotLike``, ``ArnEquals``,
  ``ArnLike``, ``ArnNotEquals``, ``ArnNotLike``, ``Bool``, each also with the
  ``IfExists`` suffix. A key missing from the request fails the positive
  operators, passes the negated ones (as IAM does), and passes any
  ``...IfExists`` operator.

Anything else (another operator, ``ForAnyValue:``/``ForAllValues:``, policy
variables such as ``${aws:username}``) raises :class:`UnsupportedPolicy`,
naming it: the checker fails rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


class UnsupportedPolicy(Exception):
    """A policy uses IAM features this module does not evaluate."""


@dataclass(frozen=True)
class Request:
    """One authorisation request: the action, one resource, the context."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    """One policy statement and a name to report it by."""

    sid: str
    body: dict[str, Any]

    @property
    def effect(self) -> str:
        return self.body.get("Effect", "")


@dataclass
class Decision:
    """The outcome, with the statements that decided it."""

    allowed: bool
    allowing: list[Statement]
    denying: list[Statement]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variables are not evaluated: {pattern!r}")
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(regex, flags)


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` one."""
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return glob_match(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """A policy ARN (with wildcards) against a request ARN."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(glob_match(p, a) for p, a in zip(pattern_parts, arn_parts))


def _string_equals(policy: str, value: str) -> bool:
    return policy == value


_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringLike": (glob_match, False),
    "StringNotLike": (glob_match, True),
    "ArnEquals": (arn_matches, False),
    "ArnLike": (arn_matches, False),
    "ArnNotEquals": (arn_matches, True),
    "ArnNotLike": (arn_matches, True),
    "Bool": (lambda p, v: str(p).lower() == str(v).lower(), False),
}


def _condition_holds(operator: str, block: dict[str, Any], context: dict[str, str]) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise UnsupportedPolicy(f"multi-valued condition operator {operator}")
    base = operator.removesuffix("IfExists")
    if_exists = base != operator
    if base not in _OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator}")
    match, negated = _OPERATORS[base]
    lowered = {k.lower(): v for k, v in context.items()}
    for key, policy_values in block.items():
        value = lowered.get(key.lower())
        if value is None:
            if if_exists or negated:
                continue
            return False
        any_match = any(match(str(p), value) for p in _as_list(policy_values))
        if any_match == negated:
            return False
    return True


def _conditions_hold(statement: Statement, context: dict[str, str]) -> bool:
    conditions = statement.body.get("Condition") or {}
    return all(
        _condition_holds(operator, block, context) for operator, block in conditions.items()
    )


def _matches_action(statement: Statement, action: str) -> bool:
    body = statement.body
    if "NotAction" in body:
        return not any(action_matches(p, action) for p in _as_list(body["NotAction"]))
    return any(action_matches(p, action) for p in _as_list(body.get("Action")))


def _matches_resource(statement: Statement, resource: str) -> bool:
    body = statement.body
    if "NotResource" in body:
        return not any(arn_matches(p, resource) for p in _as_list(body["NotResource"]))
    return any(arn_matches(p, resource) for p in _as_list(body.get("Resource")))


def applies(statement: Statement, request: Request) -> bool:
    """Whether the statement matches the request (action, resource, conditions)."""
    return (
        _matches_action(statement, request.action)
        and _matches_resource(statement, request.resource)
        and _conditions_hold(statement, request.context)
    )


def evaluate(statements: list[Statement], request: Request) -> Decision:
    """IAM's decision for one request against identity-policy statements."""
    allowing: list[Statement] = []
    denying: list[Statement] = []
    for statement in statements:
        if statement.effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement {statement.sid} has Effect {statement.effect!r}")
        if applies(statement, request):
            (allowing if statement.effect == "Allow" else denying).append(statement)
    return Decision(allowed=bool(allowing) and not denying, allowing=allowing, denying=denying)
