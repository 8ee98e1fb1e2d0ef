"""Invariants of kiln's SAM templates: what must stay true whatever else
changes (runtime and build, reliability, least privilege, secrets, the
function contracts, the root's wiring)."""

from __future__ import annotations

import itertools
import json
import re
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (SAM CLI's minimum): same loads()
    import tomlkit as tomllib

import pytest

from conftest import (
    INFRA,
    PARTS,
    WORKSPACE,
    all_functions,
    as_list,
    binary,
    cfn,
    functions,
    is_async,
    raw,
    resources,
    strip_ifs,
    walk,
    workspace_function_binaries,
)

# The environment each function reads (names fixed by the functions' docs):
# (required, optional).
ENV_CONTRACT = {
    "deploy-trigger": (
        {"WEBHOOK_SECRET_ARN", "DEPLOY_TOPIC_ARN"},
        {"DEPLOY_BRANCHES", "DEPLOY_TAGS", "DEPLOY_PATHS", "ALLOWED_REPOSITORIES"},
    ),
    "deploy-exec": (
        {"CLUSTER", "TASK_DEFINITION", "CONTAINER_NAME", "SUBNETS", "SECURITY_GROUPS"},
        {
            "ASSIGN_PUBLIC_IP",
            "LAUNCH_TYPE",
            "CAPACITY_PROVIDER",
            "TASK_ENVIRONMENT",
            "GITHUB_TOKEN_SECRET_ARN",
            "GITHUB_API_URL",
            "LANES_TABLE",
            "NOTIFY_TOPIC_ARN",
            "NOTIFY_DEPLOYS",
        },
    ),
    "watchdog": (
        {"ASG_NAME", "ALERT_TOPIC_ARN"},
        {"CLUSTER_ARN", "CRASH_LOOP_THRESHOLD", "CRASH_LOOP_WINDOW_MINUTES", "SCALE_DOWN_ALARMS"},
    ),
    "alert-forwarder": (
        {"SLACK_WEBHOOK_SECRET_ARN"},
        {"SLACK_MENTION", "NOTIFY_OK", "REFIRE_AFTER_MINUTES", "REFIRE_ALARM_PREFIX", "REFIRE_SCHEDULE_MINUTES"},
    ),
}

# Actions that have no resource-level permissions, so AWS requires
# Resource "*" for them. Anything else must name its resources.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "autoscaling:DescribeAutoScalingGroups",
    "ecs:ListTasks",
    "ecs:DescribeTaskDefinition",
}

KILN_METRICS = {"DeploysRequested", "DeploysSkipped", "DeploysStarted", "DeploysFinished", "ScaleDowns", "SlackDeliveries"}


def env_of(fn):
    return fn["Properties"].get("Environment", {}).get("Variables", {})


def by_binary():
    return {binary(fn): (part, fn) for (part, _), fn in all_functions().items()}


def getatt(node):
    """(logical id, attribute) of an Fn::GetAtt, else None."""
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        value = node["Fn::GetAtt"]
        return tuple(value) if isinstance(value, list) else tuple(value.split(".", 1))
    return None


# ------------------------------------------------------------ runtime, build


def test_there_are_four_functions_one_per_workspace_binary():
    names = [binary(fn) for fn in all_functions().values()]
    assert sorted(names) == sorted(set(names)), "a binary is built twice"
    assert set(names) == workspace_function_binaries()
    assert len(names) == 4


def test_functions_are_rust_on_arm64_provided_al2023():
    for (part, fid), fn in all_functions().items():
        props = fn["Properties"]
        assert props["Runtime"] == "provided.al2023", (part, fid)
        assert props["Architectures"] == ["arm64"], (part, fid)
        assert props["Handler"] == "bootstrap", (part, fid)
        assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda", (part, fid)


def test_code_uri_is_the_workspace_root_for_every_function():
    for (part, fid), fn in all_functions().items():
        code = (INFRA / fn["Properties"]["CodeUri"]).resolve()
        assert code == WORKSPACE, (part, fid, code)
    manifest = tomllib.loads((WORKSPACE / "Cargo.toml").read_text())
    assert "workspace" in manifest


