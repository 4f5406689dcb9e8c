#!/usr/bin/env bash
# Deploy one stage of sohbet with CloudFormation (what CI runs; see docs/deploy.md).
#
#   the stack's state   -> a dead first create (ROLLBACK_COMPLETE) is deleted when it
#                          holds nothing, or the script stops and says what to do
#   chalice package  -> out/<stage>/sam.yaml (+ deployment.zip), merged with infra/template.yaml
#   pin_websocket_deployment.py -> a new WebSocket deployment whenever the routes change
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
  ALARM_TOPIC_ARN     SNS topic the CloudWatch alarms notify (default: none)
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

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

STACK="sohbet-${STAGE}"
OUT="${OUT_DIR:-out/${STAGE}}"

# The stack's status, or NONE when it does not exist.
stack_status() {
  local out
  if out=$(aws cloudformation describe-stacks --stack-name "$STACK" \
    --query 'Stacks[0].StackStatus' --output text 2>&1); then
    echo "${out:-NONE}"
  elif [[ "$out" == *"does not exist"* ]]; then
    echo NONE
  else
    echo "deploy.sh: cannot read the state of stack ${STACK}: ${out}" >&2
    return 1
  fi
}

echo "==> stack ${STACK}"
status=$(stack_status)
case "$status" in
  ROLLBACK_COMPLETE)
    # A first create that failed and rolled back: CloudFormation can only delete it.
    # Safe to delete when the rollback removed everything it had created (tables are
    # RetainExceptOnCreate, so a failed create keeps none of them).
    left=$(aws cloudformation list-stack-resources --stack-name "$STACK" \
      --query 'StackResourceSummaries[?ResourceStatus!=`DELETE_COMPLETE`].LogicalResourceId' --output text)
    if [[ -n "${left// /}" && "$left" != "None" ]]; then
      echo "deploy.sh: stack ${STACK} is ROLLBACK_COMPLETE (its first create failed) but still holds: ${left}." >&2
      echo "  Read why it failed:  aws cloudformation describe-stack-events --stack-name ${STACK}" >&2
      echo "  then delete it once those resources may go: aws cloudformation delete-stack --stack-name ${STACK}" >&2
      exit 1
    fi
    echo "stack ${STACK} is ROLLBACK_COMPLETE (a failed first create, nothing left in it): deleting it"
    echo "  (why it failed: aws cloudformation describe-stack-events --stack-name ${STACK})"
    aws cloudformation delete-stack --stack-name "$STACK"
    aws cloudformation wait stack-delete-complete --stack-name "$STACK"
    ;;
  REVIEW_IN_PROGRESS) echo "status: ${status} (a change set never executed): deploying" ;;
  *_IN_PROGRESS)
    echo "deploy.sh: stack ${STACK} is ${status}: wait for it to finish, then deploy again" >&2
    exit 1
    ;;
  *_FAILED)
    echo "deploy.sh: stack ${STACK} is ${status}; read aws cloudformation describe-stack-events --stack-name ${STACK}." >&2
    echo "  UPDATE_ROLLBACK_FAILED: fix the cause, then aws cloudformation continue-update-rollback --stack-name ${STACK}" >&2
    echo "  DELETE_FAILED / ROLLBACK_FAILED: remove what blocks it, then delete the stack again" >&2
    exit 1
    ;;
  *) echo "status: ${status}" ;;
esac

rm -rf "$OUT"

echo "==> chalice package (stage ${STAGE})"
"$CHALICE" package --stage "$STAGE" --merge-template infra/template.yaml "$OUT"
"$PYTHON" infra/pin_websocket_deployment.py "$OUT/sam.yaml"

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
    "AlarmTopicArn=${ALARM_TOPIC_ARN:-}" \
    "ApnsPlatformApplicationArn=${APNS_PLATFORM_APPLICATION_ARN:-}" \
    "ApnsSandboxPlatformApplicationArn=${APNS_SANDBOX_PLATFORM_APPLICATION_ARN:-}" \
    "FcmPlatformApplicationArn=${FCM_PLATFORM_APPLICATION_ARN:-}" \
  --tags "app=sohbet" "stage=${STAGE}" \
  --no-fail-on-empty-changeset \
  "${extra[@]}"

aws cloudformation describe-stacks --stack-name "$STACK" \
  --query 'Stacks[0].Outputs[?OutputKey==`EndpointURL` || OutputKey==`WebsocketConnectEndpointURL`]' \
  --output table
