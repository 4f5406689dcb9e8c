"""The deployment artefacts: Chalice's SAM output merged with infra/template.yaml,
the IAM policies, the deploy script and the CI workflow.

`chalice package` runs once per module (about 15-25 s: it builds the Lambda zip with
manylinux wheels from the package index) without AWS credentials.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode

from devstack.aws import LOCAL_TYPES

try:
    from netns import run_in_host_netns
except ImportError:  # tests/netns.py not there: the session runs on the host network
    run_in_host_netns = subprocess.run  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: chalice, cfn-lint, actionlint
MERGE_TEMPLATE = REPO / "infra" / "template.yaml"
CHALICE_CONFIG = json.loads((REPO / ".chalice" / "config.json").read_text())

STAGE = "dev"
PIN = REPO / "infra" / "pin_websocket_deployment.py"
PSEUDO_PARAMS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
# Environment variables the merge template gives every function, with the resource or
# parameter each one is a Ref of.
REF_ENV = {
    "SPACES_TABLE": "SpacesTable",
    "MEMBERS_TABLE": "MembersTable",
    "PRESENCE_TABLE": "PresenceTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "RELATIONS_TABLE": "RelationsTable",
    "USERS_TABLE": "UsersTable",
    "REPORTS_TABLE": "ReportsTable",
    "CASES_TABLE": "CasesTable",
    "AUDIT_TABLE": "AuditTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "TICKETS_TABLE": "TicketsTable",
    "REMINDERS_TABLE": "RemindersTable",
    "NOTIFICATIONS_TABLE": "NotificationsTable",
    "MODERATION_QUEUE_URL": "ModerationQueue",
    "FANOUT_QUEUE_URL": "FanoutQueue",
    "NOTIFY_QUEUE_URL": "NotifyQueue",
    "APNS_PLATFORM_APPLICATION_ARN": "ApnsPlatformApplicationArn",
    "APNS_SANDBOX_PLATFORM_APPLICATION_ARN": "ApnsSandboxPlatformApplicationArn",
    "FCM_PLATFORM_APPLICATION_ARN": "FcmPlatformApplicationArn",
    "AUTH_ISSUER": "AuthIssuer",
    "AUTH_AUDIENCE": "AuthAudience",
    "EVIDENCE_BUCKET": "EvidenceBucket",
    "CAPTURE_ALL_SPACES": "CaptureAllSpaces",
    "EVIDENCE_MAX_SECONDS": "EvidenceMaxSeconds",
}
WEBSOCKET_ENDPOINT = {
    "Fn::Sub": "https://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
}
BROADCAST_ENV = {
    "BROADCAST_HTTP_URL": {"Fn::Sub": "https://${EventApi.Dns.Http}/event"},
    "BROADCAST_REALTIME_URL": {"Fn::Sub": "wss://${EventApi.Dns.Realtime}/event/realtime"},
    "BROADCAST_THRESHOLD": {"Ref": "BroadcastThreshold"},
}


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} not found next to {sys.executable}; install requirements-dev.txt"
    return str(path)


def _scrubbed_env(tmp: Path) -> dict[str, str]:
    """PATH, HOME (pip's cache), locale, proxy/CA and pip settings; nothing from AWS."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update({k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["HOME"] = str(Path.home())
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "no-aws-config")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def _plain(node: Any) -> Any:
    """cfn-lint's decoder returns dict/str subclasses; make them plain for comparisons."""
    return json.loads(json.dumps(node))


def _merge_template() -> dict[str, Any]:
    template, matches = decode(str(MERGE_TEMPLATE))
    assert not matches, matches
    return _plain(template)