def test_memory_and_timeout_are_chosen():
    for (part, fid), fn in all_functions().items():
        props = fn["Properties"]
        assert props["MemorySize"] == 128, (part, fid)
        assert isinstance(props.get("Timeout"), int) and 1 <= props["Timeout"] <= 120, (part, fid)
    # GitHub waits 10 s for a webhook answer; the receiver must fail before that.
    _, trigger = by_binary()["deploy-trigger"]
    assert trigger["Properties"]["Timeout"] <= 10


def test_logs_are_json_with_the_level_as_a_parameter():
    for part in PARTS:
        level = raw(part)["Parameters"]["LogLevel"]
        # Lambda files EMF lines (no "level") as INFO: a WARN filter would drop metrics.
        assert set(level["AllowedValues"]) <= {"TRACE", "DEBUG", "INFO"}
        for fid, fn in functions(part).items():
            logging = fn["Properties"]["LoggingConfig"]
            assert logging["LogFormat"] == "JSON", (part, fid)
            assert logging["ApplicationLogLevel"] == {"Ref": "LogLevel"}, (part, fid)
            group = logging["LogGroup"]["Ref"]
            assert resources(raw(part), "AWS::Logs::LogGroup")[group]["Properties"]["RetentionInDays"]
    assert set(raw("template.yaml")["Parameters"]["LogLevel"]["AllowedValues"]) <= {"TRACE", "DEBUG", "INFO"}


# --------------------------------------------------------------- reliability


