"""pytest plugin (`-p devstack.pytest_netns`, set in pyproject.toml): the test session's private network.

Loaded while pytest parses its options, before any conftest or test module is imported and
before any thread starts: the session moves into a loopback-only network namespace
(devstack/netns.py), so nothing a test starts (moto, the stack, WebRTC peers, a browser)
can reach another machine. If that cannot be done, the run stops here with the reason;
SOHBET_ALLOW_HOST_NET=1 runs on the host network instead, announced at the start and the end.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.netns import NetworkIsolationError, enter_private_network

try:
    NETWORK = enter_private_network()
except NetworkIsolationError as _err:
    raise pytest.UsageError(f"cannot isolate the test network: {_err}") from _err


def pytest_report_header() -> str:
    return f"network: {NETWORK}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if NETWORK.startswith("HOST NETWORK"):  # said at the end too: -q hides the header
        terminalreporter.write_sep("!", NETWORK, red=True, bold=True)
