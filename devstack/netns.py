"""A private network for tests and benchmarks: loopback only, so nothing they start can leave the machine.

`enter_private_network()` runs first thing in every pytest run (the plugin devstack/pytest_netns.py)
and in `python -m bench.audio`:
as root it moves the process into a new network namespace (`unshare(CLONE_NEWNET)`) holding
only `lo`, brought up. moto, the local stack, aiortc and Chromium all inherit it. Before that it keeps a file
descriptor of the original namespace, so `run_in_host_netns()` can still run the one kind
of command that must reach outside (e.g. a deploy replay that pip-installs from the
package registry) through `nsenter`.

A namespace is per thread: this must run before the process starts any thread.
Non-root developers may set SOHBET_ALLOW_HOST_NET=1 to run on the host network instead;
that is announced loudly, never silent.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from typing import Any

CLONE_NEWNET = 0x40000000
ESCAPE_HATCH = "SOHBET_ALLOW_HOST_NET"
HOST_NETNS_ENV = "SOHBET_HOST_NETNS"  # set by the isolating process for its children

_host_netns_fd: int | None = None
_host_netns_path: str | None = None
_state = "not entered"


class NetworkIsolationError(RuntimeError):
    pass


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def enter_private_network() -> str:
    """Move this process into a loopback-only network namespace (idempotent); return a status line."""
    global _host_netns_fd, _state
    if _host_netns_fd is not None or _host_netns_path is not None or _state.startswith("HOST NETWORK"):
        return _state
    if os.environ.get(ESCAPE_HATCH) == "1":
        _state = (
            f"HOST NETWORK: {ESCAPE_HATCH}=1, tests run WITHOUT the private loopback-only "
            "network namespace; nothing stops a test from reaching other machines"
        )
        print(f"\n!!! {_state} !!!\n", file=sys.stderr, flush=True)
        return _state
    inherited = os.environ.get(HOST_NETNS_ENV)
    if inherited:
        return _adopt_inherited(inherited)
    hint = f"run the tests as root, or set {ESCAPE_HATCH}=1 to run them on the host network (not isolated)"
    if not sys.platform.startswith("linux"):
        raise NetworkIsolationError(f"network namespaces need Linux; {hint}")
    if os.geteuid() != 0:
        raise NetworkIsolationError(f"creating a network namespace needs root (euid {os.geteuid()}); {hint}")
    if _threads() > 1:
        # unshare() moves only the calling thread: threads started earlier would stay outside.
        raise NetworkIsolationError(
            f"{_threads()} threads already run; the namespace must be entered before any thread starts"
        )
    host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)  # inherited by nobody: O_CLOEXEC by default
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        os.close(host_fd)
        raise NetworkIsolationError(f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}; {hint}")
    up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        raise NetworkIsolationError(f"`ip link set lo up` failed in the new namespace: {up.stderr.strip()}")
    _host_netns_fd = host_fd
    # Worker processes (pytest-xdist) inherit the namespace but not the descriptor (O_CLOEXEC):
    # they find the host namespace through this process, which outlives them.
    os.environ[HOST_NETNS_ENV] = f"/proc/{os.getpid()}/fd/{host_fd}"
    _state = "private network namespace: loopback only"
    return _state


def _adopt_inherited(host_path: str) -> str:
    """A child of an isolated process: check it is still outside the host namespace, keep its path."""
    global _host_netns_path, _state
    try:
        host, here = os.stat(host_path), os.stat("/proc/self/ns/net")
    except OSError as err:
        raise NetworkIsolationError(f"the parent's host namespace {host_path} is gone: {err}") from err
    if (host.st_dev, host.st_ino) == (here.st_dev, here.st_ino):
        raise NetworkIsolationError(f"{HOST_NETNS_ENV} is set but this process runs in the host namespace")
    _host_netns_path = host_path
    _state = "private network namespace: loopback only (inherited)"
    return _state


def status() -> str:
    return _state


def host_netns_path() -> str:
    """A path naming the original (host) network namespace, usable by `nsenter --net=`."""
    if _host_netns_path is not None:
        return _host_netns_path
    if _host_netns_fd is None:
        raise NetworkIsolationError(f"not in a private network namespace ({_state})")
    return f"/proc/{os.getpid()}/fd/{_host_netns_fd}"


def run_in_host_netns(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run(cmd) in the host's network namespace (everything else, files included, is shared).

    On the host network already (SOHBET_ALLOW_HOST_NET=1), it is a plain subprocess.run.
    """
    if _host_netns_fd is None and _state.startswith("HOST NETWORK"):
        return subprocess.run(cmd, **kwargs)
    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"  # absolute: kwargs may carry a bare env
    return subprocess.run([nsenter, f"--net={host_netns_path()}", "--", *cmd], **kwargs)
