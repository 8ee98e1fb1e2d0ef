"""IAM's evaluation rules (infra/iam/policy.py) on small policies: allowed,
and denied by action, by resource, by condition and by an explicit Deny."""

from __future__ import annotations

import pytest

from policy import Request, Statement, UnsupportedPolicy, arn_matches, evaluate

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/kiln-deploy"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/kiln-deploy/0f1e2d3c"


def policy(*bodies: dict) -> list[Statement]:
    return [Statement(f"s{i}", body) for i, body in enumerate(bodies)]


DESCRIBE_TASKS = policy(
    {
        "Effect": "Allow",
        "Action": ["ecs:DescribeTasks", "ecs:ListTagsForResource"],
        "Resource": "arn:aws:ecs:us-east-1:123456789012:task/kiln-deploy/*",
    }
)

LIST_TASKS_ON_ONE_CLUSTER = policy(
    {
        "Effect": "Allow",
        "Action": "ecs:ListTasks",
        "Resource": "*",
        "Condition": {"ArnEquals": {"ecs:cluster": CLUSTER}},
    }
)


def test_allowed_by_action_and_resource_wildcards():
    decision = evaluate(DESCRIBE_TASKS, Request("ecs:DescribeTasks", TASK))
    assert decision.allowed
    assert [s.sid for s in decision.allowing] == ["s0"]
    # Actions are case-insensitive, as in IAM.
    assert evaluate(DESCRIBE_TASKS, Request("ECS:describetasks", TASK)).allowed


def test_denied_by_action():
    decision = evaluate(DESCRIBE_TASKS, Request("ecs:StopTask", TASK))
    assert not decision.allowed
    assert decision.allowing == [] and decision.denying == []


def test_denied_by_resource():
    other_cluster = "arn:aws:ecs:us-east-1:123456789012:task/apps/0f1e2d3c"
    assert not evaluate(DESCRIBE_TASKS, Request("ecs:DescribeTasks", other_cluster)).allowed
    other_account = TASK.replace("123456789012", "210987654321")
    assert not evaluate(DESCRIBE_TASKS, Request("ecs:DescribeTasks", other_account)).allowed
    # An action without resource-level permissions is requested on "*":
    # only Resource "*" grants it.
    assert not evaluate(DESCRIBE_TASKS, Request("ecs:DescribeTasks", "*")).allowed


def test_denied_by_condition():
    allowed = Request("ecs:ListTasks", "*", {"ecs:cluster": CLUSTER})
    assert evaluate(LIST_TASKS_ON_ONE_CLUSTER, allowed).allowed
    other = Request("ecs:ListTasks", "*", {"ecs:cluster": CLUSTER.replace("kiln-deploy", "apps")})
    assert not evaluate(LIST_TASKS_ON_ONE_CLUSTER, other).allowed
    # A key the request does not carry fails a positive operator.
    assert not evaluate(LIST_TASKS_ON_ONE_CLUSTER, Request("ecs:ListTasks", "*")).allowed
    # Condition keys are case-insensitive.
    mixed_case = Request("ecs:ListTasks", "*", {"ECS:Cluster": CLUSTER})
    assert evaluate(LIST_TASKS_ON_ONE_CLUSTER, mixed_case).allowed


def test_an_explicit_deny_wins_over_any_allow():
    statements = policy(
        {"Effect": "Allow", "Action": "sns:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "sns:Publish",
            "Resource": "arn:aws:sns:us-east-1:123456789012:kiln-*",
            "Condition": {"StringNotEquals": {"aws:PrincipalTag/team": "platform"}},
        },
    )
    publish = Request("sns:Publish", "arn:aws:sns:us-east-1:123456789012:kiln-deploy")
    decision = evaluate(statements, publish)
    assert not decision.allowed
    assert [s.sid for s in decision.denying] == ["s1"]
    # The negated operator passes when the key is missing, so the Deny
    # applies; with the key set to the excepted value it does not.
    tagged = Request(publish.action, publish.resource, {"aws:PrincipalTag/team": "platform"})
    assert evaluate(statements, tagged).allowed


def test_string_like_if_exists_and_not_resource():
    statements = policy(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "NotResource": "arn:aws:iam::123456789012:role/admin*",
            "Condition": {"StringLikeIfExists": {"iam:PassedToService": "ecs-tasks.*"}},
        }
    )
    role = "arn:aws:iam::123456789012:role/StackUpdaterTaskRole"
    assert evaluate(statements, Request("iam:PassRole", role)).allowed
    assert evaluate(
        statements, Request("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    ).allowed
    assert not evaluate(
        statements, Request("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    ).allowed
    assert not evaluate(
        statements, Request("iam:PassRole", "arn:aws:iam::123456789012:role/admin-full")
    ).allowed


def test_arn_wildcards_stay_within_their_part_except_in_the_resource():
    assert arn_matches("arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:*",
                       "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:log-stream:s/1")
    assert not arn_matches("arn:aws:logs:*:log-group:/ecs/u:*",
                           "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:*")
    assert arn_matches("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/apps",
                       "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:5d2c:autoScalingGroupName/apps")
    assert not arn_matches("arn:aws:sns:us-east-1:123456789012:kiln-?",
                           "arn:aws:sns:us-east-1:123456789012:kiln-ab")


def test_what_is_not_implemented_fails_loudly():
    for condition in (
        {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}},
    ):
        statements = policy({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition})
        with pytest.raises(UnsupportedPolicy):
            evaluate(statements, Request("sns:Publish", "*", {"aws:MultiFactorAuthAge": "1"}))
    variables = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"})
    with pytest.raises(UnsupportedPolicy):
        evaluate(variables, Request("s3:GetObject", "arn:aws:s3:::b/x/y"))
