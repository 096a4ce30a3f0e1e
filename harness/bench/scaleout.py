"""Scale-out on Ray in the benchmark suite: a loopback cluster to measure on, and the projection to N nodes.

Measured (section ``ray``): the same features and model as the suite's headline job, Offline through a Ray
pool of one-core workers on a loopback cluster of as many one-CPU nodes, against the local engine with the
same cores; on a one-node cluster with all the cores, the placement (one actor owning the node vs one per
core) and a Server sweep through the default placement, with its single-window service times through Ray
(round trip included).

Projected (:func:`project`), for 1..64 nodes, each node assumed to be like this machine:

* Offline: nodes x the measured Offline samples/s through Ray over this machine's cores (linear: Offline
  batches are independent and the pool keeps every worker busy; the driver is assumed not to saturate,
  which the measured dispatch overhead per batch bounds, see the report);
* Server: the highest Poisson load whose simulated p99 stays within 130 ms for a first-come-first-served
  queue with as many servers as the nodes have streams and the measured per-window service times through
  Ray (:mod:`harness.bench.queueing`, extended to many servers), i.e. an ideal least-loaded dispatcher.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROJECTION_NODES = (1, 2, 4, 8, 16, 32, 64)
PROJECTION_CORES = (2, 8, 32, 96, 192)

# Published results of the sizes projected to, for comparison, as quoted in issue 14 (NM v3.0 from the MLPerf
# Inference v3.0 open results; the Intel Server/Offline ratio of closed bert-99 Xeon results, approximate).
PUBLISHED_AT_SCALE = (
    {"what": "Neural Magic v3.0 oBERT, 2x AMD EPYC 9654 (192 cores), Offline, bert-99 open",
     "cores": 192, "offline_samples_per_s": 5578.7},
    {"what": "Intel, Xeon, bert-99 closed: Server / Offline", "cores": None, "server_vs_offline": 0.79},
)


def loopback_cluster(nodes: int, cpus_per_node: int = 1, object_store_mb: int = 200):
    """A Ray cluster on this machine: a head without CPUs (it only schedules) and ``nodes`` worker nodes."""
    from ray.cluster_utils import Cluster

    from harness.backends.ray_pool import keeping_sigterm_handler

    store = object_store_mb * 2**20
    with keeping_sigterm_handler():  # the head node runs in this process
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                 "object_store_memory": store})
        for _ in range(nodes):
            cluster.add_node(num_cpus=cpus_per_node, object_store_memory=store)
        cluster.wait_for_nodes()
    return cluster


def project(offline_sps_per_node: float, service_model, bound_s: float,
            nodes: tuple[int, ...] = PROJECTION_NODES, servers_per_node: int = 1) -> list[dict]:
    """Projected Offline samples/s and Server QPS at p99 <= ``bound_s`` for each node count (each node
    ``servers_per_node`` batch-1 streams with ``service_model``'s times)."""
    from harness.bench.queueing import max_rate_within_bound

    rows = []
    for count in nodes:
        server = max_rate_within_bound(service_model, bound_s, servers=count * servers_per_node)
        offline = count * offline_sps_per_node
        rows.append({"nodes": count, "offline_samples_per_s": round(offline, 2), "server_qps": round(server, 2),
                     "server_vs_offline": round(server / offline, 3) if offline else None})
    return rows


def project_cores(offline_sps_per_core: float, service_model, cores_per_stream: int, bound_s: float,
                  cores: tuple[int, ...] = PROJECTION_CORES) -> list[dict]:
    """One machine with more cores, projected from this one's measurements. Assumptions (stated in the
    report): Offline scales linearly with cores (every stream busy, the per-core speed measured here, no
    memory-bandwidth or cache limit); Server runs ``cores / cores_per_stream`` streams, each with the measured
    single-window service times of a stream of ``cores_per_stream`` cores, fed first-come-first-served by an
    ideal dispatcher (the many-server queue of :mod:`harness.bench.queueing`), so its Server figure is an
    upper bound for batch-1 service."""
    rows = []
    for count in cores:
        streams = max(1, count // cores_per_stream)
        # one machine: a node of ``streams`` batch-1 servers
        [row] = project(offline_sps_per_core * count, service_model, bound_s, nodes=(1,), servers_per_node=streams)
        rows.append({"cores": count, "streams": streams, **{k: v for k, v in row.items() if k != "nodes"}})
    return rows


def plot_core_projection(rows: list[dict], measured: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = np.asarray([r["cores"] for r in rows])
    fig, (ax, ratio) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.plot(cores, [r["offline_samples_per_s"] for r in rows], marker="o", label="Offline samples/s (projected)")
    ax.plot(cores, [r["server_qps"] for r in rows], marker="s", label="Server QPS at p99 <= 130 ms (projected)")
    for key, marker, label in (("offline_samples_per_s", "*", "Offline, measured"), ("server_qps", "X", "Server, measured")):
        if measured.get(key):
            ax.scatter([measured["cores"]], [measured[key]], marker=marker, s=120, color="black", zorder=5, label=label)
    for ref in PUBLISHED_AT_SCALE:
        if ref.get("offline_samples_per_s"):
            ax.scatter([ref["cores"]], [ref["offline_samples_per_s"]], marker="D", s=60, color="tab:red", zorder=5,
                       label=ref["what"])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("cores (one machine)")
    ax.set_ylabel("samples/s or QPS")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ratio.plot(cores, [r["server_vs_offline"] for r in rows], marker="o", label="projected Server / Offline")
    for ref in PUBLISHED_AT_SCALE:
        if ref.get("server_vs_offline"):
            ratio.axhline(ref["server_vs_offline"], color="tab:red", linestyle="--", linewidth=1, label=ref["what"])
    ratio.set_xscale("log", base=2)
    ratio.set_ylim(0, 1.05)
    ratio.set_xlabel("cores (one machine)")
    ratio.set_ylabel("Server QPS / Offline samples/s")
    ratio.grid(True, which="both", alpha=0.3)
    ratio.legend(fontsize=7)
    fig.suptitle("Projection to many-core machines from this machine's measured service times (batch-1 Server, FIFO)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    ax.set_xlabel("nodes (each like the measured machine)")
    ax.set_ylabel("samples/s or QPS")
    ax.set_title("Scale-out on Ray: projection from the measured per-node service times")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
