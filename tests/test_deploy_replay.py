"""CI's deploy job, replayed step by step from .github/workflows/ci.yml on a clean copy of
the repository, in a fresh virtualenv, up to the packaged and merged template.

The steps are read from the workflow itself, so the replay cannot drift from what CI runs.
`run:` steps run as GitHub runs them (bash -e), the actions are emulated (checkout: a
copy of the tracked files; setup-python: this interpreter; configure-aws-credentials: a
region and no credentials), and `aws` is a stub that records its calls: everything up to
`aws cloudformation package` is real, including `chalice package` importing app.py.

The install step pip-installs from the package registry, so the `run:` steps run in the
host's network namespace; an unreachable registry fails the test with a clear message.
pip's cache (~/.cache/pip) keeps later runs at about a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    from netns import run_in_host_netns
except ImportError:  # tests/netns.py not there: the session runs on the host network
    run_in_host_netns = subprocess.run  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
REGION = "us-east-1"
# What the GitHub environment `dev` would hold (docs/deploy.md), for the replay.
VARS = {
    "AWS_DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/replay",
    "AWS_REGION": REGION,
    "DEPLOY_BUCKET": "replay-artefacts",
    "AUTH_ISSUER": f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_replay",
    "AUTH_AUDIENCE": "replayclient",
}
GITHUB = {"run_id": "1", "ref": "refs/heads/main", "event_name": "push"}

AWS_STUB = """#!/usr/bin/env bash
# Stands in for the AWS CLI: records the call; `cloudformation package` copies its input.
set -eu
echo "aws $*" >> "$AWS_STUB_LOG"
if [[ "$1 $2" == "cloudformation package" ]]; then
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --template-file) src="$2"; shift 2 ;;
      --output-template-file) dst="$2"; shift 2 ;;
      *) shift ;;
    esac
  done
  cp "$src" "$dst"
fi
"""


def _expand(text: str) -> str:
    """Evaluate the `${{ vars.X }}` / `${{ github.x }}` expressions the replay knows."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        scope, _, name = expr.partition(".")
        table = {"vars": VARS, "github": GITHUB}.get(scope, {})
        assert name in table, f"the replay cannot evaluate ${{{{ {expr} }}}}: teach it in {__file__}"
        return table[name]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def _checkout(dest: Path) -> None:
    """What actions/checkout gives: the repository's files (here, with uncommitted edits)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _registry_reachable(index: str) -> None:
    probe = (
        "import sys, urllib.request\nurllib.request.urlopen(sys.argv[1] + '/chalice/', timeout=30).read(1)\n"
    )
    proc = run_in_host_netns(
        [sys.executable, "-c", probe, index.rstrip("/")], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, (
        f"the package registry {index} is unreachable from this machine, so CI's deploy install "
        f"cannot be replayed (this test needs it; it does not skip):\n{proc.stderr[-2000:]}"
    )


def _deploy_job() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return workflow["jobs"]["deploy"]


# About a minute with pip's cache; several on a machine busy with other test runs.
@pytest.mark.timeout(1200)
def test_deploy_job_packages_the_app_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    _registry_reachable(index)

    work = tmp_path / "checkout"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_STUB)
    (bin_dir / "aws").chmod(0o755)
    aws_log = tmp_path / "aws.log"

    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update({k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")})
    env |= {
        # No shared virtualenv on PATH: the job's own .venv is all it gets.
        "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "AWS_STUB_LOG": str(aws_log),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    job = _deploy_job()
    transcript: list[str] = []
    for step in job["steps"]:
        label = step.get("name") or step.get("uses") or step.get("run", "").splitlines()[0]
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            _checkout(work)
        elif uses.startswith("actions/setup-python@"):
            wanted = str(step["with"]["python-version"])
            have = f"{sys.version_info.major}.{sys.version_info.minor}"
            assert wanted == have, f"the workflow wants Python {wanted}; this replay runs {have}"
            (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
        elif uses.startswith("aws-actions/configure-aws-credentials@"):
            region = _expand(step["with"]["aws-region"])
            env |= {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
        elif uses:
            raise AssertionError(f"the replay does not know the action {uses}: teach it in {__file__}")
        else:
            shell = step.get("shell")
            assert shell in (None, "bash"), f"step {label!r}: shell {shell!r}"
            flags = ["--noprofile", "--norc", "-eo", "pipefail"] if shell == "bash" else ["-e"]
            step_env = env | {k: _expand(str(v)) for k, v in step.get("env", {}).items()}
            proc = run_in_host_netns(
                ["bash", *flags, "-c", _expand(step["run"])],
                cwd=work / step.get("working-directory", "."),
                env=step_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            output = proc.stdout[-3000:] + proc.stderr[-3000:]
            transcript.append(f"--- {label} (exit {proc.returncode})\n{output}")
            assert proc.returncode == 0, "\n".join(transcript)

    # It reached the AWS part: package and deploy, with the stage's parameters.
    calls = aws_log.read_text().splitlines()
    package = "aws cloudformation package --template-file out/dev/sam.yaml"
    assert any(c.startswith(package) for c in calls), calls
    assert any(c.startswith("aws cloudformation deploy ") and "--stack-name sohbet-dev" in c for c in calls)

    sam = yaml.safe_load((work / "out" / "dev" / "sam.yaml").read_text())
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"
    resources = sam["Resources"]
    assert resources["SpacesTable"]["Type"] == "AWS::DynamoDB::Table"  # the merge template is in
    assert resources["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert all("Type" in r for r in resources.values()), "a patch of a resource Chalice did not emit"
    assert "WebsocketAPIDeployment" not in resources  # pinned to the routes by deploy.sh

    # The Lambda zip holds the app and every runtime requirement.
    with zipfile.ZipFile(work / "out" / "dev" / "deployment.zip") as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    expected = {"app.py", "chalicelib", "pydantic", "pynamodb", "aws_lambda_powertools", "jwt"}
    expected.add("cryptography")
    assert expected <= tops, sorted(expected - tops)
