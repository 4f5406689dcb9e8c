"""The test session's private network namespace (devstack/netns.py, entered by devstack/pytest_netns.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_session_sees_only_loopback_and_can_still_reach_the_host_namespace() -> None:
    if netns.status().startswith("HOST NETWORK"):  # SOHBET_ALLOW_HOST_NET=1: said loudly by the plugin
        assert os.environ.get(netns.ESCAPE_HATCH) == "1"
        return
    assert netns.status().startswith(
        "private network namespace: loopback only"
    )  # "(inherited)" in xdist workers
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    ours = os.readlink("/proc/self/ns/net")
    host = netns.run_in_host_netns(
        ["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True
    )
    assert host.stdout.strip() != ours


def test_entering_after_a_thread_started_fails_clearly() -> None:
    code = (
        "import threading, time, sys; sys.path.insert(0, '.');"
        "threading.Thread(target=time.sleep, args=(2,), daemon=True).start();"
        "from devstack.netns import enter_private_network, NetworkIsolationError\n"
        "try:\n    enter_private_network()\nexcept NetworkIsolationError as e:\n    print('refused:', e)"
    )
    env = {k: v for k, v in os.environ.items() if k not in (netns.ESCAPE_HATCH, netns.HOST_NETNS_ENV)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert "refused:" in out.stdout, (out.stdout, out.stderr)
    assert "threads already run" in out.stdout or "needs root" in out.stdout


_ADOPT = (
    "import sys; sys.path.insert(0, '.');"
    "from devstack.netns import enter_private_network, host_netns_path, NetworkIsolationError\n"
    "try:\n    print(enter_private_network(), host_netns_path())\n"
    "except NetworkIsolationError as e:\n    print('refused:', e)"
)


def test_a_child_of_the_isolated_session_adopts_its_namespace_and_its_way_out() -> None:
    """As pytest-xdist workers do: they inherit the namespace, and reach the host through the parent."""
    if netns.status().startswith("HOST NETWORK"):
        return
    env = {k: v for k, v in os.environ.items() if k != netns.ESCAPE_HATCH}
    assert env.get(netns.HOST_NETNS_ENV) == netns.host_netns_path()
    out = subprocess.run([sys.executable, "-c", _ADOPT], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.stdout.split()[-1] == netns.host_netns_path(), (out.stdout, out.stderr)
    assert "(inherited)" in out.stdout


def test_a_process_in_the_host_namespace_cannot_claim_to_be_isolated() -> None:
    if netns.status().startswith("HOST NETWORK"):
        return
    env = {k: v for k, v in os.environ.items() if k != netns.ESCAPE_HATCH}
    env[netns.HOST_NETNS_ENV] = netns.host_netns_path()
    # nsenter puts the child in the host namespace while the variable says it is isolated
    out = netns.run_in_host_netns(
        [sys.executable, "-c", _ADOPT], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert "refused:" in out.stdout and "host namespace" in out.stdout, (out.stdout, out.stderr)


def test_the_escape_hatch_is_announced() -> None:
    code = "import sys; sys.path.insert(0, '.'); from devstack.netns import enter_private_network as e; e()"
    env = dict(os.environ, **{netns.ESCAPE_HATCH: "1"})
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert "HOST NETWORK" in out.stderr and "!!!" in out.stderr
