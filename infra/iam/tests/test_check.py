"""The checker against the real record of calls (make check-iam writes it
before it runs these) and mutated copies of the transformed templates: a
needed action removed must fail, naming it; an unused grant must be
reported; and so must a call the templates do not allow."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

import check
import sam_transform

WORKSPACE = Path(__file__).resolve().parents[3]
RECORDS = Path(os.environ.get("KILN_CALL_RECORD_DIR") or WORKSPACE / "target" / "iam-calls")

# One action each function needs, per function.
NEEDED = [
    ("deploy-trigger", "sns:Publish"),
    ("deploy-exec", "ecs:RunTask"),
    ("watchdog", "autoscaling:SetDesiredCapacity"),
    ("alert-forwarder", "secretsmanager:GetSecretValue"),
]


@pytest.fixture(scope="module")
def records() -> Path:
    if not (RECORDS / ".complete").is_file():
        pytest.fail(f"no complete record of calls in {RECORDS}: run `make check-iam` (it records first)")
    return RECORDS


@pytest.fixture(scope="module")
def transformed() -> dict[str, dict[str, Any]]:
    names = check.yaml.safe_load(check.DEPLOYMENTS.read_text())
    return {name: sam_transform.transformed(name) for name in names}


def write(templates: dict[str, dict[str, Any]], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, template in templates.items():
        (directory / f"{Path(name).stem}.json").write_text(json.dumps(template))
    return directory


def run(capsys, records: Path, templates: Path, *extra: str) -> tuple[int, str]:
    code = check.main(["--records", str(records), "--templates", str(templates), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def function_of(templates: dict[str, dict[str, Any]], binary: str) -> tuple[dict, dict]:
    """(Lambda function resource, its role resource) running `binary`."""
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            if resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == binary:
                role_id = resource["Properties"]["Role"]["Fn::GetAtt"][0]
                return resource, template["Resources"][role_id]
    raise AssertionError(f"no function runs {binary}")


def remove_action(node: Any, action: str) -> int:
    """Removes `action` from every Action list below node; returns how many."""
    removed = 0
    if isinstance(node, dict):
        actions = node.get("Action")
        if isinstance(actions, str) and actions == action:
            node["Action"] = []
            removed += 1
        elif isinstance(actions, list) and action in actions:
            node["Action"] = [a for a in actions if a != action]
            removed += 1
        for value in node.values():
            removed += remove_action(value, action)
    elif isinstance(node, list):
        for value in node:
            removed += remove_action(value, action)
    return removed


def test_every_recorded_call_passes_on_the_current_templates(capsys, records, transformed, tmp_path):
    code, out = run(capsys, records, write(transformed, tmp_path))
    assert code == 0, out
    assert "every recorded call is allowed, every grant is used" in out
    # The record is real: every function made calls that were evaluated.
    for function, _ in NEEDED:
        assert f"{function} " in out.splitlines()[-2], out


@pytest.mark.parametrize(("function", "action"), NEEDED)
def test_a_needed_action_removed_from_a_copy_of_the_template_fails_naming_it(
    capsys, records, transformed, tmp_path, function, action
):
    mutated = copy.deepcopy(transformed)
    _, role = function_of(mutated, function)
    assert remove_action(role["Properties"]["Policies"], action) >= 1
    code, out = run(capsys, records, write(mutated, tmp_path))
    assert code == 1, out
    assert f"DENIED {function}: {action} on " in out, out
    assert '"Action": "' + action + '"' in out, "the statement it would need is shown"


@pytest.mark.parametrize(("function", "action"), NEEDED)
def test_iam_drop_fails_naming_the_action(capsys, records, transformed, tmp_path, function, action):
    code, out = run(capsys, records, write(transformed, tmp_path), "--drop", f"{function}:{action}")
    assert code == 1, out
    assert f"DENIED {function}: {action} on " in out, out


def test_iam_drop_of_an_action_the_role_does_not_grant_is_an_error(capsys, records, transformed, tmp_path):
    code, out = run(capsys, records, write(transformed, tmp_path), "--drop", "watchdog:ecs:RunTask")
    assert code == 2, out
    assert "does not grant ecs:RunTask" in out


def test_an_unused_grant_is_reported(capsys, records, transformed, tmp_path):
    mutated = copy.deepcopy(transformed)
    _, role = function_of(mutated, "watchdog")
    role["Properties"]["Policies"].append(
        {
            "PolicyName": "Extra",
            "PolicyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "ecs:StopTask", "Resource": "*"}]
            },
        }
    )
    code, out = run(capsys, records, write(mutated, tmp_path))
    assert code == 1, out
    assert "UNUSED watchdog: WatchdogFunctionRole allows ecs:StopTask on * (statement Extra[0]" in out, out


def test_a_grant_marked_unexercised_that_kiln_calls_is_an_error(capsys, records, transformed, tmp_path):
    mutated = copy.deepcopy(transformed)
    function, _ = function_of(mutated, "deploy-trigger")
    function["Metadata"]["UnexercisedGrants"]["sns:Publish"] = "not true"
    code, out = run(capsys, records, write(mutated, tmp_path))
    assert code == 1, out
    assert "UnexercisedGrants lists sns:Publish, but kiln's own calls use it" in out, out


def fake_record(directory: Path, function: str, environment: dict[str, str], *calls: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [{"record": "process", "function": function, "environment": environment}]
    lines += [{"record": "call", "function": function, "status": 200, "context": {}, **c} for c in calls]
    (directory / f"{function}-1-0.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    return directory


def test_a_call_outside_the_granted_resource_or_condition_is_denied(capsys, transformed, tmp_path):
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/apps-test"
    other = "arn:aws:ecs:us-east-1:123456789012:cluster/someone-else"
    records = fake_record(
        tmp_path / "records",
        "watchdog",
        {"ASG_NAME": "apps-test", "CLUSTER_ARN": cluster, "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t"},
        # Allowed: the watched cluster (the test's, linked to the template's).
        {"service": "ecs", "operation": "ListTasks", "action": "ecs:ListTasks",
         "resources": ["*"], "context": {"ecs:cluster": cluster}},
        # Denied by condition: another cluster.
        {"service": "ecs", "operation": "ListTasks", "action": "ecs:ListTasks",
         "resources": ["*"], "context": {"ecs:cluster": other}},
        # Denied by resource: another group.
        {"service": "autoscaling", "operation": "SetDesiredCapacity", "action": "autoscaling:SetDesiredCapacity",
         "resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/other"]},
        # Unmapped.
        {"service": "ecs", "operation": "DeleteCluster", "action": None, "unmapped": "no IAM mapping"},
    )
    code, out = run(capsys, records, write(transformed, tmp_path / "templates"))
    assert code == 1, out
    assert f"DENIED watchdog: ecs:ListTasks on *, ecs:cluster={other}" in out, out
    assert "cluster/apps, " not in out.split("DENIED watchdog: ecs:ListTasks")[1].split("\n")[0]
    assert "DENIED watchdog: autoscaling:SetDesiredCapacity on arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/other" in out
    assert "ERROR watchdog: ecs:DeleteCluster could not be mapped to IAM" in out
    assert f"ecs:cluster={cluster}" not in out, "the test's cluster is linked to the template's"
