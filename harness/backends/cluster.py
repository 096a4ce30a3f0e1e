"""Where the engines run: in this process, or on the nodes of a Ray cluster (the options of the Ray pool, and
reaching its head without hanging on it)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.options import flag, require_at_least_one

CLUSTERS = ("local", "ray")
RAY_CONNECT_TIMEOUT_S = 30.0  # Ray itself retries an unreachable head for ~13 minutes


@dataclass(frozen=True)
class RayOptions:
    """The Ray pool: one engine per actor on the cluster's nodes; LoadGen and the scheduling stay here."""

    cluster: str = flag("--cluster", default="local", choices=CLUSTERS,
                        help="local: the engines run in this process (default); ray: one engine per Ray actor on the "
                        "nodes of a Ray cluster, LoadGen and the scheduling stay here (docs/scaling.md)")
    address: str | None = flag("--ray-address",
                               help="--cluster ray: 'auto' joins the cluster started with `ray start` on this machine, "
                               "HOST:PORT a remote head; without it Ray is started on this machine")
    workers: int | None = flag("--ray-workers", type=int,
                               help="--cluster ray: engine actors (default: one per node, with all its CPUs)")
    cpus_per_worker: int | None = flag("--ray-cpus-per-worker", type=int,
                                       help="--cluster ray: CPUs (engine cores) per actor (default: the node's CPUs / "
                                       "its actors)")
    connect_timeout_s: float = flag("--ray-connect-timeout-s", default=RAY_CONNECT_TIMEOUT_S, type=float,
                                    help="--cluster ray: how long the Ray head may not answer, when joining its "
                                    "cluster and during a run (then the run ends with an error) (default %(default)g)")

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"--cluster {self.cluster!r}: expected one of {', '.join(CLUSTERS)}")
        require_at_least_one(self, "workers", "cpus_per_worker")
        if not (0 < self.connect_timeout_s and math.isfinite(self.connect_timeout_s)):
            raise ConfigError(f"--ray-connect-timeout-s must be a number of seconds > 0, got {self.connect_timeout_s}")

    @property
    def on_ray(self) -> bool:
        return self.cluster == "ray"


def resolve_head(address: str) -> str:
    """The HOST:PORT Ray will connect to for ``--ray-address`` (``auto``: RAY_ADDRESS or the cluster `ray start`
    recorded on this machine; a loopback host becomes this machine's address, as Ray does)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        head = canonicalize_bootstrap_address(address)
    except Exception as exc:  # noqa: BLE001 - Ray raises ValueError, ConnectionError, socket errors
        raise ConfigError(f"--ray-address {address}: not a Ray head address ({exc}); expected auto or HOST:PORT") from None
    if head is None:
        raise ConfigError(f"--ray-address {address}: no running Ray cluster found on this machine (RAY_ADDRESS is not "
                          "set and no `ray start --head` recorded one); start one or give the head's HOST:PORT")
    return head


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def wait_for_head(head: str, address: str, *, deadline: float, timeout_s: float) -> None:
    """Wait until the head's GCS port accepts a TCP connection, retrying until ``deadline`` (a head being
    started); then one :class:`ConfigError` naming the address and what went wrong."""
    host, port = split_address(head)
    last: OSError | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 5.0)):
                return
        except OSError as exc:
            last = exc
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    resolved = "" if head == address else f" (Ray connects to {head})"
    reason = (last.strerror or str(last)).lower() if last is not None and (last.strerror or str(last)) else "timed out"
    raise ConfigError(f"--ray-address {address}: no Ray head answers there{resolved} within {timeout_s:g} s ({reason}); "
                      "start it with `ray start --head --port=PORT`, check the address and that its port is reachable "
                      "from here, or give it longer with --ray-connect-timeout-s")


class HeadWatch:
    """Probes the head's GCS port once a second with a plain TCP connection (a Ray call would block while the
    head is gone); ``lost`` says why once it has not answered for ``lost_after_s``."""

    def __init__(self, gcs_address: str, lost_after_s: float, interval_s: float = 1.0) -> None:
        self.address = gcs_address
        self.lost_after_s = lost_after_s
        self.interval_s = interval_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-head-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        host, port = split_address(self.address)
        answered = time.monotonic()
        while not self._stop.wait(self.interval_s):
            try:
                with socket.create_connection((host, port), timeout=self.interval_s):
                    answered = time.monotonic()
            except OSError as exc:
                silent = time.monotonic() - answered
                if silent >= self.lost_after_s:
                    self.lost = (f"the Ray head at {self.address} has not answered for {silent:.0f} s "
                                 f"({(exc.strerror or str(exc) or 'timed out').lower()}); the run cannot go on without it")
                    return

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def keeping_sigterm_handler() -> Iterator[None]:
    """Starting Ray in this process (ray.init, or a cluster_utils head node) installs Ray's own SIGTERM
    handler, which exits 1 at once. Put ours back: it ends a run cleanly (status interrupted, exit 143)
    and Ray is shut down on the way out through the backend's close()."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
