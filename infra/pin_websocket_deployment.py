"""Name Chalice's WebSocket deployment after the routes it snapshots, so a redeploy deploys them.

API Gateway serves a WebSocket stage from a deployment, a snapshot of the API: a changed
route or integration is live only once a new deployment exists. CloudFormation creates
an AWS::ApiGatewayV2::Deployment once and, its properties never changing, never again.
Renaming Chalice's `WebsocketAPIDeployment` to `WebsocketAPIDeployment<hash>` (a hash of
the routes, integrations and their responses) makes CloudFormation create a new
deployment whenever they change, move the stage to it, then delete the old one.
https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-set-up-websocket-deployment.html

    python infra/pin_websocket_deployment.py out/dev/sam.yaml   # rewrites it in place
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOYMENT = "WebsocketAPIDeployment"
API = "WebsocketAPI"
SNAPSHOT_TYPES = {
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::RouteResponse",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::IntegrationResponse",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Model",
}


def _rename(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "Ref" and value == old:
                out[key] = new
            elif key == "DependsOn":
                deps = value if isinstance(value, list) else [value]
                out[key] = [new if d == old else d for d in deps]
            else:
                out[key] = _rename(value, old, new)
        return out
    if isinstance(node, list):
        return [_rename(item, old, new) for item in node]
    return node


def pin(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the WebSocket deployment's logical id bound to the routes' definitions."""
    resources = template["Resources"]
    if DEPLOYMENT not in resources:
        raise SystemExit(f"{DEPLOYMENT} not in the template: already pinned, or Chalice renamed it")
    snapshot = {
        name: res
        for name, res in resources.items()
        if res.get("Type") in SNAPSHOT_TYPES and res.get("Properties", {}).get("ApiId") == {"Ref": API}
    }
    if not snapshot:
        raise SystemExit(f"no route or integration of {API} in the template")
    digest = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:12]
    new = f"{DEPLOYMENT}{digest}"
    pinned = _rename(template, DEPLOYMENT, new)
    pinned["Resources"] = {(new if k == DEPLOYMENT else k): v for k, v in pinned["Resources"].items()}
    return pinned


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    template = yaml.safe_load(path.read_text())
    pinned = pin(template)
    path.write_text(yaml.safe_dump(pinned, sort_keys=False, width=1000))
    new = next(k for k in pinned["Resources"] if k.startswith(DEPLOYMENT))
    print(f"WebSocket deployment: {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
