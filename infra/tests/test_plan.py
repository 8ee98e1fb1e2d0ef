"""The preview's pure parts: reading samconfig, building parameters, and
rendering nested change sets (with a recorded client, no AWS)."""

from __future__ import annotations

import sys

import pytest

from conftest import INFRA, raw

sys.path.insert(0, str(INFRA))
import plan  # noqa: E402


def test_every_environment_reads_with_a_stack_name_and_known_parameters():
    root_params = set(raw("template.yaml")["Parameters"])
    for env in ["dev", "staging", "production"]:
        config = plan.config_for(env)
        assert config["stack_name"] == f"kiln-{env}"
        assert set(plan.parse_overrides(config["parameter_overrides"])) <= root_params


def test_an_unknown_environment_is_named_in_the_error():
    with pytest.raises(SystemExit, match="no environment 'qa'"):
        plan.config_for("qa")


def test_overrides_are_read_as_sam_reads_them():
    parsed = plan.parse_overrides(["DeployBranches=main=production,release/*=staging", 'Subnets=""'])
    assert parsed == {"DeployBranches": "main=production,release/*=staging", "Subnets": ""}
    assert plan.parse_overrides('LogLevel=INFO AlertEmail="ops@example.com"') == {
        "LogLevel": "INFO",
        "AlertEmail": "ops@example.com",
    }
    # An unquoted empty value is what SAM itself rejects.
    with pytest.raises(Exception, match="not a valid format"):
        plan.parse_overrides(["Subnets="])


def test_parameters_not_overridden_keep_their_previous_value_when_the_stack_has_them():
    values = plan.parameters(["LogLevel", "AlertEmail", "NewOne"], {"LogLevel": "DEBUG"}, {"LogLevel", "AlertEmail"})
    assert values == [
        {"ParameterKey": "LogLevel", "ParameterValue": "DEBUG"},
        {"ParameterKey": "AlertEmail", "UsePreviousValue": True},
    ]


def test_tags():
    assert plan.parse_tags("project=kiln environment=dev") == [
        {"Key": "project", "Value": "kiln"},
        {"Key": "environment", "Value": "dev"},
    ]


class RecordedCloudFormation:
    """describe_change_set answers for a root change set with one nested part."""

    def __init__(self):
        self.pages = {
            ("root", None): {
                "Changes": [
                    {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "AlertTopic",
                                        "ResourceType": "AWS::SNS::Topic", "Replacement": "False"}},
                ],
                "NextToken": "page2",
            },
            ("root", "page2"): {
                "Changes": [
                    {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "DeployPipeline",
                                        "ResourceType": "AWS::CloudFormation::Stack", "ChangeSetId": "child"}},
                ],
            },
            ("child", None): {
                "Changes": [
                    {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "DeployTopic",
                                        "ResourceType": "AWS::SNS::Topic", "Replacement": "True"}},
                    {"ResourceChange": {"Action": "Add", "LogicalResourceId": "GitHubTokenSecret",
                                        "ResourceType": "AWS::SecretsManager::Secret"}},
                ],
            },
        }

    def describe_change_set(self, ChangeSetName, NextToken=None):
        return self.pages[(ChangeSetName, NextToken)]


def test_render_follows_pages_and_nested_change_sets_and_calls_out_replacements():
    assert plan.render(RecordedCloudFormation(), "root") == [
        "Modify  AlertTopic (AWS::SNS::Topic)",
        "Modify  DeployPipeline (AWS::CloudFormation::Stack)",
        "  Modify  DeployTopic (AWS::SNS::Topic)  REPLACED",
        "  Add     GitHubTokenSecret (AWS::SecretsManager::Secret)",
    ]


@pytest.mark.parametrize("env", ["dev", "production"])
def test_the_change_set_request_is_valid_for_cloudformation_and_includes_nested_stacks(env):
    import botocore.session
    from botocore.validate import validate_parameters

    config = plan.config_for(env)
    params = raw("template.yaml")["Parameters"].keys()
    request = plan.change_set_request(config, env, "kiln-plan-1", "{}", params, True, {"LogLevel", "AlertEmail"})
    model = botocore.session.get_session().get_service_model("cloudformation")
    validate_parameters(request, model.operation_model("CreateChangeSet").input_shape)
    assert request["IncludeNestedStacks"] is True
    assert "CAPABILITY_AUTO_EXPAND" in request["Capabilities"]
    assert {"ParameterKey": "AlertEmail", "UsePreviousValue": True} in request["Parameters"]
