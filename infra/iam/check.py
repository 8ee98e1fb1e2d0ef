"""make check-iam: least privilege, checked against the record of calls.

While the integration and end-to-end tests run, the harness records every
AWS call each function process makes, as the IAM authorisations it needs
(tests/src/call_record.rs; one JSON-lines file per process under
target/iam-calls). This checker evaluates each of them against the role of
that function in the offline-transformed templates, and fails:

- when a call is not allowed (by action, resource or condition), naming the
  function, the call and the statement it would need;
- when an ``Allow`` of a function's role (each action, on each resource) is
  used by no recorded call, unless the function's ``Metadata`` lists the
  action under ``UnexercisedGrants`` with the reason it is needed anyway
  (a grant AWS itself uses with the function's role). A listed action that
  kiln's calls do use, or that the role does not grant, fails too: the list
  stays true;
- when a call could not be mapped to IAM, or a process matches none of the
  local deployments.

Templates are resolved for the local deployments in infra/iam/deployments.yaml
(account 123456789012, region us-east-1: moto's). A process is checked under
every deployment that gives its function the same optional configuration
variables the test set. The test's resources are linked to the template's
through the function's configuration: where the test's value of a variable
appears in a recorded ARN or condition value, the template's value for that
variable takes its place.

Usage:
  check.py [--records DIR] [--templates DIR] [--drop FUNCTION:ACTION]...

--templates takes transformed templates (<name>.json, as sam_transform.py
writes them) instead of transforming infra/*.yaml; --drop evaluates as if
FUNCTION's role did not grant ACTION (e.g. watchdog:autoscaling:SetDesiredCapacity).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import yaml  # noqa: E402

from policy import Request, Statement, UnsupportedPolicy, action_matches, arn_matches, evaluate  # noqa: E402
from resolve import NO_VALUE, Resolver, Unresolvable  # noqa: E402

WORKSPACE = HERE.parent.parent
DEPLOYMENTS = HERE / "deployments.yaml"
MARKER = "UnexercisedGrants"


class CheckError(Exception):
    """The check cannot run (bad input), as opposed to a finding."""


# --- The templates' side: roles and configuration per deployment -------------


@dataclass
class Grant:
    """One action pattern on one resource pattern of an Allow statement;
    `index` is the resource's position in the statement, which (with the
    statement's name and the action) identifies the grant across
    deployments, where the resource itself resolves differently."""

    statement: str
    action: str
    index: int
    resource: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.statement, self.action, self.index)


@dataclass
class FunctionRole:
    """A function as one deployment of its template configures it."""

    template: str
    deployment: str
    logical_id: str
    role: str
    statements: list[Statement]
    environment: dict[str, str]
    marked: dict[str, str]
    # The resources and condition values the role names, as the template
    # has it (before any --drop): what links the test's resources.
    named: list[str] = field(default_factory=list)

    def grants(self) -> list[Grant]:
        out = []
        for statement in self.statements:
            if statement.effect != "Allow" or "NotAction" in statement.body or "NotResource" in statement.body:
                continue
            for action in _as_list(statement.body.get("Action")):
                for index, resource in enumerate(_as_list(statement.body.get("Resource"))):
                    out.append(Grant(statement.sid, action, index, resource))
        return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _pick(resolver: Resolver, node: Any) -> Any:
    """Follows Fn::If branches down to the node they select (NO_VALUE if none)."""
    while isinstance(node, dict) and len(node) == 1:
        if "Fn::If" in node:
            name, yes, no = node["Fn::If"]
            node = yes if resolver.condition(name) else no
        elif node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        else:
            break
    return node


def role_statements(resolver: Resolver, role: dict[str, Any]) -> list[Statement]:
    """A role's inline policy statements, resolved, each named by its Sid or
    ``<policy name>[<index>]`` (indexes count the statements as written, so a
    statement switched off by a condition does not renumber the others)."""
    out = []
    for policy in _as_list((role.get("Properties") or {}).get("Policies")):
        policy = _pick(resolver, policy)
        if policy is NO_VALUE:
            continue
        name = resolver.value(policy.get("PolicyName"))
        statements = _pick(resolver, policy["PolicyDocument"]["Statement"])
        for index, raw in enumerate(_as_list(statements)):
            raw = _pick(resolver, raw)
            if raw is NO_VALUE:
                continue
            body = resolver.value(raw)
            out.append(Statement(body.get("Sid") or f"{name}[{index}]", body))
    return out


def function_roles(
    name: str, template: dict[str, Any], deployment: dict[str, Any]
) -> dict[str, FunctionRole]:
    """binary -> its function's role and configuration in one deployment."""
    stack = f"kiln-{Path(name).stem}"
    resolver = Resolver(template, deployment.get("parameters") or {}, stack)
    out = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function" or not resolver.resource_exists(logical_id):
            continue
        metadata = resource.get("Metadata") or {}
        binary = metadata.get("BuildProperties", {}).get("Binary")
        if not binary:
            continue
        props = resource["Properties"]
        role_ref = props.get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise CheckError(f"{name}: {logical_id}'s Role is not a role of the template: {role_ref}")
        role_id = role_ref["Fn::GetAtt"][0]
        variables = resolver.value((props.get("Environment") or {}).get("Variables") or {})
        statements = role_statements(resolver, template["Resources"][role_id])
        out[binary] = FunctionRole(
            template=name,
            deployment=deployment["name"],
            logical_id=logical_id,
            role=role_id,
            statements=statements,
            environment={k: str(v) for k, v in variables.items()},
            marked=dict(metadata.get(MARKER) or {}),
            named=policy_values(statements),
        )
    return out


