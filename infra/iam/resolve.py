"""CloudFormation's intrinsic functions, resolved for one local deployment.

`make check-iam` needs the policies and environment variables of a
transformed template as plain values: this module resolves ``Ref``,
``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If`` (and the conditions:
``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``),
``Fn::Select``, ``Fn::Split`` and ``Fn::FindInMap`` for given parameters, in
the local account and region (moto's: 123456789012, us-east-1) under a
given stack name. ``AWS::NoValue`` disappears from lists and objects.

Resources get the names CloudFormation would give them: their explicit name
property (``TopicName``, ``ClusterName``, ...) or, for one CloudFormation
names itself, ``<stack name>-<logical id>``; IAM roles without ``RoleName``
are named after their logical id (the test harness names its task
definition's roles the same way). Anything not covered raises
:class:`Unresolvable`, naming it.
"""

from __future__ import annotations

import re
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"


class Unresolvable(Exception):
    """An intrinsic or resource this module cannot resolve."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

# (type, explicit name property) for Ref and the names in ARNs.
_NAME_PROPERTIES = {
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::ECS::TaskDefinition": "Family",
    "AWS::KMS::Key": None,
}


class Resolver:
    """Resolves one template's values for one set of parameters."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], stack_name: str):
        self.template = template
        self.stack_name = stack_name
        self.parameters: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])
            else:
                raise Unresolvable(f"parameter {name} has no default and no value")
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise Unresolvable(f"unknown parameters {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}

    # --- conditions ---------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise Unresolvable(f"condition {name}")
            self._conditions[name] = bool(self.value(conditions[name]))
        return self._conditions[name]

    def resource_exists(self, logical_id: str) -> bool:
        resource = self._resource(logical_id)
        return "Condition" not in resource or self.condition(resource["Condition"])

    # --- values -------------------------------------------------------------

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise Unresolvable(f"intrinsic {key}")
        out = {}
        for key, item in node.items():
            resolved = self.value(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _resource(self, logical_id: str) -> dict[str, Any]:
        resources = self.template.get("Resources") or {}
        if logical_id not in resources:
            raise Unresolvable(f"no resource or parameter {logical_id}")
        return resources[logical_id]

    def _name(self, logical_id: str) -> str:
        resource = self._resource(logical_id)
        kind = resource["Type"]
        if kind not in _NAME_PROPERTIES:
            raise Unresolvable(f"names of {kind} ({logical_id})")
        prop = _NAME_PROPERTIES[kind]
        given = (resource.get("Properties") or {}).get(prop) if prop else None
        if given is not None:
            return str(self.value(given))
        if kind == "AWS::IAM::Role":
            return logical_id
        return f"{self.stack_name}-{logical_id}"

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack_name}/local",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self._resource(name)["Type"]
        resource_name = self._name(name)
        arn = _arn_of(kind, resource_name)
        if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret", "AWS::ECS::TaskDefinition"):
            return arn
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{resource_name}"
        if kind == "AWS::KMS::Key":
            return resource_name
        return resource_name

    def get_att(self, logical_id: str, attribute: str) -> Any:
        kind = self._resource(logical_id)["Type"]
        name = self._name(logical_id)
        if attribute == "Arn":
            return _arn_of(kind, name)
        named = {
            ("AWS::SNS::Topic", "TopicName"): name,
            ("AWS::SNS::Topic", "TopicArn"): _arn_of(kind, name),
            ("AWS::SQS::Queue", "QueueName"): name,
            ("AWS::SQS::Queue", "QueueUrl"): f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
            ("AWS::KMS::Key", "KeyId"): name,
        }
        if (kind, attribute) in named:
            return named[(kind, attribute)]
        raise Unresolvable(f"Fn::GetAtt {logical_id}.{attribute} ({kind})")


def _arn_of(kind: str, name: str) -> str:
    def arn(service: str, resource: str, region: str = REGION) -> str:
        return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"

    arns = {
        "AWS::SNS::Topic": lambda: arn("sns", name),
        "AWS::SQS::Queue": lambda: arn("sqs", name),
        "AWS::ECS::Cluster": lambda: arn("ecs", f"cluster/{name}"),
        # The first revision of the family.
        "AWS::ECS::TaskDefinition": lambda: arn("ecs", f"task-definition/{name}:1"),
        # As GetAtt returns it, with ":*".
        "AWS::Logs::LogGroup": lambda: arn("logs", f"log-group:{name}:*"),
        "AWS::IAM::Role": lambda: arn("iam", f"role/{name}", region=""),
        "AWS::Lambda::Function": lambda: arn("lambda", f"function:{name}"),
        "AWS::DynamoDB::Table": lambda: arn("dynamodb", f"table/{name}"),
        # AWS appends six random characters to a secret's name.
        "AWS::SecretsManager::Secret": lambda: arn("secretsmanager", f"secret:{name}-AbCdEf"),
        "AWS::Events::Rule": lambda: arn("events", f"rule/{name}"),
        "AWS::KMS::Key": lambda: arn("kms", f"key/{name}"),
    }
    if kind not in arns:
        raise Unresolvable(f"ARNs of {kind}")
    return arns[kind]()


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _sub(resolver: Resolver, arg: Any) -> str:
    if isinstance(arg, list):
        text, variables = arg[0], {k: resolver.value(v) for k, v in arg[1].items()}
    else:
        text, variables = arg, {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return str(resolver.get_att(logical_id, attribute))
        return str(resolver.ref(name))

    return _SUB_VARIABLE.sub(replace, text)


def _if(resolver: Resolver, arg: list[Any]) -> Any:
    name, when_true, when_false = arg
    return resolver.value(when_true if resolver.condition(name) else when_false)


def _get_att(resolver: Resolver, arg: Any) -> Any:
    if isinstance(arg, str):
        arg = arg.split(".", 1)
    return resolver.get_att(arg[0], resolver.value(arg[1]))


def _select(resolver: Resolver, arg: list[Any]) -> Any:
    index, items = int(resolver.value(arg[0])), resolver.value(arg[1])
    if not 0 <= index < len(items):
        raise Unresolvable(f"Fn::Select index {index} of {items}")
    return items[index]


def _find_in_map(resolver: Resolver, arg: list[Any]) -> Any:
    name, top, second = (resolver.value(a) for a in arg)
    return resolver.template["Mappings"][name][top][second]


_INTRINSICS = {
    "Ref": lambda r, a: r.ref(a),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": lambda r, a: str(r.value(a[0])).join(str(x) for x in r.value(a[1])),
    "Fn::Split": lambda r, a: str(r.value(a[1])).split(r.value(a[0])),
    "Fn::Select": _select,
    "Fn::If": _if,
    "Fn::Equals": lambda r, a: str(r.value(a[0])) == str(r.value(a[1])),
    "Fn::Not": lambda r, a: not r.value(a[0]),
    "Fn::And": lambda r, a: all(r.value(x) for x in a),
    "Fn::Or": lambda r, a: any(r.value(x) for x in a),
    "Condition": lambda r, a: r.condition(a),
    "Fn::FindInMap": _find_in_map,
}
