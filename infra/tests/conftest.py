"""Shared loading for the template tests: raw SAM templates, their functions
with Globals merged in, and the CloudFormation the offline transform makes."""

from __future__ import annotations

import copy
import functools
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (SAM CLI's minimum): same loads()
    import tomlkit as tomllib
from pathlib import Path
from typing import Any

import pytest

import sam_transform

INFRA = sam_transform.INFRA
WORKSPACE = INFRA.parent
PARTS = ["deploy-pipeline.yaml", "watchdog.yaml", "alerts.yaml"]
ALL_TEMPLATES = sam_transform.TEMPLATES

# Events through which AWS invokes a function asynchronously.
ASYNC_EVENT_TYPES = {"SNS", "EventBridgeRule", "CloudWatchEvent", "Schedule", "ScheduleV2", "S3"}


@functools.cache
def raw(name: str) -> dict[str, Any]:
    return sam_transform.load(name)


@functools.cache
def cfn(name: str) -> dict[str, Any]:
    return sam_transform.transformed(name)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == kind}


def functions(name: str) -> dict[str, dict[str, Any]]:
    """A part's SAM functions, each with its Globals merged in (maps merge
    key by key, the function's own value wins), as SAM does."""
    template = raw(name)
    globals_fn = template.get("Globals", {}).get("Function", {})
    merged = {}
    for logical_id, resource in resources(template, "AWS::Serverless::Function").items():
        props = copy.deepcopy(globals_fn)
        for key, value in (resource.get("Properties") or {}).items():
            if isinstance(value, dict) and isinstance(props.get(key), dict):
                props[key] = {**props[key], **value}
            else:
                props[key] = value
        merged[logical_id] = {**resource, "Properties": props}
    return merged


def all_functions() -> dict[tuple[str, str], dict[str, Any]]:
    return {(part, fid): fn for part in PARTS for fid, fn in functions(part).items()}


def binary(fn: dict[str, Any]) -> str:
    return fn["Metadata"]["BuildProperties"]["Binary"]


def is_async(fn: dict[str, Any]) -> bool:
    events = fn["Properties"].get("Events", {})
    return any(e.get("Type") in ASYNC_EVENT_TYPES for e in events.values())


def workspace_function_binaries() -> set[str]:
    """The [[bin]] names of the workspace members under functions/."""
    members = tomllib.loads((WORKSPACE / "Cargo.toml").read_text())["workspace"]["members"]
    names = set()
    for member in members:
        if not member.startswith("functions/"):
            continue
        manifest = tomllib.loads((WORKSPACE / member / "Cargo.toml").read_text())
        bins = manifest.get("bin") or [{"name": manifest["package"]["name"]}]
        names.update(b["name"] for b in bins)
    return names


def walk(node: Any):
    """Every dict and list below node, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def strip_ifs(node: Any) -> list[Any]:
    """The possible values of a node that may be an Fn::If (AWS::NoValue dropped)."""
    if isinstance(node, dict) and "Fn::If" in node:
        return strip_ifs(node["Fn::If"][1]) + strip_ifs(node["Fn::If"][2])
    if node == {"Ref": "AWS::NoValue"}:
        return []
    return [node]


def as_list(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


@pytest.fixture(params=ALL_TEMPLATES)
def template_name(request) -> str:
    return request.param


@pytest.fixture(params=PARTS)
def part(request) -> str:
    return request.param


def repo_path(*parts: str) -> Path:
    return WORKSPACE.joinpath(*parts)
