"""The test session's private network (see devstack/netns.py, shared with the benchmarks).

`run_in_host_netns(cmd, **kwargs)`: subprocess.run in the host's network namespace, for
the one kind of test that must reach outside (a deploy replay installing from the
package registry). Everything else in the session is loopback-only.
"""

from devstack.netns import (
    ESCAPE_HATCH,
    HOST_NETNS_ENV,
    NetworkIsolationError,
    enter_private_network,
    host_netns_path,
    run_in_host_netns,
    status,
)

__all__ = [
    "ESCAPE_HATCH",
    "HOST_NETNS_ENV",
    "NetworkIsolationError",
    "enter_private_network",
    "host_netns_path",
    "run_in_host_netns",
    "status",
]
