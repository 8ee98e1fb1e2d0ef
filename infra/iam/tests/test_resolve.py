"""Intrinsic functions resolved for a local deployment (infra/iam/resolve.py)."""

from __future__ import annotations

import pytest

from resolve import NO_VALUE, Resolver, Unresolvable

TEMPLATE = {
    "Parameters": {
        "StackName": {"Type": "String"},
        "ClusterArn": {"Type": "String", "Default": ""},
        "TaskDefinition": {"Type": "String", "Default": ""},
    },
    "Conditions": {
        "HasCluster": {"Fn::Not": [{"Fn::Equals": [{"Ref": "ClusterArn"}, ""]}]},
        "CreateTaskDefinition": {"Fn::Equals": [{"Ref": "TaskDefinition"}, ""]},
        "Both": {"Fn::And": [{"Condition": "HasCluster"}, {"Condition": "CreateTaskDefinition"}]},
    },
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": "${StackName}-deploy"}}},
        "Updater": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Family": "updater"}},
        "TaskRole": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/ecs/u"}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
    },
}


def resolver(**parameters: str) -> Resolver:
    return Resolver(TEMPLATE, {"StackName": "kiln", **parameters}, "kiln-part")


def test_refs_names_and_arns():
    r = resolver()
    assert r.value({"Ref": "Topic"}) == "arn:aws:sns:us-east-1:123456789012:kiln-deploy"
    assert r.value({"Fn::GetAtt": ["Topic", "TopicName"]}) == "kiln-deploy"
    assert r.value({"Fn::GetAtt": "TaskRole.Arn"}) == "arn:aws:iam::123456789012:role/TaskRole"
    assert r.value({"Fn::GetAtt": ["Logs", "Arn"]}) == "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:*"
    assert r.value({"Fn::GetAtt": ["Queue", "QueueName"]}) == "kiln-part-Queue"
    family = {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "Updater"}]}]}
    assert r.value(family) == "updater:1"


def test_sub_join_and_conditions():
    r = resolver(ClusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/apps")
    sub = {"Fn::Sub": ["arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${Name}/*",
                       {"Name": {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "ClusterArn"}]}]}}]}
    assert r.value(sub) == "arn:aws:ecs:us-east-1:123456789012:task/apps/*"
    assert r.value({"Fn::Sub": "${!Literal}-${AWS::StackName}"}) == "${Literal}-kiln-part"
    assert r.value({"Fn::Join": [",", ["a", {"Ref": "StackName"}]]}) == "a,kiln"
    assert r.condition("Both")
    assert not resolver(ClusterArn="", TaskDefinition="t:1").condition("Both")


def test_no_value_disappears():
    r = resolver()
    node = [
        "kept",
        {"Fn::If": ["HasCluster", "cluster", {"Ref": "AWS::NoValue"}]},
    ]
    assert r.value(node) == ["kept"]
    assert r.value({"A": {"Ref": "AWS::NoValue"}, "B": 1}) == {"B": 1}
    assert r.value({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_what_cannot_be_resolved_is_named():
    with pytest.raises(Unresolvable, match="Fn::ImportValue"):
        resolver().value({"Fn::ImportValue": "x"})
    with pytest.raises(Unresolvable, match="Missing"):
        resolver().value({"Ref": "Missing"})
    with pytest.raises(Unresolvable, match="unknown parameters"):
        Resolver(TEMPLATE, {"StackName": "kiln", "Typo": "x"}, "s")