def drop_action(role: FunctionRole, action: str) -> int:
    """Removes ACTION from every Allow of the role; returns how many
    statements named it."""
    dropped = 0
    kept = []
    for statement in role.statements:
        actions = _as_list(statement.body.get("Action"))
        remaining = [a for a in actions if a.lower() != action.lower()]
        if len(remaining) != len(actions):
            dropped += 1
        if remaining:
            kept.append(Statement(statement.sid, {**statement.body, "Action": remaining}))
        elif not actions:
            kept.append(statement)
    role.statements = kept
    return dropped


# --- The tests' side: the record of calls ------------------------------------


@dataclass
class Process:
    path: Path
    function: str
    environment: dict[str, str]
    calls: list[dict[str, Any]] = field(default_factory=list)


def load_records(directory: Path) -> list[Process]:
    processes = []
    for path in sorted(directory.glob("*.jsonl")):
        lines = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CheckError(f"{path}:{number}: not a JSON record ({err}): record the calls again") from err
        if not lines or lines[0].get("record") != "process":
            raise CheckError(f"{path}: does not start with a process record")
        header = lines[0]
        processes.append(
            Process(path, header["function"], header.get("environment") or {}, lines[1:])
        )
    return processes


# --- Linking the test's resources to the template's -------------------------


_ARN = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:[^:]*:(?P<type>[^/:]+)[/:](?P<name>.+)$")


def _bounded(name: str, text: str) -> bool:
    """Whether `name` occurs in `text` as a whole, or between ``:``/``/``."""
    pattern = r"(?:(?<=[:/])|^)" + re.escape(name) + r"(?=$|[:/])"
    return re.search(pattern, text) is not None


def policy_values(statements: list[Statement]) -> list[str]:
    """Every resource and condition value the statements name."""
    values: list[str] = []
    for statement in statements:
        values += [str(r) for r in _as_list(statement.body.get("Resource"))]
        values += [str(r) for r in _as_list(statement.body.get("NotResource"))]
        for block in (statement.body.get("Condition") or {}).values():
            for condition_values in block.values():
                values += [str(v) for v in _as_list(condition_values)]
    return values


def links(
    test_env: dict[str, str], template_env: dict[str, str], named: list[str]
) -> dict[str, str | None]:
    """test value -> template value for each configuration variable that
    names a resource of the role's policies (its template value appears in
    one of `named`) and that the test set differently; None where one test
    value stands for two template values. An ARN's name is linked too (a
    cluster's ARN names it in its tasks' ARNs)."""
    pairs: dict[str, str | None] = {}

    def link(test: str, local: str) -> None:
        if not test or test == local:
            return
        if not any(_bounded(local, value) for value in named):
            return
        if test in pairs and pairs[test] != local:
            pairs[test] = None
        else:
            pairs[test] = local

    for key, local in template_env.items():
        test = test_env.get(key)
        if test is None:
            continue
        test_arn, local_arn = _ARN.match(test), _ARN.match(local)
        if test_arn and not local_arn:
            # The test gave an ARN where the template gives a name (a
            # cluster, a task definition's family:revision).
            link(test_arn["name"], local)
            continue
        link(test, local)
        if test_arn and local_arn and test_arn["type"] == local_arn["type"]:
            link(test_arn["name"], local_arn["name"])
    return pairs