def _references(node: Any) -> set[str]:
    """Logical ids and parameters that Ref, Fn::GetAtt and Fn::Sub in node point at."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
                if isinstance(value, list):
                    found |= _references(value[1])
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found - PSEUDO_PARAMS


def _markdown_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """Tables of a markdown file, keyed by their first header cell."""
    tables: dict[str, list[dict[str, str]]] = {}
    block: list[list[str]] = []
    for line in [*path.read_text().splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
            continue
        if block:
            header, rows = block[0], [r for r in block[1:] if not set("".join(r)) <= set("-: ")]
            tables[header[0]] = [dict(zip(header, row, strict=True)) for row in rows]
            block = []
    return tables


DOC = _markdown_tables(REPO / "docs" / "data-model.md")
# The first test to use the packaged template also waits for `chalice package`.
pytestmark = pytest.mark.timeout(900)


def _key(cell: str) -> tuple[str, str] | None:
    """'space_id (S)' -> ('space_id', 'S'); '—' -> None."""
    match = re.fullmatch(r"(\w+) \(([SNB])\)", cell)
    return (match.group(1), match.group(2)) if match else None


def _key_schema(hash_key: tuple[str, str], range_key: tuple[str, str] | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
    return schema


def _with_globals(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """A function's environment as the SAM transform computes it: Globals' variables
    merged with the function's own, the function's winning on a clash."""
    env = copy.deepcopy(template.get("Globals", {}).get("Function", {}).get("Environment", {}))
    own = resource["Properties"].get("Environment", {}).get("Variables", {})
    return {**env.get("Variables", {}), **own}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy.sh hands to CloudFormation: chalice package, then the pinned deployment."""
    tmp = tmp_path_factory.mktemp("package")
    out = tmp / "out"
    # In the host's network: chalice package downloads the Lambda wheels from the registry.
    proc = run_in_host_netns(
        [_tool("chalice"), "package", "--stage", STAGE, "--merge-template", str(MERGE_TEMPLATE), str(out)],
        cwd=REPO,
        env=_scrubbed_env(tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A YAML merge template switches Chalice's output to sam.yaml (no sam.json).
    sam = out / "sam.yaml"
    assert sam.exists(), f"chalice package wrote {sorted(os.listdir(out))}:\n{proc.stdout}{proc.stderr}"
    assert (out / "deployment.zip").exists()
    proc = subprocess.run([sys.executable, str(PIN), str(sam)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sam


@pytest.fixture(scope="module")
def sam(packaged: Path) -> dict[str, Any]:
    return yaml.safe_load(packaged.read_text())


def _functions(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in sam["Resources"].items() if r.get("Type") == "AWS::Serverless::Function"}


# -- the merged SAM template ---------------------------------------------------


def test_sam_template_is_sam_with_parameters(sam: dict[str, Any]) -> None:
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(sam["Parameters"]) == {
        "Stage",
        "AuthIssuer",
        "AuthAudience",
        "AlarmTopicArn",
        "BroadcastThreshold",
        "CaptureAllSpaces",
        "EvidenceMaxSeconds",
        "ApnsPlatformApplicationArn",
        "ApnsSandboxPlatformApplicationArn",
        "FcmPlatformApplicationArn",
    }
    assert sam["Parameters"]["Stage"]["Default"] == "dev"
    # Every resource patched by the merge template exists in Chalice's output: a renamed
    # logical id would leave a resource with no Type behind.
    untyped = [k for k, r in sam["Resources"].items() if "Type" not in r]
    assert not untyped, f"merge template patches resources Chalice did not emit: {untyped}"


def test_tables_match_data_model(sam: dict[str, Any]) -> None:
    resources = sam["Resources"]
    tables = {k: r for k, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    documented = {row["table (logical id)"]: row for row in DOC["table (logical id)"]}
    assert set(tables) == set(documented)

    gsis: dict[str, list[dict[str, str]]] = {}
    for row in DOC["table"]:
        gsis.setdefault(row["table"], []).append(row)

    for logical_id, row in documented.items():
        props = tables[logical_id]["Properties"]
        name = row["name"].replace("{stage}", "${Stage}")
        assert props["TableName"] == {"Fn::Sub": name}, logical_id
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        # Kept on stack deletion and replacement; deleted only by the rollback of its own create.
        assert tables[logical_id]["DeletionPolicy"] == "RetainExceptOnCreate", logical_id
        assert tables[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id
        hash_key, range_key = _key(row["hash key"]), _key(row["range key"])
        assert hash_key
        assert props["KeySchema"] == _key_schema(hash_key, range_key), logical_id

        key_attrs = {hash_key, *([range_key] if range_key else [])}
        expected_gsis = {}
        for gsi in gsis.get(logical_id, []):
            gsi_hash, gsi_range = _key(gsi["hash"]), _key(gsi["range"])
            assert gsi_hash
            key_attrs |= {gsi_hash, *([gsi_range] if gsi_range else [])}
            expected_gsis[gsi["index"]] = {
                "IndexName": gsi["index"],
                "KeySchema": _key_schema(gsi_hash, gsi_range),
                "Projection": {"ProjectionType": "ALL"},
            }
        actual_gsis = {g["IndexName"]: g for g in props.get("GlobalSecondaryIndexes", [])}
        assert actual_gsis == expected_gsis, logical_id
        # Only key attributes are declared, each with the type the doc gives it.
        declared = {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]}
        assert declared == key_attrs, logical_id
        assert len(props["AttributeDefinitions"]) == len(declared)

        ttl = row["TTL attribute"]
        if ttl == "—":
            assert "TimeToLiveSpecification" not in props, logical_id
        else:
            assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}


def test_queues_have_dead_letter_queues(sam: dict[str, Any]) -> None:
    resources = sam["Resources"]
    functions = _functions(sam)
    by_handler = {f["Properties"]["Handler"]: f for f in functions.values()}
    queues = {k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    rows = DOC["queue (logical id)"]
    assert queues == {r["queue (logical id)"] for r in rows} | {r["DLQ"] for r in rows}

    for row in rows:
        queue_id, dlq_id = row["queue (logical id)"], row["DLQ"]
        short = queue_id.removesuffix("Queue").lower()
        queue, dlq = resources[queue_id]["Properties"], resources[dlq_id]["Properties"]
        assert queue["QueueName"] == {"Fn::Sub": f"sohbet-${{Stage}}-{short}"}
        assert dlq["QueueName"] == {"Fn::Sub": f"sohbet-${{Stage}}-{short}-dlq"}
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
            "maxReceiveCount": int(row["maxReceiveCount"]),
        }
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        consumer = by_handler[f"app.{row['consumer']}"]
        assert queue["VisibilityTimeout"] >= 6 * consumer["Properties"]["Timeout"]


def test_sqs_event_sources_use_the_queues_and_report_batch_failures(sam: dict[str, Any]) -> None:
    by_handler = {f["Properties"]["Handler"]: f for f in _functions(sam).values()}
    for row in DOC["queue (logical id)"]:
        events = by_handler[f"app.{row['consumer']}"]["Properties"]["Events"]
        sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
        assert len(sqs) == 1, events
        # One key: the deep merge must have replaced Chalice's name-built ARN.
        assert sqs[0]["Queue"] == {"Fn::Sub": f"${{{row['queue (logical id)']}.Arn}}"}
        assert sqs[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_every_function_gets_the_environment(sam: dict[str, Any]) -> None:
    functions = _functions(sam)
    # 3 WebSocket handlers, the REST handler, 3 queue consumers, the schedule, the
    # broadcast tier's Lambda authorizer, Chime's events.
    assert len(functions) == 10, sorted(functions)
    assert sam["Resources"]["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"
    expected = {name: {"Ref": target} for name, target in REF_ENV.items()}
    expected["WEBSOCKET_ENDPOINT"] = WEBSOCKET_ENDPOINT
    for logical_id, function in functions.items():
        env = _with_globals(sam, function)
        assert {k: env.get(k) for k in expected} == expected, logical_id
        # The authorizer is what the Event API refers to: a reference back would be a cycle.
        tier = {k: env.get(k) for k in BROADCAST_ENV}
        if logical_id == "BroadcastAuthorizer":
            assert tier["BROADCAST_HTTP_URL"] == tier["BROADCAST_REALTIME_URL"] == "", tier
        else:
            assert tier == BROADCAST_ENV, logical_id
        assert env["SOHBET_STAGE"] == STAGE, logical_id  # Chalice's own variables survive


def test_websocket_stage_is_named_like_the_chalice_stage() -> None:
    # WEBSOCKET_ENDPOINT uses the Stage parameter as the API Gateway stage.
    for name, stage in CHALICE_CONFIG["stages"].items():
        assert stage.get("api_gateway_stage", "api") == name


def test_cfn_lint_passes(packaged: Path) -> None:
    # Chalice 1.34's output lints clean under cfn-lint 1.58, so no rule is ignored.
    # Should a later Chalice emit something cfn-lint flags, ignore that rule id here
    # (`--ignore-checks`) with the reason, and only for resources Chalice generates:
    # never for anything infra/template.yaml defines or patches.
    proc = subprocess.run(
        [_tool("cfn-lint"), "--format", "parseable", "--", str(packaged)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the merge template's typed resources (the local stack's view) --------------


def _local_template() -> dict[str, Any]:
    """What the local stack deploys to moto: the tables and queues and their Parameters."""
    template = _merge_template()
    resources = {k: r for k, r in template["Resources"].items() if r.get("Type") in LOCAL_TYPES}
    used = _references(resources)
    params = {k: v for k, v in template["Parameters"].items() if k in used}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": params, "Resources": resources}


def test_local_resources_are_plain_cloudformation() -> None:
    template = _merge_template()
    assert "Transform" not in template
    typed = {k: r for k, r in template["Resources"].items() if r.get("Type") in LOCAL_TYPES}
    assert {r["Type"] for r in typed.values()} == LOCAL_TYPES
    for logical_id, resource in typed.items():
        assert "Condition" not in resource, logical_id
        allowed = {"Type", "Properties", "DependsOn", "DeletionPolicy", "UpdateReplacePolicy"}
        assert set(resource) <= allowed, logical_id
        refs = _references(resource) | set(resource.get("DependsOn", []))
        unknown = refs - set(typed) - set(template["Parameters"])
        assert not unknown, f"{logical_id} refers to {unknown}, which the local stack drops"


def test_local_template_lints_and_deploys_to_moto(tmp_path: Path) -> None:
    local = _local_template()
    assert set(local["Parameters"]) == {"Stage"}
    path = tmp_path / "local.json"
    path.write_text(json.dumps(local))
    proc = subprocess.run(
        [_tool("cfn-lint"), "--format", "parseable", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # In a child interpreter: moto's backends are process-global, and the local stack
    # that other tests start in this process keeps its own tables there.
    proc = subprocess.run(
        [sys.executable, "-c", _MOTO_DEPLOY, str(path)],
        env=_scrubbed_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert sorted(summary["tables"]) == sorted(
        row["name"].replace("{stage}", "pkgtest") for row in DOC["table (logical id)"]
    )
    indexes = ["by_capture_due", "by_creator", "by_grace", "by_schedule", "by_state"]
    assert summary["spaces_indexes"] == indexes
    assert summary["redrive"] == {
        "sohbet-pkgtest-moderation": ["sohbet-pkgtest-moderation-dlq", 5],
        "sohbet-pkgtest-fanout": ["sohbet-pkgtest-fanout-dlq", 3],
        "sohbet-pkgtest-notify": ["sohbet-pkgtest-notify-dlq", 5],
    }


_MOTO_DEPLOY = """
import json, sys
import boto3
from moto import mock_aws

with mock_aws():
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    cfn.create_stack(
        StackName="sohbet-pkgtest",
        TemplateBody=open(sys.argv[1]).read(),
        Parameters=[{"ParameterKey": "Stage", "ParameterValue": "pkgtest"}],
    )
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    spaces = ddb.describe_table(TableName="sohbet-pkgtest-spaces")["Table"]
    redrive = {}
    for url in sqs.list_queues()["QueueUrls"]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if "RedrivePolicy" in attrs:
            policy = json.loads(attrs["RedrivePolicy"])
            redrive[url.rsplit("/", 1)[1]] = [
                policy["deadLetterTargetArn"].rsplit(":", 1)[1], int(policy["maxReceiveCount"])
            ]
    print(json.dumps({
        "tables": ddb.list_tables()["TableNames"],
        "spaces_indexes": sorted(g["IndexName"] for g in spaces["GlobalSecondaryIndexes"]),
        "redrive": redrive,
    }))
"""


# -- IAM policies -----------------------------------------------------------------

# Actions whose IAM definition has no resource type, so "*" is the only possible Resource.
UNSCOPED_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "chime:CreateMeeting",
}
# What Lambda itself needs of a function's role, whatever the code calls: its logs, X-Ray
# segments (tracing is Active), and an SQS event source's receive/delete/attributes.
# https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html
PLATFORM_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}
CONSUMER_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
# The functions that consume a queue, with the queue (name suffix) each may receive from.
CONSUMERS = {"on_fanout_shard": "fanout", "on_moderation_report": "moderation", "on_notify": "notify"}


def _policy_file(stage: str, function: str | None = None) -> str:
    """The policy file Chalice gives a function, by its own config lookup order."""
    stage_config = CHALICE_CONFIG["stages"][stage]
    own = stage_config.get("lambda_functions", {}).get(function or "", {}).get("iam_policy_file")
    return own or stage_config.get("iam_policy_file", f"policy-{stage}.json")


def _policy(stage: str, function: str | None = None) -> dict[str, Any]:
    return json.loads((REPO / ".chalice" / _policy_file(stage, function)).read_text())


def _actions(policy: dict[str, Any]) -> set[str]:
    return {a for statement in policy["Statement"] for a in statement["Action"]}


@pytest.mark.parametrize("stage", sorted(CHALICE_CONFIG["stages"]))
def test_policies_are_least_privilege(stage: str) -> None:
    assert CHALICE_CONFIG["autogen_policy"] is False
    base = _policy(stage)
    for function in FUNCTIONS:
        policy = _policy(stage, function)
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            stmt_actions = statement["Action"]
            assert isinstance(stmt_actions, list)
            for action in stmt_actions:
                assert "*" not in action, action
            resources = statement["Resource"]
            if resources == "*":
                assert set(stmt_actions) <= UNSCOPED_ACTIONS, statement["Sid"]
                continue
            for arn in resources:
                service = arn.split(":")[2]
                assert {a.split(":")[0] for a in stmt_actions} == {service}, statement["Sid"]
                if service in {"dynamodb", "sqs", "logs"}:
                    assert f"sohbet-{stage}-" in arn, arn
                if service == "execute-api":
                    assert f"/{stage}/" in arn and arn.endswith("/@connections/*"), arn
        actions = _actions(policy)
        assert "dynamodb:Scan" not in actions  # no Scan anywhere (docs/data-model.md)
        # Receiving from a queue: only its consumer, only its own queue.
        extra = [st for st in policy["Statement"] if st not in base["Statement"]]
        if function in CONSUMERS:
            assert [(set(st["Action"]), st["Resource"]) for st in extra] == [
                (CONSUMER_ACTIONS, [f"arn:aws:sqs:*:*:sohbet-{stage}-{CONSUMERS[function]}"])
            ], function
        elif function == "broadcast_authorizer":
            # Less than the rest: it reads one member item, nothing else.
            assert actions == {*PLATFORM_ACTIONS, "dynamodb:GetItem"}, actions
            (tables,) = [st for st in policy["Statement"] if st["Sid"] == "Tables"]
            assert tables["Resource"] == [f"arn:aws:dynamodb:*:*:table/sohbet-{stage}-members"]
        else:
            assert extra == [] and not actions & CONSUMER_ACTIONS, function


def test_stage_policies_differ_only_in_the_stage() -> None:
    stages = sorted(CHALICE_CONFIG["stages"])

    def generic(stage: str, function: str | None) -> str:
        text = json.dumps(_policy(stage, function)).replace(f"/{stage}/", "/{stage}/")
        return text.replace(f"sohbet-{stage}-", "sohbet-{stage}-")

    for function in [None, *FUNCTIONS]:
        reference = generic(stages[0], function)
        for stage in stages[1:]:
            assert generic(stage, function) == reference, (stage, function)


def test_every_function_role_carries_its_policy(sam: dict[str, Any]) -> None:
    functions = _functions(sam)
    for name, logical_id in FUNCTIONS.items():
        role = functions[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        documents = [p["PolicyDocument"] for p in sam["Resources"][role]["Properties"]["Policies"]]
        assert documents == [_policy(STAGE, name)], logical_id


# How the code reaches AWS, read from its source: PynamoDB model and transaction calls,
# boto3 client calls (Chime through ChimeMediaAdapter._call/_delete's method names).
CODE_CALLS = {
    r"\.query\(|\b[A-Z]\w*\.count\(": "dynamodb:Query",
    r"\.scan\(": "dynamodb:Scan",
    r"\.save\(": "dynamodb:PutItem",
    r"\.update\([^()]*?actions\s*=": "dynamodb:UpdateItem",
    r"\.delete\(": "dynamodb:DeleteItem",
    r"\b[A-Z]\w*\.get\(|\.refresh\(|\bTransactGet\b": "dynamodb:GetItem",
    r"\.batch_get\(": "dynamodb:BatchGetItem",
    r"\.batch_write\(": "dynamodb:BatchWriteItem",
    r"\.condition_check\(": "dynamodb:ConditionCheckItem",
    r"\b[A-Z]\w*\.(exists|describe_table)\(\)": "dynamodb:DescribeTable",
    r"\.send_message(_batch)?\(": "sqs:SendMessage",
    r"\.(post_to|delete|get)_connection\(": "execute-api:ManageConnections",
    r"\bpublisher\(\)\.publish\(": "appsync:EventPublish",
    r"generate_presigned_url\(\s*\"get_object\"": "s3:GetObject",
    r"\.put_object_tagging\(": "s3:PutObjectTagging",
    r"get_paginator\(\"list_objects_v2\"\)": "s3:ListBucket",
    r"\.create_platform_endpoint\(": "sns:CreatePlatformEndpoint",
    r"\.get_endpoint_attributes\(": "sns:GetEndpointAttributes",
    r"\.set_endpoint_attributes\(": "sns:SetEndpointAttributes",
    r"\.delete_endpoint\(": "sns:DeleteEndpoint",
    r"\bsns\(\)\.publish\(": "sns:Publish",
}


def _called_actions() -> set[str]:
    called: set[str] = set()
    for path in sorted((REPO / "chalicelib").rglob("*.py")):
        text = path.read_text()
        called |= {action for pattern, action in CODE_CALLS.items() if re.search(pattern, text, re.S)}
        for method in re.findall(r"\._(?:call|delete)\(\s*\"\w+\",\s*\"(\w+)\"", text):
            called.add("chime:" + "".join(part.title() for part in method.split("_")))
    return called


def test_policies_grant_exactly_what_the_code_calls() -> None:
    called = _called_actions()
    assert {"dynamodb:Query", "sqs:SendMessage", "chime:CreateAttendee"} <= called  # the scan works
    template_granted = set().union(*(_actions(p["PolicyDocument"]) for p in _template_policies().values()))
    assert template_granted == {"appsync:EventPublish"}
    for stage in sorted(CHALICE_CONFIG["stages"]):
        granted = template_granted.union(*(_actions(_policy(stage, f)) for f in FUNCTIONS))
        missing = called - granted
        assert not missing, f"the code calls {sorted(missing)}: grant them in .chalice/policy-{stage}*.json"
        unused = granted - called - PLATFORM_ACTIONS - CONSUMER_ACTIONS
        assert not unused, f"policy-{stage}*.json grants {sorted(unused)}, which no code calls: remove them"


def _template_policies() -> dict[str, dict[str, Any]]:
    """The IAM policies infra/template.yaml itself attaches to the functions' roles."""
    template = _merge_template()
    return {
        k: r["Properties"] for k, r in template["Resources"].items() if r.get("Type") == "AWS::IAM::Policy"
    }


def test_the_broadcast_tier_is_wired_least_privilege(sam: dict[str, Any]) -> None:
    resources = sam["Resources"]
    api = resources["EventApi"]["Properties"]["EventConfig"]
    # Only IAM publishes (our functions); only the Lambda authorizer connects and subscribes.
    assert api["DefaultPublishAuthModes"] == [{"AuthType": "AWS_IAM"}]
    assert api["ConnectionAuthModes"] == api["DefaultSubscribeAuthModes"] == [{"AuthType": "AWS_LAMBDA"}]
    (lambda_auth,) = [p for p in api["AuthProviders"] if p["AuthType"] == "AWS_LAMBDA"]
    assert lambda_auth["LambdaAuthorizerConfig"] == {
        "AuthorizerUri": {"Fn::GetAtt": ["BroadcastAuthorizer", "Arn"]},
        "AuthorizerResultTtlInSeconds": 0,  # membership is read at every subscribe
    }
    assert _functions(sam)["BroadcastAuthorizer"]["Properties"]["Handler"] == "app.broadcast_authorizer"
    namespace = resources["SpacesChannelNamespace"]["Properties"]
    assert namespace["Name"] == "spaces"  # chalicelib.broadcast.NAMESPACE
    assert namespace["PublishAuthModes"] == [{"AuthType": "AWS_IAM"}]
    permission = resources["BroadcastAuthorizerInvokePermission"]["Properties"]
    assert permission["Principal"] == "appsync.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["EventApi", "ApiArn"]}

    (policy,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::IAM::Policy"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["appsync:EventPublish"]
    assert statement["Resource"] == {"Fn::GetAtt": ["SpacesChannelNamespace", "ChannelNamespaceArn"]}
    # Every function that can broadcast, and no other.
    functions = _functions(sam)
    roles = {functions[f]["Properties"]["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS.values()}
    never = {"OnModerationReportRole", "BroadcastAuthorizerRole", "OnNotifyRole"}  # notify: sockets only
    assert {r["Ref"] for r in policy["Roles"]} == roles - never


# -- deploy script and CI ---------------------------------------------------------


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\nset -eu\n" + body)
    path.chmod(0o755)


# A stand-in for the AWS CLI: logs each call; describe-stacks answers $STUB_STATUS (or
# "does not exist"), list-stack-resources answers $STUB_LEFT.
AWS_STUB = """
echo "aws $*" >> "$STUB_LOG"
case "$2" in
  describe-stacks)
    [[ "$*" == *StackStatus* ]] || exit 0  # the outputs, after the deploy
    if [[ -z "${STUB_STATUS:-}" ]]; then
      echo "An error occurred (ValidationError): Stack with id x does not exist" >&2; exit 255
    fi
    echo "$STUB_STATUS" ;;
  list-stack-resources) echo "${STUB_LEFT:-}" ;;
esac
"""
# A stand-in for chalice package: a WebSocket API with one route, in the output directory.
CHALICE_STUB = """
echo "chalice $*" >> "$STUB_LOG"
mkdir -p "${!#}"
cat > "${!#}/sam.yaml" <<'YAML'
Resources:
  WebsocketAPI: {Type: AWS::ApiGatewayV2::Api, Properties: {Name: x, ProtocolType: WEBSOCKET}}
  WebsocketMessageRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: {Ref: WebsocketAPI}, RouteKey: $default}
  WebsocketAPIDeployment:
    Type: AWS::ApiGatewayV2::Deployment
    DependsOn: [WebsocketMessageRoute]
    Properties: {ApiId: {Ref: WebsocketAPI}}
  WebsocketAPIStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: {Ref: WebsocketAPI}, DeploymentId: {Ref: WebsocketAPIDeployment}, StageName: dev}
YAML
"""


def _deploy_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stub(bin_dir / "aws", AWS_STUB)
    _stub(bin_dir / "chalice", CHALICE_STUB)
    return _scrubbed_env(tmp_path) | {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "CHALICE": str(bin_dir / "chalice"),
        "PYTHON": sys.executable,
        "OUT_DIR": str(tmp_path / "out"),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "DEPLOY_BUCKET": "artefacts",
        "AUTH_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_x",
        "AUTH_AUDIENCE": "client123",
    }


def _deploy(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = Path(env["STUB_LOG"])
    log.unlink(missing_ok=True)
    proc = subprocess.run(
        ["bash", str(REPO / "infra" / "deploy.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, log.read_text().splitlines() if log.exists() else []


def test_deploy_script_packages_uploads_and_deploys(tmp_path: Path) -> None:
    env = _deploy_env(tmp_path)
    out = env["OUT_DIR"]
    apns = "arn:aws:sns:us-east-1:123456789012:app/APNS/sohbet"
    proc, calls = _deploy(
        env
        | {
            "ALARM_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:ops",
            "APNS_PLATFORM_APPLICATION_ARN": apns,
        },
        "dev",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls[0].startswith("aws cloudformation describe-stacks --stack-name sohbet-dev")
    assert calls[1] == f"chalice package --stage dev --merge-template infra/template.yaml {out}"
    assert calls[2].startswith(f"aws cloudformation package --template-file {out}/sam.yaml")
    assert "--s3-bucket artefacts" in calls[2]
    assert calls[3].startswith(f"aws cloudformation deploy --template-file {out}/packaged.yaml")
    for part in (
        "--stack-name sohbet-dev",
        "--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND",
        "Stage=dev AuthIssuer=https://cognito-idp.us-east-1.amazonaws.com/us-east-1_x AuthAudience=client123",
        "AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:ops",
        f"ApnsPlatformApplicationArn={apns} ApnsSandboxPlatformApplicationArn= FcmPlatformApplicationArn=",
    ):
        assert part in calls[3]
    # The WebSocket deployment in what is uploaded is pinned to the routes.
    resources = yaml.safe_load(Path(out, "sam.yaml").read_text())["Resources"]
    assert "WebsocketAPIDeployment" not in resources
    assert resources["WebsocketAPIStage"]["Properties"]["DeploymentId"]["Ref"].startswith(
        "WebsocketAPIDeployment"
    )

    for bad_env, args in (({"AWS_DEFAULT_REGION": ""}, ["dev"]), ({}, ["nosuchstage"]), ({}, [])):
        proc, calls = _deploy(env | bad_env, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert calls == []


def test_deploy_script_deletes_an_empty_failed_first_create_then_deploys(tmp_path: Path) -> None:
    env = _deploy_env(tmp_path) | {"STUB_STATUS": "ROLLBACK_COMPLETE", "STUB_LEFT": ""}
    proc, calls = _deploy(env, "dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ROLLBACK_COMPLETE" in proc.stdout and "describe-stack-events" in proc.stdout
    assert calls[1].startswith("aws cloudformation list-stack-resources --stack-name sohbet-dev")
    assert calls[2] == "aws cloudformation delete-stack --stack-name sohbet-dev"
    assert calls[3] == "aws cloudformation wait stack-delete-complete --stack-name sohbet-dev"
    assert calls[4].startswith("chalice package")
    assert calls[-1].startswith("aws cloudformation describe-stacks")  # the outputs, after the deploy


@pytest.mark.parametrize(
    ("status", "left", "says"),
    [
        ("ROLLBACK_COMPLETE", "SpacesTable", "still holds: SpacesTable"),
        ("UPDATE_IN_PROGRESS", "", "wait for it to finish"),
        ("UPDATE_ROLLBACK_FAILED", "", "continue-update-rollback"),
    ],
)
def test_deploy_script_stops_on_a_stack_it_cannot_deploy_to(
    tmp_path: Path, status: str, left: str, says: str
) -> None:
    env = _deploy_env(tmp_path) | {"STUB_STATUS": status, "STUB_LEFT": left}
    proc, calls = _deploy(env, "dev")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert not [
        c
        for c in calls
        if c.startswith(("chalice", "aws cloudformation deploy", "aws cloudformation delete"))
    ]


def test_ci_workflow_passes_actionlint() -> None:
    workflow = REPO / ".github" / "workflows" / "ci.yml"
    proc = subprocess.run(
        [_tool("actionlint"), "-no-color", str(workflow)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = workflow.read_text()
    assert "aws-access-key-id" not in text and "secrets.AWS" not in text
    for uses in re.findall(r"uses:\s*(\S+)", text):
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"not pinned to a commit: {uses}"


# -- sizing, guards and operations (docs/deploy.md) -------------------------------

# Chalice's name for each function (.chalice/config.json lambda_functions) -> logical id.
FUNCTIONS = {
    "api_handler": "APIHandler",
    "websocket_connect": "WebsocketConnect",
    "websocket_message": "WebsocketMessage",
    "websocket_disconnect": "WebsocketDisconnect",
    "on_moderation_report": "OnModerationReport",
    "on_fanout_shard": "OnFanoutShard",
    "on_notify": "OnNotify",
    "sweep": "Sweep",
    "broadcast_authorizer": "BroadcastAuthorizer",
    "on_chime_event": "OnChimeEvent",
}


def test_functions_are_sized_traced_and_reserved_as_configured(sam: dict[str, Any]) -> None:
    functions = _functions(sam)
    assert set(functions) == set(FUNCTIONS.values())
    configured = CHALICE_CONFIG["lambda_functions"]
    assert set(configured) == set(FUNCTIONS)
    for name, logical_id in FUNCTIONS.items():
        props = functions[logical_id]["Properties"]
        assert props["Tracing"] == "Active", logical_id  # X-Ray on every entry point
        assert props["MemorySize"] == configured[name]["lambda_memory_size"] > 128, logical_id
        assert props["Timeout"] == configured[name]["lambda_timeout"], logical_id
    # API Gateway gives up on an integration after 29 s: no WebSocket or REST handler runs longer.
    for logical_id in ("APIHandler", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect"):
        assert functions[logical_id]["Properties"]["Timeout"] <= 29, logical_id
    # $default keeps a share of the account's concurrency that no broadcast can take.
    reserved = CHALICE_CONFIG["stages"][STAGE]["lambda_functions"]["websocket_message"][
        "reserved_concurrency"
    ]
    assert functions["WebsocketMessage"]["Properties"]["ReservedConcurrentExecutions"] == reserved
    # One sweep at a time, within its one-minute schedule.
    sweep = functions["Sweep"]["Properties"]
    assert sweep["ReservedConcurrentExecutions"] == 1
    assert sweep["Timeout"] < 60


def test_queue_consumers_have_a_maximum_concurrency(sam: dict[str, Any]) -> None:
    functions = _functions(sam)
    for logical_id, most in (("OnFanoutShard", 100), ("OnModerationReport", 5), ("OnNotify", 50)):
        events = functions[logical_id]["Properties"]["Events"]
        (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
        assert sqs["ScalingConfig"] == {"MaximumConcurrency": most}
    reserved = functions["WebsocketMessage"]["Properties"]["ReservedConcurrentExecutions"]
    # The account's default 1,000, less what is reserved, leaves the fan-out its cap and more.
    assert 1000 - reserved - 1 >= 100 + 5 + 50 + 100


def test_sweep_is_never_retried_into_an_overlapping_run(sam: dict[str, Any]) -> None:
    sweep = _functions(sam)["Sweep"]["Properties"]
    assert sweep["EventInvokeConfig"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    (schedule,) = [e["Properties"] for e in sweep["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}


def test_chimes_meeting_events_reach_their_function(sam: dict[str, Any]) -> None:
    """Chime sends "Chime Meeting State Change" events to EventBridge in the control Region; the rule
    routes chime:MeetingEnded and the attendees' audio connections (AttendeeJoined, AttendeeLeft,
    AttendeeDropped) to on_chime_event, and nothing else: every matched event is an invocation
    (docs/media.md). https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html"""
    from devstack.media.events import matches

    events = _functions(sam)["OnChimeEvent"]["Properties"]["Events"]
    (rule,) = [e["Properties"] for e in events.values() if e["Type"] == "CloudWatchEvent"]

    def event(event_type: str) -> dict[str, Any]:
        return {
            "source": "aws.chime",
            "detail-type": "Chime Meeting State Change",
            "detail": {"eventType": event_type, "meetingId": "m", "externalMeetingId": "s"},
        }

    routed = ["MeetingEnded", "AttendeeJoined", "AttendeeLeft", "AttendeeDropped"]
    for name in routed:
        assert matches(rule["Pattern"], event(f"chime:{name}")), name
    for name in ["MeetingStarted", "AttendeeAdded", "AttendeeDeleted", "AttendeeAuthorized"]:
        assert not matches(rule["Pattern"], event(f"chime:{name}")), name
    assert not matches(rule["Pattern"], {**event("chime:MeetingEnded"), "source": "aws.events"})


def test_websocket_stage_is_throttled_and_logs_disconnects(sam: dict[str, Any]) -> None:
    stage = sam["Resources"]["WebsocketAPIStage"]["Properties"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] <= 10_000  # the account's RPS
    assert stage["RouteSettings"]["$connect"]["ThrottlingRateLimit"] <= 500  # new connections/s
    logs = stage["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["WebsocketAccessLogs", "Arn"]}
    record = json.loads(logs["Format"])
    assert record["disconnectStatusCode"] == "$context.disconnectStatusCode"
    assert record["disconnectReason"] == "$context.disconnectReason"
    assert {"$context.connectionId", "$context.eventType", "$context.status"} <= set(record.values())
    assert not [v for v in record.values() if "querystring" in v.lower()]  # tokens stay out of logs


def test_websocket_deployment_follows_the_routes(sam: dict[str, Any]) -> None:
    sys.path.insert(0, str(PIN.parent))
    try:
        from pin_websocket_deployment import pin
    finally:
        sys.path.remove(str(PIN.parent))
    resources = sam["Resources"]
    (deployment,) = [k for k, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Deployment"]
    assert deployment.startswith("WebsocketAPIDeployment") and deployment != "WebsocketAPIDeployment"
    assert resources["WebsocketAPIStage"]["Properties"]["DeploymentId"] == {"Ref": deployment}
    assert deployment not in json.dumps({k: r for k, r in resources.items() if k != deployment}).replace(
        '"Ref": "' + deployment + '"', ""
    )

    # Same routes, same id; a changed route, a new id (so CloudFormation deploys it).
    unpinned = json.loads(json.dumps(sam).replace(deployment, "WebsocketAPIDeployment"))
    assert deployment in pin(copy.deepcopy(unpinned))["Resources"]
    unpinned["Resources"]["WebsocketMessageRoute"]["Properties"]["RouteKey"] = "send"
    again = pin(unpinned)["Resources"]
    assert deployment not in again
    (new,) = [k for k, r in again.items() if r["Type"] == "AWS::ApiGatewayV2::Deployment"]
    assert again["WebsocketAPIStage"]["Properties"]["DeploymentId"] == {"Ref": new}


def _alarms(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in sam["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _alarmed(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of every metric an alarm watches."""
    if "MetricName" in alarm:
        return [
            (alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]})
        ]
    found = []
    for m in alarm["Metrics"]:
        if "MetricStat" in m:
            metric = m["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            found.append((metric["Namespace"], metric["MetricName"], dims))
    return found


def test_alarms_watch_every_dlq_function_queue_and_api(sam: dict[str, Any]) -> None:
    alarms = _alarms(sam)
    watched = [w for alarm in alarms.values() for w in _alarmed(alarm)]
    resources = sam["Resources"]

    dlqs = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in resources.values()
        if q["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in q["Properties"]
    }
    for dlq in dlqs:
        assert (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}},
        ) in (watched), dlq
    age = {"QueueName": {"Fn::GetAtt": ["ModerationQueue", "QueueName"]}}
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", age) in watched  # the oldest report
    for logical_id in _functions(sam):
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, {"FunctionName": {"Ref": logical_id}}) in watched, (
                logical_id,
                metric,
            )
    websocket = {"ApiId": {"Ref": "WebsocketAPI"}, "Stage": {"Ref": "Stage"}}
    assert ("AWS/ApiGateway", "IntegrationError", websocket) in watched
    assert ("AWS/ApiGateway", "ExecutionError", websocket) in watched
    assert ("AWS/ApiGateway", "5XXError", {"ApiName": "sohbet", "Stage": {"Ref": "Stage"}}) in watched

    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == topic and alarm["OKActions"] == topic, name
        assert alarm["AlarmName"]["Fn::Sub"].startswith("sohbet-${Stage}-"), name


def test_dashboard_shows_every_function_queue_and_custom_metric(sam: dict[str, Any]) -> None:
    body = sam["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    text = json.dumps(widgets)
    for logical_id in _functions(sam):
        assert "${" + logical_id + "}" in text, logical_id
    for queue in ("ModerationQueue", "FanoutQueue", "NotifyQueue", "ModerationDLQ", "FanoutDLQ", "NotifyDLQ"):
        assert "${" + queue + ".QueueName}" in text, queue
    for metric in ("Joins", "Leaves", "Commands", "FanoutPosts", "Gone", "Retries429", "FanoutShards"):
        assert f'"{metric}"' in text or f'MetricName=\\"{metric}\\"' in text, metric
    for metric in ("Reports", "TriageLatency", "AdminActions", "NotificationsTold", "PushesSent"):
        assert f'"{metric}"' in text or f'MetricName=\\"{metric}\\"' in text, metric