def test_every_async_function_retries_twice_then_dead_letters_with_an_alarm():
    async_functions = 0
    for (part, fid), fn in all_functions().items():
        if not is_async(fn):
            continue
        async_functions += 1
        template = raw(part)
        config = fn["Properties"]["EventInvokeConfig"]
        assert config["MaximumRetryAttempts"] == 2, (part, fid)
        on_failure = config["DestinationConfig"]["OnFailure"]
        assert on_failure["Type"] == "SQS", (part, fid)
        queue, attr = getatt(on_failure["Destination"])
        assert attr == "Arn"
        assert queue in resources(template, "AWS::SQS::Queue"), (part, fid, queue)

        alarms = [
            a["Properties"]
            for a in resources(template, "AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("Namespace") == "AWS/SQS"
            and a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and any(getatt(d["Value"]) == (queue, "QueueName") for d in a["Properties"]["Dimensions"])
        ]
        assert len(alarms) == 1, (part, fid, "no depth alarm on", queue)
        assert {"Ref": "AlertTopicArn"} in alarms[0]["AlarmActions"]
        assert alarms[0]["Threshold"] == 1

        # Delivery failures before the function runs land in the same queue.
        for eid, event in fn["Properties"]["Events"].items():
            props = event.get("Properties", {})
            if event["Type"] == "SNS":
                target = props["RedrivePolicy"]["deadLetterTargetArn"]
                assert getatt(target) == (queue, "Arn"), (part, fid, eid)
            if event["Type"] in {"EventBridgeRule", "Schedule"}:
                assert getatt(props["DeadLetterConfig"]["Arn"]) == (queue, "Arn"), (part, fid, eid)
                assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        policies = [
            p
            for p in resources(template, "AWS::SQS::QueuePolicy").values()
            if {"Ref": queue} in p["Properties"]["Queues"]
        ]
        assert len(policies) == 1, (part, fid, "no queue policy lets SNS/EventBridge dead-letter")
    assert async_functions == 3


def test_every_sns_subscription_and_rule_target_dead_letters():
    for part in PARTS:
        template = raw(part)
        for sid, sub in resources(template, "AWS::SNS::Subscription").items():
            assert sub["Properties"]["RedrivePolicy"]["deadLetterTargetArn"], (part, sid)
        for rid, rule in resources(template, "AWS::Events::Rule").items():
            for target in rule["Properties"]["Targets"]:
                assert target["DeadLetterConfig"]["Arn"], (part, rid)
    # In the generated CloudFormation: every subscription, whatever its protocol.
    subscriptions = 0
    for name in ["template.yaml", *PARTS]:
        for sid, sub in resources(cfn(name), "AWS::SNS::Subscription").items():
            subscriptions += 1
            target = sub["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
            queue = getatt(target)[0]
            assert resources(cfn(name), "AWS::SQS::Queue")[queue], (name, sid)
    assert subscriptions >= 4


def test_queues_and_topics_are_encrypted():
    for name in ["template.yaml", *PARTS]:
        template = raw(name)
        for qid, queue in resources(template, "AWS::SQS::Queue").items():
            props = queue["Properties"]
            assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), (name, qid)
        for tid, topic in resources(template, "AWS::SNS::Topic").items():
            assert topic["Properties"].get("KmsMasterKeyId"), (name, tid)


def test_the_kms_key_lets_cloudwatch_alarms_publish_to_encrypted_topics():
    key = resources(raw("template.yaml"), "AWS::KMS::Key")["Key"]["Properties"]
    principals = [s["Principal"] for s in key["KeyPolicy"]["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    assert key["EnableKeyRotation"] is True


# ------------------------------------------------------------------ security


def policy_documents(template):
    """(where, document) for every IAM, queue, topic and key policy."""
    for rid, r in template["Resources"].items():
        props = r.get("Properties", {})
        kind = r["Type"]
        if kind == "AWS::IAM::Role":
            yield f"{rid} trust", props["AssumeRolePolicyDocument"]
            for policy in props.get("Policies", []):
                for doc in strip_ifs(policy):
                    yield f"{rid} {doc['PolicyName']}", doc["PolicyDocument"]
        elif kind in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"}:
            yield rid, props["PolicyDocument"]
        elif kind == "AWS::KMS::Key":
            yield rid, props["KeyPolicy"]


def statements(document):
    for statement in as_list(document["Statement"]):
        yield from strip_ifs(statement)


def role_statements(template):
    for where, doc in policy_documents(template):
        if where.endswith(" trust") or " " not in where:
            continue
        yield where, from_statements(doc)


def from_statements(doc):
    return list(statements(doc))


@pytest.mark.parametrize("name", ["template.yaml", *PARTS])
def test_no_policy_grants_star_actions(name):
    for where, doc in policy_documents(cfn(name)):
        for st in statements(doc):
            if st["Effect"] != "Allow":
                continue
            actions = as_list(st["Action"])
            assert "*" not in actions, where
            if not where.startswith("Key"):
                # Only a key policy's administrator statement may use a
                # service-wide wildcard ("kms:*", on that key alone).
                assert not any(a.endswith(":*") for a in actions), (where, actions)


@pytest.mark.parametrize("name", PARTS)
def test_star_resources_only_where_aws_requires_them_and_commented(name):
    for where, statements_ in role_statements(cfn(name)):
        for st in statements_:
            if "*" in as_list(st.get("Resource", [])):
                assert set(as_list(st["Action"])) <= STAR_RESOURCE_ACTIONS, (where, st["Action"])
    # Each such statement carries the reason in a comment just above it.
    lines = (INFRA / name).read_text().splitlines()
    for i, line in enumerate(lines):
        if re.search(r'Resource: "\*"', line):
            above = lines[max(0, i - 8) : i]
            assert any(l.strip().startswith("#") for l in above), (name, i + 1)


@pytest.mark.parametrize("name", PARTS)
def test_function_roles_use_no_managed_policy_but_basic_logging(name):
    for rid, role in resources(cfn(name), "AWS::IAM::Role").items():
        if not rid.endswith("FunctionRole"):
            continue
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = json.dumps(arn)
            assert "AWSLambdaBasicExecutionRole" in text, (rid, text)


def test_policy_templates_take_topic_names_not_arns():
    found = 0
    for (part, fid), fn in all_functions().items():
        for policy in fn["Properties"].get("Policies", []):
            for p in strip_ifs(policy):
                if isinstance(p, dict) and "SNSPublishMessagePolicy" in p:
                    found += 1
                    name = p["SNSPublishMessagePolicy"]["TopicName"]
                    assert getatt(name) and getatt(name)[1] == "TopicName" or "Fn::Select" in name, (part, fid)
    assert found == 2


def test_deploy_exec_runs_exactly_one_task_definition_revision_and_passes_only_its_roles():
    part, fn = by_binary()["deploy-exec"]
    run_task = [
        p["EcsRunTaskPolicy"]
        for policy in fn["Properties"]["Policies"]
        for p in strip_ifs(policy)
        if isinstance(p, dict) and "EcsRunTaskPolicy" in p
    ]
    assert len(run_task) == 1
    created, existing = run_task[0]["TaskDefinition"]["Fn::If"][1:]
    # family:revision out of the task definition ARN.
    assert created == {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "StackUpdaterTaskDefinition"}]}]}
    assert existing == {"Ref": "ExistingTaskDefinition"}
    assert fn["Properties"]["Environment"]["Variables"]["TASK_DEFINITION"] == run_task[0]["TaskDefinition"]

    pass_role = [
        st
        for where, sts in role_statements(cfn(part))
        for st in sts
        if "iam:PassRole" in as_list(st["Action"])
    ]
    assert len(pass_role) == 1
    allowed = {
        json.dumps(x)
        for x in [
            {"Fn::GetAtt": ["StackUpdaterTaskRole", "Arn"]},
            {"Fn::GetAtt": ["StackUpdaterExecutionRole", "Arn"]},
            {"Ref": "ExistingTaskRoleArn"},
            {"Ref": "ExistingExecutionRoleArn"},
        ]
    }
    for resource in pass_role[0]["Resource"]:
        for value in strip_ifs(resource):
            assert json.dumps(value) in allowed, value
    assert pass_role[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    for other in PARTS:
        if other != part:
            assert "iam:PassRole" not in json.dumps(cfn(other)), other


def test_deploy_lanes_table_is_on_demand_keyed_by_lane_with_ttl_pitr_and_encryption():
    part, fn = by_binary()["deploy-exec"]
    tables = resources(raw(part), "AWS::DynamoDB::Table")
    assert list(tables) == ["DeployLanesTable"]
    props = tables["DeployLanesTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "lane", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "lane", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["KMSMasterKeyId"] == {"Ref": "KeyArn"}
    assert env_of(fn)["LANES_TABLE"] == {"Ref": "DeployLanesTable"}
    # The choices are explained where they are made.
    text = (INFRA / part).read_text()
    block = text[text.index("  DeployLanesTable:") - 600 : text.index("KMSMasterKeyId: !Ref KeyArn")]
    assert "PointInTimeRecovery" in block and "# On:" in block and "# kiln's own key" in block


def test_deploy_exec_may_only_get_put_update_and_delete_lane_items_of_its_one_table():
    grants = [
        (where, st)
        for part in PARTS
        for where, sts in role_statements(cfn(part))
        for st in sts
        if any(a.startswith("dynamodb:") for a in as_list(st["Action"]))
    ]
    assert len(grants) == 1, grants
    where, statement = grants[0]
    assert where.startswith("DeployExecFunctionRole"), where
    assert set(as_list(statement["Action"])) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    }
    assert statement["Resource"] == {"Fn::GetAtt": ["DeployLanesTable", "Arn"]}


def test_deploy_exec_is_updated_before_deploy_trigger():
    # A new deploy-trigger's requests may carry fields an old deploy-exec's
    # strict decoder rejects: the reader is updated first.
    part, _ = by_binary()["deploy-trigger"]
    fid = next(fid for (p, fid), fn in all_functions().items() if binary(fn) == "deploy-trigger")
    assert raw(part)["Resources"][fid]["DependsOn"] == "DeployExecFunction"


def test_deploy_exec_announces_deployments_on_the_alert_topic_only_when_asked():
    part, fn = by_binary()["deploy-exec"]
    template = raw(part)
    assert template["Parameters"]["NotifyDeploys"]["Default"] == "failures"
    assert template["Parameters"]["NotifyDeploys"]["AllowedValues"] == ["failures", "all", "none"]
    env = env_of(fn)
    assert env["NOTIFY_DEPLOYS"] == {"Ref": "NotifyDeploys"}
    assert env["NOTIFY_TOPIC_ARN"] == {
        "Fn::If": ["NotifiesDeploys", {"Ref": "AlertTopicArn"}, {"Ref": "AWS::NoValue"}]
    }
    statements_ = [
        st for where, sts in role_statements(cfn(part)) if where.startswith("DeployExecFunction") for st in sts
    ]

    def granting(action):
        return [st for st in statements_ if action in as_list(st["Action"])]

    # Publishes to the alert topic and nowhere else.
    (publish,) = granting("sns:Publish")
    assert publish["Resource"] == {"Ref": "AlertTopicArn"}
    # Reads the stack-updater's log group, never another, with one action.
    (read,) = granting("logs:GetLogEvents")
    assert as_list(read["Action"]) == ["logs:GetLogEvents"]
    created, existing = read["Resource"]["Fn::If"][1:]
    assert created == {"Fn::GetAtt": ["StackUpdaterLogGroup", "Arn"]}
    assert existing["Fn::Sub"].endswith(":log-group:${ExistingTaskLogGroup}:*")
    assert not granting("logs:FilterLogEvents")
    # Marks the tasks of its own cluster (RunTask's own tagging aside).
    marks = [st for st in granting("ecs:TagResource") if "ecs:CreateAction" not in json.dumps(st)]
    assert len(marks) == 1
    assert marks[0]["Resource"]["Fn::Sub"][0].endswith(":task/${ClusterName}/*")
    assert granting("ecs:DescribeTaskDefinition")[0]["Resource"] == "*"
    # Every one of these is conditional on NotifyDeploys.
    policies = json.dumps(fn["Properties"]["Policies"])
    for action in ["sns:Publish", "logs:GetLogEvents", "ecs:DescribeTaskDefinition"]:
        assert policies.count(action) == 1, action
    root = raw("template.yaml")
    assert root["Parameters"]["NotifyDeploys"]["Default"] == "failures"
    assert root["Resources"]["DeployPipeline"]["Properties"]["Parameters"]["NotifyDeploys"] == {"Ref": "NotifyDeploys"}
    log_config = json.dumps(resources(template, "AWS::ECS::TaskDefinition"))
    assert '"awslogs-stream-prefix"' in log_config, "without a prefix the stream can't be named"


def test_watchdog_may_scale_only_its_one_group():
    statements_ = [st for _, sts in role_statements(cfn("watchdog.yaml")) for st in sts]
    writes = [st for st in statements_ if any(a.startswith("autoscaling:") and "Describe" not in a for a in as_list(st["Action"]))]
    assert len(writes) == 1
    assert set(as_list(writes[0]["Action"])) == {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
    }
    assert "autoScalingGroupName/${AsgName}" in writes[0]["Resource"]["Fn::Sub"]


def test_secrets_reach_functions_as_arns_only():
    for name in ["template.yaml", *PARTS]:
        text = (INFRA / name).read_text()
        assert "{{resolve:" not in text, name
        for pname, param in raw(name).get("Parameters", {}).items():
            if re.search(r"Secret|Token|Password|WebhookUrl", pname) and param["Type"] == "String":
                assert pname.endswith("Arn") or param.get("AllowedValues") == ["true", "false"], (name, pname)
                assert not param.get("NoEcho"), "secret values are never parameters"
    for (part, fid), fn in all_functions().items():
        template = raw(part)
        secrets = resources(template, "AWS::SecretsManager::Secret")
        for var, value in env_of(fn).items():
            if re.search(r"SECRET|TOKEN|PASSWORD|WEBHOOK", var):
                assert var.endswith("_SECRET_ARN"), (part, fid, var)
                for v in strip_ifs(value):
                    ref = v.get("Ref") if isinstance(v, dict) else None
                    assert ref in secrets or (ref in template["Parameters"] and ref.endswith("Arn")), (part, fid, var, v)


# ------------------------------------------------------------------ contract


def test_environment_variables_match_each_function_contract():
    for name, (part, fn) in by_binary().items():
        required, optional = ENV_CONTRACT[name]
        variables = set(env_of(fn))
        assert required <= variables, (name, required - variables)
        assert variables <= required | optional, (name, variables - required - optional)
        for var in required:
            # A required variable is never left out by a condition.
            value = env_of(fn)[var]
            assert {"Ref": "AWS::NoValue"} not in list(walk(value)), (name, var)


def test_deploy_paths_default_to_no_filter_and_reach_deploy_trigger_only_when_set():
    root = raw("template.yaml")
    assert root["Parameters"]["DeployPaths"]["Default"] == ""
    assert "DEPLOY_PATHS" in root["Parameters"]["DeployPaths"]["Description"]
    (app,) = (a for a in resources(root, "AWS::Serverless::Application").values() if a["Properties"]["Location"] == "./deploy-pipeline.yaml")
    assert app["Properties"]["Parameters"]["DeployPaths"] == {"Ref": "DeployPaths"}
    pipeline = raw("deploy-pipeline.yaml")
    assert pipeline["Parameters"]["DeployPaths"]["Default"] == ""
    _, fn = by_binary()["deploy-trigger"]
    # Empty leaves the variable out, so an unset DEPLOY_PATHS behaves as before.
    condition, value, otherwise = env_of(fn)["DEPLOY_PATHS"]["Fn::If"]
    assert (value, otherwise) == ({"Ref": "DeployPaths"}, {"Ref": "AWS::NoValue"})
    assert pipeline["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DeployPaths"}, ""]}]}


