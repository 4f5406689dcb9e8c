#!/usr/bin/env bash
# Deploy one stage of sohbet with CloudFormation (what CI runs; see docs/deploy.md).
#
#   chalice package  -> out/<stage>/sam.yaml (+ deployment.zip), merged with infra/template.yaml
#   aws cloudformation package -> uploads the zip to $DEPLOY_BUCKET, rewrites CodeUri
#   aws cloudformation deploy  -> stack sohbet-<stage>
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: infra/deploy.sh STAGE

  STAGE               a stage of .chalice/config.json (dev, prod)

required environment:
  AWS_DEFAULT_REGION  region to deploy to
  DEPLOY_BUCKET       S3 bucket for the Lambda deployment package
  AUTH_ISSUER         Cognito issuer URL, https://cognito-idp.<region>.amazonaws.com/<pool-id>
  AUTH_AUDIENCE       Cognito app client id
optional:
  DEPLOY_NO_EXECUTE=1 create the change set but do not execute it (review first)
  CHALICE             chalice executable (default: .venv/bin/chalice if present, else chalice)
  OUT_DIR             build directory, emptied first (default: out/<STAGE>)

AWS credentials come from the environment (CI: OIDC role via configure-aws-credentials).
The stack is named sohbet-<STAGE>: the IAM policies in .chalice/ rely on that prefix.
EOF
  exit 2
}

[[ $# -eq 1 ]] || usage
case "$1" in -h | --help) usage ;; esac
STAGE="$1"

missing=()
for var in AWS_DEFAULT_REGION DEPLOY_BUCKET AUTH_ISSUER AUTH_AUDIENCE; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "deploy.sh: missing environment: ${missing[*]}" >&2
  usage
fi

cd "$(dirname "$0")/.."

if ! python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(open(".chalice/config.json"))["stages"])' "$STAGE"; then
  echo "deploy.sh: '$STAGE' is not a stage in .chalice/config.json" >&2
  exit 2
fi

if [[ -z "${CHALICE:-}" ]]; then
  if [[ -x .venv/bin/chalice ]]; then CHALICE=.venv/bin/chalice; else CHALICE=chalice; fi
fi

STACK="sohbet-${STAGE}"
OUT="${OUT_DIR:-out/${STAGE}}"
rm -rf "$OUT"

echo "==> chalice package (stage ${STAGE})"
"$CHALICE" package --stage "$STAGE" --merge-template infra/template.yaml "$OUT"

echo "==> aws cloudformation package -> s3://${DEPLOY_BUCKET}/sohbet/${STAGE}/"
aws cloudformation package \
  --template-file "$OUT/sam.yaml" \
  --s3-bucket "$DEPLOY_BUCKET" \
  --s3-prefix "sohbet/${STAGE}" \
  --output-template-file "$OUT/packaged.yaml"

echo "==> aws cloudformation deploy (stack ${STACK}, region ${AWS_DEFAULT_REGION})"
extra=()
[[ "${DEPLOY_NO_EXECUTE:-}" == "1" ]] && extra+=(--no-execute-changeset)
aws cloudformation deploy \
  --template-file "$OUT/packaged.yaml" \
  --stack-name "$STACK" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --parameter-overrides \
    "Stage=${STAGE}" \
    "AuthIssuer=${AUTH_ISSUER}" \
    "AuthAudience=${AUTH_AUDIENCE}" \
  --tags "app=sohbet" "stage=${STAGE}" \
  --no-fail-on-empty-changeset \
  "${extra[@]}"

aws cloudformation describe-stacks --stack-name "$STACK" \
  --query 'Stacks[0].Outputs[?OutputKey==`EndpointURL` || OutputKey==`WebsocketConnectEndpointURL`]' \
  --output table
