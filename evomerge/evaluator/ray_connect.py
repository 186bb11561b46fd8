"""Connecting to Ray: a private local Ray on 127.0.0.1, or a cluster by address, checked first.

Public so that a run can refuse an unreachable cluster before it creates its run directory
(:func:`check_reachable`), and every backend connects the same way (:func:`connect_ray`).
"""

from __future__ import annotations

import os
import socket

from evomerge.errors import EvomergeError

#: Set (with ``setdefault``: a user's own values win) before a *local* Ray starts: every listener
#: on 127.0.0.1, no token file, no usage report. See docs/cluster.md.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def connect_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Connect this process to Ray and return the ``ray`` module.

    ``address``: ``None`` starts a private local Ray bound to 127.0.0.1 (``address="local"``, so a
    stray ``RAY_ADDRESS`` is ignored) with :data:`LOCAL_RAY_ENV` and no dashboard; ``"auto"`` joins
    the cluster started on this machine with ``ray start``; ``"host:port"`` joins that cluster's
    GCS; ``"ray://host:10001"`` connects through Ray Client. When Ray is already initialised in
    this process it is reused as is.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return ray
    if address is None:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            configure_logging=False,
        )
        return ray
    if num_cpus is not None or num_gpus is not None:
        raise EvomergeError(
            f"--address {address}: num_cpus / num_gpus apply only to a local Ray; "
            "set them with `ray start` on each node instead"
        )
    check_reachable(address)
    try:
        ray.init(address=address, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvomergeError(f"cannot connect to the Ray cluster at {address!r}: {first}") from exc
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens on: ``ray.init`` would retry for minutes."""
    if address == "auto":
        return  # Ray reads the local cluster's address file and fails fast itself
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise EvomergeError(f"--address {address!r}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EvomergeError(
            f"cannot connect to the Ray cluster at {address!r}: nothing answers on {host}:{port} "
            f"({exc.strerror or exc}); start one with `ray start --head --port={port}`"
        ) from None


__all__ = ["LOCAL_RAY_ENV", "check_reachable", "connect_ray"]