def samconfig_deploy_paths_examples():
    """The commented DeployPaths examples in samconfig.toml, per environment."""
    examples = {}
    env = None
    for line in (INFRA / "samconfig.toml").read_text().splitlines():
        section = re.match(r"\[(\w+)\.deploy\.parameters\]", line)
        if section:
            env = section.group(1)
        example = re.match(r'\s*# ("DeployPaths=.*"),$', line)
        if example:
            examples[env] = example.group(1)
    return examples


def test_samconfig_shows_a_deploy_paths_example_per_environment_that_sam_reads():
    sys.path.insert(0, str(INFRA))
    import plan

    examples = samconfig_deploy_paths_examples()
    assert set(examples) == {"dev", "staging", "production"}
    # The syntax checked here is DEPLOY_PATHS's outer shape; deploy-trigger's
    # own tests parse these same lines with its parser.
    entry = re.compile(r"^[A-Za-z0-9._-]{1,64}=[^;,]+(,[^;,]+)*$")
    for env, example in examples.items():
        overrides = plan.parse_overrides([example.strip('"')])
        value = overrides["DeployPaths"]
        assert list(overrides) == ["DeployPaths"], env
        assert all(entry.match(e) for e in value.split(";")), (env, value)
        # Each example filters the environment that samconfig section deploys.
        assert {e.split("=", 1)[0] for e in value.split(";")} == {env}, (env, value)


