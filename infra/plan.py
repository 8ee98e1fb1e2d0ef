"""Preview a kiln deploy: a CloudFormation change set, nested stacks included,
created and printed but never executed.

`sam deploy --no-execute-changeset` shows a nested stack only as "Modify",
which hides the blast radius. This creates the change set with
IncludeNestedStacks, prints every resource change of the root and of each
part (with replacements called out), and leaves it for review.

Usage (make plan ENV=... runs it after sam build and sam package):
    python plan.py --env dev --template .aws-sam/packaged-dev.yaml
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (SAM CLI's minimum): same loads()
    import tomlkit as tomllib
from pathlib import Path
from typing import Any, Iterable

INFRA = Path(__file__).resolve().parent


def config_for(env: str, path: Path = INFRA / "samconfig.toml") -> dict[str, Any]:
    """The deploy settings of one samconfig environment (global, then deploy)."""
    config = tomllib.loads(path.read_text())
    if env not in config:
        raise SystemExit(f"error: no environment {env!r} in {path} (have: {', '.join(sorted(config))})")
    section = config[env]
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(section.get(command, {}).get("parameters", {}))
    return merged


def parse_overrides(overrides: str | list[str] | None) -> dict[str, str]:
    """samconfig's parameter_overrides, read by SAM CLI's own parser (a list
    of Key=Value, or one string; quote empty values: Key="")."""
    from samcli.cli.types import CfnParameterOverridesType

    if not overrides:
        return {}
    return dict(CfnParameterOverridesType().convert(overrides, None, None))


def parse_tags(tags: str | list[str] | None) -> list[dict[str, str]]:
    items = (tags if isinstance(tags, list) else shlex.split(tags)) if tags else []
    return [dict(zip(("Key", "Value"), item.split("=", 1))) for item in items]


def parameters(template_params: Iterable[str], overrides: dict[str, str], stack_params: set[str]) -> list[dict]:
    """What sam deploy sends: the overrides, and the previous value of every
    other parameter the stack already has (the rest take their defaults)."""
    values = [{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()]
    for name in template_params:
        if name not in overrides and name in stack_params:
            values.append({"ParameterKey": name, "UsePreviousValue": True})
    return values


def change_set_request(config, env, name, body, template_params, exists, stack_params) -> dict[str, Any]:
    """The CreateChangeSet request: nested stacks included, so the preview
    shows every part's resources, not just "Modify <part>"."""
    return {
        "StackName": config["stack_name"],
        "ChangeSetName": name,
        "ChangeSetType": "UPDATE" if exists else "CREATE",
        "TemplateBody": body,
        "Parameters": parameters(template_params, parse_overrides(config.get("parameter_overrides")), stack_params),
        "Capabilities": str(config.get("capabilities", "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND")).split(),
        "Tags": parse_tags(config.get("tags")),
        "IncludeNestedStacks": True,
        "Description": f"make plan ENV={env}: preview only",
    }


def changes(client, change_set_id: str) -> list[dict[str, Any]]:
    """Every resource change of a change set, following pagination."""
    found, token = [], None
    while True:
        kwargs = {"ChangeSetName": change_set_id}
        if token:
            kwargs["NextToken"] = token
        page = client.describe_change_set(**kwargs)
        found.extend(c["ResourceChange"] for c in page.get("Changes", []) if "ResourceChange" in c)
        token = page.get("NextToken")
        if not token:
            return found


def render(client, change_set_id: str, depth: int = 0) -> list[str]:
    """One line per resource change, nested stacks' changes indented below them."""
    lines = []
    for change in changes(client, change_set_id):
        replacement = change.get("Replacement")
        note = {"True": "  REPLACED", "Conditional": "  may be replaced"}.get(replacement or "", "")
        lines.append(
            f"{'  ' * depth}{change['Action']:<7} {change['LogicalResourceId']} ({change['ResourceType']}){note}"
        )
        child = change.get("ChangeSetId")
        if child and change["ResourceType"] == "AWS::CloudFormation::Stack":
            lines.extend(render(client, child, depth + 1))
    return lines


def main(argv: list[str]) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--env", required=True)
    args.add_argument("--template", required=True, type=Path, help="the packaged template (sam package)")
    opts = args.parse_args(argv)

    import boto3  # only the real run needs AWS
    from botocore.exceptions import ClientError, WaiterError
    from samcli.yamlhelper import yaml_parse

    config = config_for(opts.env)
    stack = config["stack_name"]
    client = boto3.client("cloudformation", **({"region_name": config["region"]} if "region" in config else {}))
    body = opts.template.read_text()
    template_params = yaml_parse(body).get("Parameters", {}).keys()

    try:
        existing = client.describe_stacks(StackName=stack)["Stacks"][0]
        exists = existing["StackStatus"] != "REVIEW_IN_PROGRESS"
    except ClientError:
        existing, exists = None, False
    stack_params = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])} if exists else set()

    name = f"kiln-plan-{int(time.time())}"
    request = change_set_request(config, opts.env, name, body, template_params, exists, stack_params)
    change_set = client.create_change_set(**request)["Id"]
    print(f"==> change set {name} for stack {stack} ({'update' if exists else 'create'})")
    try:
        client.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change_set, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )
    except WaiterError:
        status = client.describe_change_set(ChangeSetName=change_set)
        reason = status.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates" in reason:
            print("No changes: the stack already matches the template and parameters.")
            client.delete_change_set(ChangeSetName=change_set)
            return 0
        print(f"error: the change set failed: {reason}", file=sys.stderr)
        return 1

    for line in render(client, change_set):
        print(line)
    print(f"\nNot executed. Review it in the CloudFormation console, then either run `make deploy ENV={opts.env}`")
    print(f"or execute exactly this change set: aws cloudformation execute-change-set --change-set-name {change_set}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
