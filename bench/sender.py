"""Sender-side CPU per @connections post, apart from any gateway's.

`python -m bench.sender [-n 2000]` posts to a trivial keep-alive HTTP server on
loopback (it answers 200 and nothing else, in its own thread) and reads the
sending thread's own CPU time (`time.thread_time`), so the server's work is not
counted. Four ways to post the same signed request:

- `http.client` keep-alive, unsigned: the floor;
- sohbet's `SignedPoster` (hmac SigV4 with a cached signing key, http.client);
- the previous `SignedPoster` (botocore's SigV4Auth + urllib3), kept here only to
  measure against;
- boto3's `post_to_connection` (the naive baseline's path).
"""

from __future__ import annotations

import argparse
import http.client
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

REGION = "us-east-1"
BODY = b'{"type":"event","event":"stage.changed","space_id":"sp-1","seq":42,"reason":"request_approved"}'


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def trivial_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


class PreviousPoster:
    """The fan-out path before issue 13: botocore's SigV4Auth per request, urllib3 pool."""

    def __init__(self, endpoint: str, region: str) -> None:
        import boto3
        import urllib3
        from botocore.auth import SigV4Auth

        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self._session = boto3.session.Session()
        self._signer_class = SigV4Auth
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=4, block=True, retries=False)

    def post(self, connection_id: str, data: bytes) -> int:
        from botocore.awsrequest import AWSRequest

        url = f"{self.endpoint}/@connections/{quote(connection_id, safe='')}"
        credentials = self._session.get_credentials()
        request = AWSRequest(method="POST", url=url, data=data)
        self._signer_class(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return int(self._pool.request("POST", url, body=data, headers=dict(request.headers.items())).status)


def cpu_per_post(post: Callable[[str], Any], n: int) -> float:
    """Milliseconds of this thread's CPU per post (after a warm-up)."""
    for i in range(20):
        post(f"warm-{i}")
    started = time.thread_time()
    for i in range(n):
        post(f"conn-{i}=")
    return (time.thread_time() - started) / n * 1e3


def measure(n: int = 2000) -> dict[str, float]:
    """CPU ms per post for each way of posting (credentials from the environment or dummies)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    import boto3

    from chalicelib.push import SignedPoster

    with trivial_server() as endpoint:
        host = endpoint.removeprefix("http://")
        plain = http.client.HTTPConnection(*host.split(":"))

        def unsigned(cid: str) -> int:
            plain.request("POST", f"/@connections/{quote(cid, safe='')}", body=BODY)
            response = plain.getresponse()
            response.read()
            return response.status

        ours = SignedPoster(endpoint, REGION, workers=1)
        previous = PreviousPoster(endpoint, REGION)
        client = boto3.session.Session().client(
            "apigatewaymanagementapi", endpoint_url=endpoint, region_name=REGION
        )
        return {
            "http.client keep-alive, unsigned": cpu_per_post(unsigned, n),
            "sohbet SignedPoster (hmac SigV4, http.client)": cpu_per_post(lambda c: ours.post(c, BODY), n),
            "previous SignedPoster (botocore SigV4Auth, urllib3)": cpu_per_post(
                lambda c: previous.post(c, BODY), n
            ),
            "boto3 post_to_connection (naive)": cpu_per_post(
                lambda c: client.post_to_connection(ConnectionId=c, Data=BODY), n
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    for name, ms in measure(args.n).items():
        print(f"{name:55} {ms:6.3f} ms CPU per post")


if __name__ == "__main__":
    main()