def test_deploy_exec_gets_a_launch_type_or_a_capacity_provider_never_both():
    _, fn = by_binary()["deploy-exec"]
    env = env_of(fn)
    launch, provider = env["LAUNCH_TYPE"]["Fn::If"], env["CAPACITY_PROVIDER"]["Fn::If"]
    assert launch[0] == provider[0]
    assert launch[1] == {"Ref": "AWS::NoValue"} and provider[2] == {"Ref": "AWS::NoValue"}


def test_webhook_is_one_post_route_with_throttling():
    routes = [
        (fid, e["Properties"])
        for (part, fid), fn in all_functions().items()
        for e in fn["Properties"].get("Events", {}).values()
        if e["Type"] in {"HttpApi", "Api"}
    ]
    assert [(r["Method"], r["Path"]) for _, r in routes] == [("POST", "/webhook")]
    api_id = routes[0][1]["ApiId"]["Ref"]
    api = resources(raw("deploy-pipeline.yaml"), "AWS::Serverless::HttpApi")[api_id]["Properties"]
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"]
    assert api["DefaultRouteSettings"]["ThrottlingBurstLimit"]


def rule_patterns(fn):
    return [e["Properties"]["Pattern"] for e in fn["Properties"]["Events"].values() if e["Type"] == "EventBridgeRule"]