def substitute(value: str, pairs: dict[str, str | None]) -> str:
    """The recorded value with the test's resources replaced by the
    template's: a whole value, or a name bounded by ``:`` or ``/`` in the
    resource part of an ARN."""
    if value in pairs:
        return _linked(value, pairs)
    if not value.startswith("arn:"):
        return value
    head = value.split(":", 5)
    if len(head) != 6:
        return value
    resource = head[5]
    for test in sorted(pairs, key=len, reverse=True):
        if _bounded(test, resource):
            pattern = r"(?:(?<=[:/])|^)" + re.escape(test) + r"(?=$|[:/])"
            resource = re.sub(pattern, lambda _: _linked(test, pairs), resource)
    return ":".join(head[:5] + [resource])


def _linked(test: str, pairs: dict[str, str | None]) -> str:
    local = pairs[test]
    if local is None:
        raise CheckError(f"the test used {test!r} for two different resources of the template")
    return local


# --- The check ---------------------------------------------------------------


@dataclass
class Report:
    denied: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def failed(self) -> bool:
        return bool(self.denied or self.problems or self.unused)


def matching_deployments(
    process: Process, roles: dict[str, FunctionRole]
) -> list[FunctionRole]:
    """The deployments whose configuration of the function has the optional
    variables the test set, and no others."""
    keys = {name: set(role.environment) for name, role in roles.items()}
    always = set.intersection(*keys.values())
    optional = set.union(*keys.values()) - always
    given = set(process.environment) & optional
    return [role for name, role in roles.items() if keys[name] & optional == given]


def check(
    templates: dict[str, dict[str, Any]],
    deployments: dict[str, list[dict[str, Any]]],
    processes: list[Process],
    drops: list[tuple[str, str]],
) -> Report:
    report = Report()
    # binary -> deployment name -> role
    by_binary: dict[str, dict[str, FunctionRole]] = defaultdict(dict)
    for name, template in templates.items():
        for deployment in deployments.get(name, []):
            for binary, role in function_roles(name, template, deployment).items():
                by_binary[binary][deployment["name"]] = role
    for function, action in drops:
        if function not in by_binary:
            raise CheckError(f"--drop {function}:{action}: no function {function} in the templates")
        if sum(drop_action(role, action) for role in by_binary[function].values()) == 0:
            raise CheckError(f"--drop {function}:{action}: {function}'s role does not grant {action}")

    used: set[tuple[str, str, str, str, str]] = set()
    exercised: set[tuple[str, str]] = set()
    matched: set[tuple[str, str]] = set()
    for process in processes:
        if not process.calls:
            continue
        roles = by_binary.get(process.function)
        if not roles:
            report.problems.append(
                f"{process.path.name}: {process.function} made AWS calls but no function of the "
                "templates runs that binary"
            )
            continue
        candidates = matching_deployments(process, roles)
        if not candidates:
            report.problems.append(
                f"{process.path.name}: no local deployment configures {process.function} with "
                f"the variables the test set ({', '.join(sorted(process.environment))}): add one "
                f"to {DEPLOYMENTS.relative_to(WORKSPACE)}"
            )
            continue
        for role in candidates:
            matched.add((process.function, role.deployment))
            pairs = links(process.environment, role.environment, role.named)
            for call in process.calls:
                _check_call(report, process, role, pairs, call, used, exercised)

    for binary, roles in sorted(by_binary.items()):
        for deployment in roles:
            if (binary, deployment) not in matched:
                report.problems.append(
                    f"{binary}: no recorded process matches the deployment {deployment!r}, so its "
                    "calls went unchecked (a test must run the function configured that way)"
                )
        _unused_grants(report, binary, list(roles.values()), used, exercised)
    return report


def _check_call(report, process, role, pairs, call, used, exercised) -> None:
    function = process.function
    if call.get("action") is None:
        report.problems.append(
            f"{function}: {call.get('service')}:{call.get('operation')} could not be mapped to IAM "
            f"({call.get('unmapped')}); seen in {process.path.name}"
        )
        return
    action = call["action"]
    try:
        context = {k: substitute(v, pairs) for k, v in (call.get("context") or {}).items()}
        resources = [substitute(r, pairs) for r in call.get("resources") or []]
    except CheckError as err:
        report.problems.append(f"{function}: {action}: {err}; seen in {process.path.name}")
        return
    exercised.add((function, action.lower()))
    for resource in resources:
        report.checked[function] += 1
        decision = evaluate(role.statements, Request(action, resource, context))
        if decision.allowed:
            for statement in decision.allowing:
                for pattern in _as_list(statement.body.get("Action")):
                    for index, granted in enumerate(_as_list(statement.body.get("Resource"))):
                        if action_matches(pattern, action) and arn_matches(granted, resource):
                            used.add((function, statement.sid, pattern, index))
            continue
        key = (function, role.deployment, action, resource, tuple(sorted(context.items())))
        entry = report.denied.setdefault(
            key,
            {
                "operation": call.get("operation"),
                "role": role.role,
                "denied_by": [s.sid for s in decision.denying],
                "seen": set(),
            },
        )
        entry["seen"].add(process.path.name)


