"""The template's S3 buckets on moto, configured as CloudFormation would configure them.

moto's CloudFormation creates an AWS::S3::Bucket with its name and encryption but ignores
its public access block, ownership controls and lifecycle rules, and has no
AWS::S3::BucketPolicy at all. This applies those properties of infra/template.yaml with the
S3 API, so the local evidence bucket carries production's configuration (and the tests can
read it back from moto).
"""

from __future__ import annotations

import json
import re
from typing import Any

ACCOUNT = "123456789012"  # moto's default account


def _resolve(node: Any, names: dict[str, str], region: str, stage: str) -> Any:
    """Ref, Fn::Sub and Fn::GetAtt Arn of the template's buckets and pseudo parameters."""
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": region, "AWS::Partition": "aws", "Stage": stage}
    if isinstance(node, dict):
        if "Ref" in node:
            return names.get(node["Ref"]) or pseudo[node["Ref"]]
        if "Fn::GetAtt" in node:
            logical, attribute = node["Fn::GetAtt"]
            assert attribute == "Arn", attribute
            return f"arn:aws:s3:::{names[logical]}"
        if "Fn::Sub" in node:

            def one(match: re.Match[str]) -> str:
                ref = match.group(1)
                if ref.endswith(".Arn"):
                    return f"arn:aws:s3:::{names[ref[:-4]]}"
                return str(names.get(ref) or pseudo[ref])

            return re.sub(r"\$\{([^}]+)\}", one, node["Fn::Sub"])
        return {k: _resolve(v, names, region, stage) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, names, region, stage) for v in node]
    return node


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in rule.get("TagFilters", [])]
    prefix = rule.get("Prefix", "")
    if tags:
        filter_: dict[str, Any] = {"And": {"Prefix": prefix, "Tags": tags}} if prefix else {"Tag": tags[0]}
    else:
        filter_ = {"Prefix": prefix}
    out: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": filter_}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def configure(
    s3: Any, template: dict[str, Any], physical_ids: dict[str, str], region: str, stage: str
) -> None:
    resources = template.get("Resources", {})
    names = {k: physical_ids[k] for k, r in resources.items() if r.get("Type") == "AWS::S3::Bucket"}
    for logical, name in names.items():
        props = resources[logical].get("Properties", {})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        rules = props.get("LifecycleConfiguration", {}).get("Rules")
        if rules:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in rules]}
            )
    for resource in resources.values():
        if resource.get("Type") != "AWS::S3::BucketPolicy":
            continue
        props = _resolve(resource["Properties"], names, region, stage)
        document = dict(props["PolicyDocument"])
        # The local stack speaks plain http on loopback, and moto enforces a bucket policy's
        # denials: a TLS-only statement would refuse every local request.
        document["Statement"] = [s for s in document["Statement"] if not _tls_only(s)]
        s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))


def _tls_only(statement: dict[str, Any]) -> bool:
    return "aws:SecureTransport" in statement.get("Condition", {}).get("Bool", {})
