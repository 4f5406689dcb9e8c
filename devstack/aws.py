"""Embedded AWS: moto in server mode on loopback, resources from infra/template.yaml.

The template is the one production deploys. Its tables and queues go to moto's
CloudFormation; the Chalice patches (resources without a `Type`), the
production-only resources (alarms, dashboard, log groups: they refer to Chalice's
functions and APIs) and SAM `Globals` are dropped, since the local stack replaces
the functions. The functions' environment is
read from the template's Globals and resolved against the created stack, so a
new table or queue in the template shows up locally with no other change.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import yaml

from devstack import buckets

log = logging.getLogger("devstack.aws")

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "infra" / "template.yaml"
REGION = "us-east-1"
# The resource types of infra/template.yaml the local stack creates.
LOCAL_TYPES = frozenset({"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::S3::Bucket"})
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub …) as their long form."""


def _cfn_constructor(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_constructor)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as fh:
        return yaml.load(fh, Loader=_CfnLoader)


def plain_resources_template(template: dict[str, Any]) -> dict[str, Any]:
    """The part of the merge template that plain CloudFormation (and moto) can deploy."""
    resources = {
        name: res for name, res in template.get("Resources", {}).items() if res.get("Type") in LOCAL_TYPES
    }
    plain: dict[str, Any] = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}
    used = _referenced_names(resources)
    params = {name: p for name, p in template.get("Parameters", {}).items() if name in used}
    if params:
        plain["Parameters"] = params
    return plain


def _referenced_names(node: Any) -> set[str]:
    """Logical names a piece of template refers to (Ref, GetAtt, ${X} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt" and isinstance(value, list) and value:
                found.add(str(value[0]))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(part.split("}", 1)[0].split(".")[0] for part in text.split("${")[1:])
                if not isinstance(value, str):
                    found |= _referenced_names(value[1])
            else:
                found |= _referenced_names(value)
    elif isinstance(node, list):
        for item in node:
            found |= _referenced_names(item)
    return found


def function_environment_spec(template: dict[str, Any]) -> dict[str, Any]:
    return template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedAWS:
    """Starts moto on 127.0.0.1 and deploys the template's tables and queues into it."""

    def __init__(self, stage: str = "dev", port: int = 0) -> None:
        self.stage = stage
        self._port = port
        self._server: Any = None
        self.endpoint = ""
        self.stack_name = f"sohbet-{stage}-local"
        self.physical_ids: dict[str, str] = {}
        self.resource_types: dict[str, str] = {}

    def start(self) -> str:
        """moto's server in a child process: its CPU work runs beside the app's, not under one GIL."""
        port = self._port or _free_port()
        self._server = subprocess.Popen(
            [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # the child exits when this process is gone (devstack/moto_server.py)
            env=dict(os.environ, **FAKE_CREDENTIALS, SOHBET_STACK_PID=str(os.getpid())),
            cwd=REPO,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
            self._server = None

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def deploy(self, template: dict[str, Any]) -> None:
        plain = plain_resources_template(template)
        cfn = self.client("cloudformation")
        params = []
        if "Stage" in plain.get("Parameters", {}):
            params.append({"ParameterKey": "Stage", "ParameterValue": self.stage})
        cfn.create_stack(StackName=self.stack_name, TemplateBody=yaml.safe_dump(plain), Parameters=params)
        waiter = cfn.get_waiter("stack_create_complete")
        waiter.wait(StackName=self.stack_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        for res in cfn.describe_stack_resources(StackName=self.stack_name)["StackResources"]:
            self.physical_ids[res["LogicalResourceId"]] = res["PhysicalResourceId"]
            self.resource_types[res["LogicalResourceId"]] = res["ResourceType"]
        self._enable_ttl(plain)
        # what moto's CloudFormation leaves out of a bucket (devstack/buckets.py)
        buckets.configure(self.client("s3"), template, self.physical_ids, REGION, self.stage)

    def _enable_ttl(self, plain: dict[str, Any]) -> None:
        # moto's CloudFormation ignores TimeToLiveSpecification.
        dynamodb = self.client("dynamodb")
        for name, res in plain["Resources"].items():
            ttl = res.get("Properties", {}).get("TimeToLiveSpecification")
            if res["Type"] == "AWS::DynamoDB::Table" and ttl and ttl.get("Enabled"):
                dynamodb.update_time_to_live(
                    TableName=self.physical_ids[name],
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )

    def create_platform_applications(self, stage: str) -> dict[str, str]:
        """SNS platform applications standing in for the APNs and FCM ones production is
        given as stack parameters (moto accepts them without credentials)."""
        sns = self.client("sns")
        env = {}
        for variable, platform in (
            ("APNS_PLATFORM_APPLICATION_ARN", "APNS"),
            ("APNS_SANDBOX_PLATFORM_APPLICATION_ARN", "APNS_SANDBOX"),
            ("FCM_PLATFORM_APPLICATION_ARN", "GCM"),
        ):
            name = f"sohbet-{stage}-local-{platform.lower()}"
            response = sns.create_platform_application(Name=name, Platform=platform, Attributes={})
            env[variable] = response["PlatformApplicationArn"]
        return env

    def resolve(self, value: Any) -> str | None:
        """Resolve an environment value of the template against the local stack.

        Returns None for values that refer to what the local stack replaces
        (the WebSocket API, parameters such as the Cognito issuer).
        """
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and "Ref" in value:
            logical = value["Ref"]
            if logical == "Stage":
                return self.stage
            if logical not in self.physical_ids:
                return None
            physical = self.physical_ids[logical]
            if self.resource_types[logical] == "AWS::SQS::Queue" and not physical.startswith("http"):
                return self.client("sqs").get_queue_url(QueueName=physical)["QueueUrl"]
            return physical
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            if logical not in self.physical_ids:
                return None
            physical = self.physical_ids[logical]
            if attribute == "Arn" and self.resource_types[logical] == "AWS::DynamoDB::Table":
                return self.client("dynamodb").describe_table(TableName=physical)["Table"]["TableArn"]
            if attribute == "Arn" and self.resource_types[logical] == "AWS::SQS::Queue":
                url = self.resolve({"Ref": logical}) or ""
                attrs = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                return attrs["Attributes"]["QueueArn"]
        return None

    def function_environment(self, template: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for name, value in function_environment_spec(template).items():
            resolved = self.resolve(value)
            if resolved is not None:
                env[name] = resolved
        return env


def local_process_environment(moto_endpoint: str) -> dict[str, str]:
    """What every AWS SDK call in the process needs to reach moto and nothing else."""
    env = dict(FAKE_CREDENTIALS)
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # One endpoint for every service: a call the local stack does not
            # serve goes to moto on loopback, never to AWS.
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def apply_environment(env: dict[str, str]) -> None:
    os.environ.update(env)
