"""checkov in `make check-templates` (tools/checkov.sh on the transformed
templates): each check kiln does not follow is skipped inline with a reason,
and a finding that is neither fixed nor skipped fails the scan."""

from __future__ import annotations

import copy
import json
import subprocess

from conftest import ALL_TEMPLATES, WORKSPACE, cfn, raw


def skips(name: str) -> list[tuple[str, dict]]:
    out = []
    for logical_id, resource in raw(name).get("Resources", {}).items():
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
            out.append((logical_id, skip))
    return out


def test_every_checkov_skip_names_a_check_and_gives_a_one_line_reason():
    found = 0
    for name in ALL_TEMPLATES:
        for logical_id, skip in skips(name):
            found += 1
            assert set(skip) == {"id", "comment"}, (name, logical_id, skip)
            assert skip["id"].startswith("CKV_"), (name, logical_id, skip)
            comment = str(skip["comment"])
            assert 30 <= len(comment) <= 200 and "\n" not in comment, (name, logical_id, skip)
    assert found > 0


def test_checkov_skips_reach_the_transformed_templates():
    # SAM copies a function's Metadata to the AWS::Lambda::Function, which
    # is what checkov scans.
    for name in ("deploy-pipeline.yaml", "watchdog.yaml", "alerts.yaml"):
        functions = [
            r for r in cfn(name)["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
        ]
        assert functions and all(f["Metadata"]["checkov"]["skip"] for f in functions), name


def test_a_finding_neither_fixed_nor_skipped_fails_the_scan(tmp_path):
    alerts = copy.deepcopy(cfn("alerts.yaml"))
    # Not fixed: the dead-letter queue loses its encryption.
    del alerts["Resources"]["AlertForwarderDeadLetterQueue"]["Properties"]["KmsMasterKeyId"]
    # Not skipped: the function loses its written decisions.
    del alerts["Resources"]["AlertForwarderFunction"]["Metadata"]["checkov"]
    (tmp_path / "alerts.json").write_text(json.dumps(alerts))
    scan = subprocess.run(
        [str(WORKSPACE / "tools" / "checkov.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scan.returncode != 0, scan.stdout + scan.stderr
    assert "CKV_AWS_27" in scan.stdout and "AlertForwarderDeadLetterQueue" in scan.stdout, scan.stdout
    assert "CKV_AWS_117" in scan.stdout and "AlertForwarderFunction" in scan.stdout, scan.stdout