def test_deploy_exec_hears_only_kiln_tasks_that_stopped():
    _, fn = by_binary()["deploy-exec"]
    (pattern,) = rule_patterns(fn)
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert pattern["detail"]["startedBy"] == [{"prefix": "kiln/"}]


def test_watchdog_rule_is_containermanagers_pattern_without_over_specific_fields():
    _, fn = by_binary()["watchdog"]
    (pattern,) = rule_patterns(fn)
    detail = pattern["detail"]
    assert detail["lastStatus"] == ["STOPPED"]
    stop_codes = {code for branch in detail["$or"] for code in branch["stopCode"]}
    assert stop_codes == {"TaskFailedToStart", "EssentialContainerExited"}
    keys = {k for node in walk(pattern) if isinstance(node, dict) for k in node}
    assert not keys & {"capacityProviderName", "launchType", "group", "taskDefinitionArn", "availabilityZone"}


def test_alert_forwarder_is_throttled_and_refires_on_a_schedule():
    part, fn = by_binary()["alert-forwarder"]
    params = raw(part)["Parameters"]
    concurrency = fn["Properties"]["ReservedConcurrentExecutions"]
    assert params[concurrency["Ref"]]["Default"] == 1
    assert params[concurrency["Ref"]]["MaxValue"] <= 5
    (schedule,) = [e["Properties"] for e in fn["Properties"]["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Schedule"] == {"Fn::Sub": "rate(${RefireEveryMinutes} minutes)"}
    assert params["RefireEveryMinutes"]["Default"] == "15"
    # "rate(1 minutes)" would be invalid: every allowed value is plural.
    assert "1" not in params["RefireEveryMinutes"]["AllowedValues"]
    # The function is told the schedule's period.
    assert env_of(fn)["REFIRE_SCHEDULE_MINUTES"] == {"Ref": "RefireEveryMinutes"}
    subscribed = [e for e in fn["Properties"]["Events"].values() if e["Type"] == "SNS"]
    assert subscribed[0]["Properties"]["Topic"] == {"Ref": "AlertTopicArn"}


def test_watchdog_alarms_route_to_scale_down_or_notify():
    template = raw("watchdog.yaml")
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    for alarm_id, param in [
        ("ContainerActivityAlarmResource", "ContainerActivityAlarm"),
        ("InstanceLeftUpAlarmResource", "InstanceLeftUpAlarm"),
    ]:
        assert set(template["Parameters"][param]["AllowedValues"]) == {"off", "notify", "scale-down"}
        actions = alarms[alarm_id]["Properties"]["AlarmActions"]["Fn::If"]
        assert actions[1] == [{"Ref": "AlertTopicArn"}]
    rule = resources(template, "AWS::Events::Rule")["ScaleDownAlarmRule"]
    assert rule["Condition"] == "AnyScaleDownAlarm"
    assert rule["Properties"]["EventPattern"]["detail"]["state"] == {"value": ["ALARM"]}


# ---------------------------------------------------------------------- root


def test_root_nests_three_switchable_parts_with_matching_parameters():
    root = raw("template.yaml")
    apps = resources(root, "AWS::Serverless::Application")
    assert {a["Properties"]["Location"] for a in apps.values()} == {f"./{p}" for p in PARTS}
    for aid, app in apps.items():
        condition = root["Conditions"][app["Condition"]]
        switch = condition["Fn::Equals"][0]["Ref"]
        assert switch.startswith("Enable") and root["Parameters"][switch]["AllowedValues"] == ["true", "false"]
        child = raw(app["Properties"]["Location"].removeprefix("./"))["Parameters"]
        passed = set(app["Properties"]["Parameters"])
        assert passed <= set(child), (aid, passed - set(child))
        needed = {k for k, v in child.items() if "Default" not in v}
        assert needed <= passed, (aid, needed - passed)


def evaluate(node, conditions, outputs="x"):
    """Renders a string-valued intrinsic with every Ref/GetAtt as a dummy."""
    if isinstance(node, str):
        return node
    if "Fn::Join" in node:
        sep, items = node["Fn::Join"]
        return sep.join(evaluate(i, conditions) for i in items)
    if "Fn::If" in node:
        cond, yes, no = node["Fn::If"]
        return evaluate(yes if conditions[cond] else no, conditions)
    if "Fn::Sub" in node:
        body, names = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
        return re.sub(r"\$\{([^}!]+)\}", lambda m: evaluate(names.get(m.group(1), outputs), conditions), body)
    return outputs


@pytest.mark.parametrize("parts", list(itertools.product([True, False], repeat=3)))
def test_dashboard_is_valid_json_for_every_combination_of_parts(parts):
    root = raw("template.yaml")
    conditions = dict(zip(["DeployPipelineOn", "WatchdogOn", "AlertsOn"], parts))
    body = json.loads(evaluate(root["Resources"]["Dashboard"]["Properties"]["DashboardBody"], conditions))
    widgets = body["widgets"]
    assert len(widgets) == 1 + 6 * parts[0] + 3 * parts[1] + 3 * parts[2]
    metrics = {m[1] for m in widgets[-1]["properties"]["metrics"]}
    assert metrics == KILN_METRICS
    assert widgets[-1]["properties"]["metrics"][0][0] == "kiln"


def test_samconfig_has_three_environments():
    config = tomllib.loads((INFRA / "samconfig.toml").read_text())
    root_params = set(raw("template.yaml")["Parameters"])
    for env in ["dev", "staging", "production"]:
        deploy = config[env]["deploy"]["parameters"]
        stack = config[env]["global"]["parameters"]["stack_name"]
        assert stack.startswith("kiln-"), env
        assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy["capabilities"].split()), env
        keys = {o.split("=", 1)[0] for o in deploy.get("parameter_overrides", [])}
        assert keys <= root_params, (env, keys - root_params)
    stacks = [config[env]["global"]["parameters"]["stack_name"] for env in ["dev", "staging", "production"]]
    assert len(set(stacks)) == 3
