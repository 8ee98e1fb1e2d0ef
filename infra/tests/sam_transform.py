"""Offline SAM transform of kiln's templates.

cfn-lint validates SAM resources against SAM's schemas but does not run the
transform, so it misses a dangling !Ref/!GetAtt, a bad Runtime and more. This
module runs aws-sam-translator locally (no AWS account, no network) and
writes plain CloudFormation, which cfn-lint then checks for real.

Usage: python sam_transform.py TEMPLATE.yaml OUT.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

INFRA = Path(__file__).resolve().parent.parent
TEMPLATES = ["template.yaml", "deploy-pipeline.yaml", "watchdog.yaml", "alerts.yaml"]

# What `sam package` would upload; the translator only needs their shape.
OFFLINE_CODE_URI = "s3://kiln-offline-check/code.zip"
OFFLINE_TEMPLATE_URL = "https://s3.amazonaws.com/kiln-offline-check/{name}"


class _NoManagedPolicies:
    """The translator looks managed policy names up in IAM; kiln names none."""

    def load(self) -> dict[str, str]:
        return {}


def load(name: str) -> dict[str, Any]:
    """Parses one template (short-form tags become long-form intrinsics).

    `name` is a file in infra/, or any path.
    """
    path = INFRA / name if (INFRA / name).is_file() else Path(name)
    return yaml_parse(path.read_text())


def _as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Rewrites local paths the way `sam package` would."""
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Application":
            location = props.get("Location")
            if isinstance(location, str) and not location.startswith("https://"):
                props["Location"] = OFFLINE_TEMPLATE_URL.format(name=Path(location).name)
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = OFFLINE_CODE_URI
    globals_fn = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        globals_fn["CodeUri"] = OFFLINE_CODE_URI
    return template


def transformed(name: str) -> dict[str, Any]:
    """The CloudFormation that one template becomes."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(_as_packaged(load(name)), {}, _NoManagedPolicies())


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = transformed(argv[1])
    Path(argv[2]).write_text(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
