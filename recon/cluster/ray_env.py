"""Starting or joining a Ray cluster, safely.

* A local cluster (the default) listens on 127.0.0.1 only: the node address is loopback and
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes every Ray listener (GCS, raylet, object manager,
  workers, agents) bind loopback; the dashboard is not started.
* Usage statistics are off (``RAY_USAGE_STATS_ENABLED=0``) unless the user set the variable.
* A remote cluster is joined only when the user passes an explicit address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from recon.errors import ReconError

INSTALL_HINT = 'Ray is not installed: install the cluster extra with `pip install "recon[cluster]"` (or `pip install ray`)'



def require_ray():
    """The ``ray`` module, or :class:`ReconError` saying how to install the extra."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ReconError(INSTALL_HINT) from None
    return ray


@dataclass
class Cluster:
    """A started or joined cluster: its resources and whether this process started it."""

    address: Optional[str]
    local: bool
    cpus: float
    gpus: float
    memory_bytes: float

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def check_address(address: Optional[str], timeout: float = 5.0) -> None:
    """Fail fast (one line) when nothing answers at ``address``, before Ray's own connect timeout.

    ``HOST:PORT`` is a cluster's GCS (port 6379 when left out), ``ray://HOST[:PORT]`` a Ray client
    server (port 10001 when left out); ``auto`` (Ray's own discovery of a cluster started on this
    machine) and ``None`` (a new local cluster) are not checked.
    """
    import socket

    if address is None or address == "auto":
        return
    rest, port = address, 6379
    if address.startswith("ray://"):
        rest, port = address[len("ray://"):], 10001
    rest = rest.rstrip("/")
    host = rest
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, tail = rest[1:].partition("]")
        rest_port = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, rest_port = rest.split(":")
    else:
        rest_port = ""
    if rest_port:
        if not rest_port.isdigit() or not 0 < int(rest_port) < 65536:
            raise ReconError(f"--address {address}: {rest_port!r} is not a port; give HOST:PORT or ray://HOST:PORT")
        port = int(rest_port)
    if not host or "/" in host:
        raise ReconError(f"--address {address}: give HOST:PORT (a cluster's head node) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "no answer" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise ReconError(f"--address {address}: nothing answers at {host}:{port} ({why}); start the cluster "
                         f"(`ray start --head` on its head node) or correct the address") from None


def _token_auth_if_token() -> None:
    """Use token authentication to join a cluster when this machine has a Ray token (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE is unset: Ray enables it by default
    for the clusters it starts, but a driver joining one does not turn it on by itself."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def start(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None,
          log=print) -> Cluster:
    """Start a local cluster on 127.0.0.1 (``address`` None) or join the cluster at ``address``.

    Args:
        address: ``HOST:PORT`` or ``ray://HOST:PORT`` of a running cluster; ``None``: a new local one.
        num_cpus, num_gpus: the local cluster's size (default: what this machine has).
    """
    import sys

    check_address(address)
    if "ray" not in sys.modules or sys.modules["ray"] is None:
        # Ray reads these when it is imported: set them first. Usage statistics: a user's own
        # setting wins. Loopback-only listeners for a local cluster; a remote cluster's nodes must
        # reach this driver, so there Ray's own choice of address stands.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is None:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    elif address is None and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise ReconError("ray was imported before the local cluster could be set to listen on 127.0.0.1 only; "
                         "start it through recon.cluster.ray_env.start before importing ray")
    ray = require_ray()
    # Workers inherit this process's environment (threads policy, the variables above).
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="ERROR")
    if address is None:
        local = True
        try:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address="127.0.0.1", **kw)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds; one line for the user
            raise ReconError(f"cannot start a local Ray cluster: {e}") from None
    else:
        local = False
        if num_cpus is not None or num_gpus is not None:
            raise ReconError("--num-cpus/--num-gpus size a local cluster; a cluster at --address has its own size")
        _token_auth_if_token()
        try:
            ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001
            raise ReconError(f"--address {address}: cannot connect to a Ray cluster there ({e}; a cluster with "
                             f"token authentication needs its token in RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
    res = ray.cluster_resources()
    c = Cluster(address=address, local=local, cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)),
                memory_bytes=float(res.get("memory", 0)))
    where = "local cluster on 127.0.0.1" if local else f"cluster at {address}"
    log(f"[ray] {where}: {c.cpus:g} CPUs, {c.gpus:g} GPUs, {c.memory_bytes / 1e9:.1f} GB memory for tasks")
    return c