def _unused_grants(report, binary, roles, used, exercised) -> None:
    """Grants that no recorded call used under any deployment (a grant is
    the same statement, action and resource position in each)."""
    grants: dict[tuple[str, str, int], list[tuple[Grant, FunctionRole]]] = defaultdict(list)
    for role in roles:
        for grant in role.grants():
            grants[grant.key].append((grant, role))
    role = roles[0]
    marked = {action.lower(): reason for action, reason in role.marked.items()}
    granted = {key[1].lower() for key in grants}
    for key, seen in grants.items():
        if (binary, *key) in used:
            continue
        grant = seen[0][0]
        if marked.get(grant.action.lower()) and (binary, grant.action.lower()) not in exercised:
            continue
        deployments = ", ".join(repr(r.deployment) for _, r in seen)
        report.unused.append(
            f"{binary}: {role.role} allows {grant.action} on {grant.resource} (statement "
            f"{grant.statement}; deployments {deployments}) but no recorded call uses it: "
            f"remove it, or list {grant.action} under Metadata.{MARKER} of {role.logical_id} "
            "with the reason AWS needs it"
        )
    for action, reason in role.marked.items():
        if not str(reason).strip():
            report.problems.append(f"{binary}: {MARKER} {action} gives no reason")
        if action.lower() not in granted:
            report.problems.append(
                f"{binary}: {MARKER} lists {action}, which {role.role} does not grant: remove it "
                "from the list"
            )
        elif (binary, action.lower()) in exercised:
            report.problems.append(
                f"{binary}: {MARKER} lists {action}, but kiln's own calls use it: remove it "
                "from the list, the record of calls covers it"
            )


def format_report(report: Report, processes: list[Process]) -> str:
    lines = []
    for (function, deployment, action, resource, context), entry in sorted(report.denied.items()):
        by = f"denied by {', '.join(entry['denied_by'])}" if entry["denied_by"] else "no statement allows it"
        with_context = "".join(f", {k}={v}" for k, v in context)
        needed = {"Effect": "Allow", "Action": action, "Resource": resource}
        lines.append(
            f"DENIED {function}: {action} on {resource}{with_context} ({entry['operation']}; {by}; "
            f"role {entry['role']}, deployment {deployment!r})\n"
            f"  needed: {json.dumps(needed)}\n"
            f"  seen in: {', '.join(sorted(entry['seen'])[:3])}"
            + (f" and {len(entry['seen']) - 3} more" if len(entry["seen"]) > 3 else "")
        )
    lines += [f"UNUSED {line}" for line in report.unused]
    lines += [f"ERROR {line}" for line in report.problems]
    with_calls = [p for p in processes if p.calls]
    summary = ", ".join(f"{f} {n}" for f, n in sorted(report.checked.items()))
    lines.append(
        f"check-iam: {len(with_calls)} function processes, {sum(len(p.calls) for p in with_calls)} "
        f"recorded authorisations; requests evaluated per function: {summary or 'none'}"
    )
    lines.append(
        "check-iam: FAILED" if report.failed else "check-iam: every recorded call is allowed, every grant is used"
    )
    return "\n".join(lines)


def load_templates(directory: Path | None) -> dict[str, dict[str, Any]]:
    names = [n for n in yaml.safe_load(DEPLOYMENTS.read_text())]
    if directory is not None:
        return {n: json.loads((directory / f"{Path(n).stem}.json").read_text()) for n in names}
    import logging

    import sam_transform

    # The translator's own usage metrics, printed when it is run as a library.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    return {n: sam_transform.transformed(n) for n in names}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=WORKSPACE / "target" / "iam-calls")
    parser.add_argument("--templates", type=Path)
    parser.add_argument("--drop", action="append", default=[], metavar="FUNCTION:ACTION")
    args = parser.parse_args(argv)
    try:
        drops = []
        for item in args.drop:
            function, sep, action = item.partition(":")
            if not sep or ":" not in action:
                raise CheckError(f"--drop {item!r}: expected FUNCTION:SERVICE:ACTION")
            drops.append((function, action))
        if not args.records.is_dir():
            raise CheckError(f"no record of calls in {args.records}: run the tests first (make test)")
        processes = load_records(args.records)
        deployments = yaml.safe_load(DEPLOYMENTS.read_text())
        report = check(load_templates(args.templates), deployments, processes, drops)
    except (CheckError, Unresolvable, UnsupportedPolicy) as err:
        print(f"check-iam: {err}", file=sys.stderr)
        return 2
    print(format_report(report, processes))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
