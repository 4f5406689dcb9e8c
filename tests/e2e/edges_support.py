"""A local stack in a child process, with the production limits (or any settings) of its own.

The shared `stack` fixture raises the per-connection limits so other tests can
pipeline commands; the limits themselves are tested here, on their defaults.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_PASSED_ENV = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildStack:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.log = tmp / f"stack-{self.port}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", str(self.port)],
            cwd=REPO,
            # A clean environment: the session's in-process stack has set its own (test
            # limits, table names, endpoints) in os.environ, and the child must not inherit them.
            env={**{k: v for k, v in os.environ.items() if k in _PASSED_ENV}, **(env or {})},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "ready in" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the child stack did not start:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        match = re.search(r"embedded AWS \(moto\) (http://\S+)", self.output())
        assert match, self.output()
        self.moto_endpoint = match.group(1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def mint_token(self, user: str, ttl_seconds: int = 3600) -> str:
        req = urllib.request.Request(
            self.base_url + "/dev/token",
            data=json.dumps({"user": user, "ttl_seconds": ttl_seconds}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["token"])

    def url_for(self, user: str) -> str:
        return f"{self.ws_url}?token={self.mint_token(user)}"

    def aws_client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=self.moto_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def children(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
