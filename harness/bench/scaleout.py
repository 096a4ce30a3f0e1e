"""Scale-out on Ray in the benchmark suite: a loopback cluster to measure on, and the projection to N nodes.

Measured (section ``ray``): the same features and model as the suite's headline job, Offline through a Ray
pool of one-core workers on a loopback cluster of as many one-CPU nodes, against the local engine with the
same cores; a Server sweep through the pool; and each worker's single-window service times through Ray
(round trip included).

Projected (:func:`project`), for 1..64 nodes, each node assumed to be one worker like the measured ones:

* Offline: nodes x the measured Offline samples/s per worker through Ray (linear: Offline batches are
  independent and the pool keeps every worker busy; the driver is assumed not to saturate, which the
  measured dispatch overhead per batch bounds, see the report);
* Server: the highest Poisson load whose simulated p99 stays within 130 ms for a first-come-first-served
  queue with that many servers and the measured per-window service times through Ray
  (:mod:`harness.bench.queueing`, extended to many servers), i.e. an ideal least-loaded dispatcher.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROJECTION_NODES = (1, 2, 4, 8, 16, 32, 64)


def loopback_cluster(nodes: int, cpus_per_node: int = 1):
    """A Ray cluster on this machine: a head without CPUs (it only schedules) and ``nodes`` worker nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                             "object_store_memory": 200 * 2**20})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus_per_node, object_store_memory=200 * 2**20)
    cluster.wait_for_nodes()
    return cluster


def project(offline_sps_per_worker: float, service_model, bound_s: float,
            nodes: tuple[int, ...] = PROJECTION_NODES) -> list[dict]:
    """Projected Offline samples/s and Server QPS at p99 <= ``bound_s`` for each node count."""
    from harness.bench.queueing import max_rate_within_bound

    rows = []
    for count in nodes:
        server = max_rate_within_bound(service_model, bound_s, servers=count)
        offline = count * offline_sps_per_worker
        rows.append({"nodes": count, "offline_samples_per_s": round(offline, 2), "server_qps": round(server, 2),
                     "server_vs_offline": round(server / offline, 3) if offline else None})
    return rows


def plot_projection(rows: list[dict], measured: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = np.asarray([r["nodes"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(nodes, [r["offline_samples_per_s"] for r in rows], marker="o", label="Offline samples/s (projected)")
    ax.plot(nodes, [r["server_qps"] for r in rows], marker="s", label="Server QPS at p99 <= 130 ms (projected)")
    for key, marker, label in (("offline_samples_per_s", "*", "Offline, measured"), ("server_qps", "X", "Server, measured")):
        if measured.get(key):
            ax.scatter([measured["nodes"]], [measured[key]], marker=marker, s=120, color="black", zorder=5, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("nodes (one worker like the measured ones each)")
    ax.set_ylabel("samples/s or QPS")
    ax.set_title("Scale-out on Ray: projection from the measured per-worker service times")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
