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
  Ray (:mod:`benchmarks.queueing`, extended to many servers), i.e. an ideal least-loaded dispatcher.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.plots import pyplot
from harness.sysinfo import REPO_ROOT

PROJECTION_NODES = (1, 2, 4, 8, 16, 32, 64)
PROJECTION_CORES = (2, 8, 32, 96, 192)

# Published results of the sizes projected to, for comparison (NM v3.0 from the MLPerf Inference v3.0 open
# results; the Intel Server/Offline ratio of closed bert-99 Xeon results, approximate).
PUBLISHED_AT_SCALE = (
    {"what": "Neural Magic v3.0 oBERT, 2x AMD EPYC 9654 (192 cores), Offline, bert-99 open",
     "cores": 192, "offline_samples_per_s": 5578.7},
    {"what": "Intel, Xeon, bert-99 closed: Server / Offline", "cores": None, "server_vs_offline": 0.79},
)


def loopback_cluster(nodes: int, cpus_per_node: int = 1, object_store_mb: int = 200):
    """A Ray cluster on this machine: a head without CPUs (it only schedules) and ``nodes`` worker nodes."""
    from ray.cluster_utils import Cluster

    from harness.backends.cluster import keeping_sigterm_handler

    store = object_store_mb * 2**20
    with keeping_sigterm_handler():  # the head node runs in this process
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                 "object_store_memory": store})
        for _ in range(nodes):
            cluster.add_node(num_cpus=cpus_per_node, object_store_memory=store)
        cluster.wait_for_nodes()
    return cluster


class HostSetupError(RuntimeError):
    """The emulated hosts of :class:`TwoHostCluster` could not be made (not root, no namespaces)."""


@dataclass
class Host:
    name: str  # its host name (UTS namespace) as Ray records it
    netns: str
    address: str
    core: int
    init_pid: int | None = None  # pid 1 of its PID namespace, seen from outside
    holder: subprocess.Popen | None = None


class TwoHostCluster:
    """Two hosts emulated on this machine, a Ray head on the first and a worker node on the second, started with
    docs/scaling.md's two-machine commands (`ray start --head`, `ray start --address`).

    Each host is a network namespace (the two joined by a veth pair; each routes everything to the other and
    forwards nothing, so traffic stays between their two addresses) with its own PID, mount (/proc) and UTS
    namespaces, pinned to one core. The PID namespace matters: a Ray driver joins the raylet it finds among the
    processes it can see, and with one PID namespace a driver on the second host joined the first host's raylet
    (then no object it owned could be fetched). Killing a host's PID 1 ends every process of that host at once,
    as a machine that dies. The cluster uses Ray's token authentication with its own token, given to every
    process on both hosts (a head started where ~/.ray/auth_token exists turns it on, and then a worker node
    without the token is refused). Needs root; :meth:`unavailable` says why not where it cannot run."""

    HEAD_PORT = 6379

    def __init__(self, cores: tuple[int, int] | None = None, object_store_mb: int = 100,
                 env: dict[str, str] | None = None) -> None:
        tag = f"ob{os.getpid() % 100000}"
        count = os.cpu_count() or 1
        cores = cores or (0, 1 % count)
        self.hosts = [Host(f"{tag}-head", f"{tag}-a", "10.226.0.1", cores[0]),
                      Host(f"{tag}-worker", f"{tag}-b", "10.226.0.2", cores[1])]
        self.head, self.worker = self.hosts
        self.object_store_mb = object_store_mb
        self.env = {"PYTHONPATH": str(REPO_ROOT), **(env or {})}  # Ray's workers import this checkout's harness
        # short: Ray's unix sockets live below it (108 bytes at most)
        self.temp_root = Path(tempfile.mkdtemp(prefix="ob-hosts-", dir="/tmp"))
        self.logs: list[Path] = []
        token = self.temp_root / "auth_token"
        token.write_text(secrets.token_hex(32))  # the form Ray generates
        token.chmod(0o600)
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))

    @property
    def address(self) -> str:
        return f"{self.head.address}:{self.HEAD_PORT}"

    @staticmethod
    def unavailable() -> str | None:
        """Why two hosts cannot be emulated here (None: they can be)."""
        if os.geteuid() != 0:
            return "network and PID namespaces need root"
        missing = [tool for tool in ("ip", "unshare", "nsenter", "taskset") if shutil.which(tool) is None]
        if missing:
            return f"{', '.join(missing)} not found"
        probe = f"ob{os.getpid() % 100000}-probe"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            return f"cannot create a network namespace ({made.stderr.strip()})"
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
        return None

    def start(self, timeout_s: float = 120.0) -> TwoHostCluster:
        """Make the hosts and start Ray on them; raises :class:`HostSetupError` when namespaces cannot be made."""
        a, b = self.hosts
        self._ip("netns", "add", a.netns)
        self._ip("netns", "add", b.netns)
        self._ip("link", "add", f"{a.netns}-v", "type", "veth", "peer", "name", f"{b.netns}-v")
        for host in self.hosts:
            veth = f"{host.netns}-v"
            self._ip("link", "set", veth, "netns", host.netns)
            self._ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", veth)
            self._ip("-n", host.netns, "link", "set", "lo", "up")
            self._ip("-n", host.netns, "link", "set", veth, "up")
            # Ray finds a node's own address by routing towards an outside address; there is one way out: the peer
            self._ip("-n", host.netns, "route", "add", "default", "dev", veth)
            host.holder = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "taskset", "-c", str(host.core), "unshare", "--pid", "--fork",
                 "--mount-proc", "--uts", "sh", "-c", f"hostname {host.name}; exec sleep infinity"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for host in self.hosts:
            host.init_pid = self._init_pid(host)
        store = str(self.object_store_mb * 2**20)
        common = ["--num-cpus", "1", "--object-store-memory", store, "--disable-usage-stats"]
        self._ray_start(a, ["--head", "--port", str(self.HEAD_PORT), "--include-dashboard", "false", *common], timeout_s)
        self._ray_start(b, ["--address", self.address, *common], timeout_s)
        return self

    def command(self, host: Host, argv: list[str]) -> list[str]:
        """``argv`` run on ``host`` (its namespaces; its core through the affinity it inherits)."""
        env = [f"{key}={value}" for key, value in {**self.env, "RAY_TMPDIR": str(self.temp_root / host.name)}.items()]
        return ["nsenter", "-t", str(host.init_pid), "-p", "-m", "-n", "-u", f"--wd={REPO_ROOT}", "env", *env, *argv]

    def run(self, host: Host, argv: list[str], **popen) -> subprocess.Popen:
        return subprocess.Popen(self.command(host, argv), **popen)

    def kill_host(self, host: Host) -> None:
        """End every process of ``host`` at once (SIGKILL to its PID 1 takes its whole PID namespace along)."""
        if host.init_pid is not None:
            try:
                os.kill(host.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host.holder is not None:
            host.holder.wait(timeout=30)

    def close(self) -> None:
        """Tear everything down (safe to call on a half-made cluster)."""
        for host in self.hosts:
            self.kill_host(host)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "delete", host.netns], capture_output=True)  # the veth pair goes with it
        shutil.rmtree(self.temp_root, ignore_errors=True)

    def __enter__(self) -> TwoHostCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise HostSetupError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    @staticmethod
    def _init_pid(host: Host, timeout_s: float = 10.0) -> int:
        """The host's PID 1 as seen from here: the child that `unshare --fork` made."""
        import psutil

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if host.holder.poll() is not None:
                raise HostSetupError(f"host {host.name}: unshare failed ({host.holder.stderr.read().decode().strip()})")
            children = psutil.Process(host.holder.pid).children()
            if children and children[0].name() == "sleep":
                return children[0].pid
            time.sleep(0.05)
        raise HostSetupError(f"host {host.name}: its namespaces did not come up within {timeout_s:.0f} s")

    def _ray_start(self, host: Host, args: list[str], timeout_s: float) -> None:
        log_path = self.temp_root / f"ray-start-{host.name}.log"
        self.logs.append(log_path)
        argv = [str(Path(sys.executable).with_name("ray")), "start", "--node-ip-address", host.address,
                "--temp-dir", str(self.temp_root / host.name), *args]
        with log_path.open("w") as log_file:
            done = subprocess.run(self.command(host, argv), stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"`ray start` on {host.name} failed (exit {done.returncode}):\n"
                               f"{log_path.read_text()[-2000:]}")


TWO_HOSTS_JOB = "two-hosts-offline"


def measure_two_hosts(model_dir: Path, data_dir: Path, cache_dir: Path, out_dir: Path, *, count: int | None,
                      feature_count: int, buckets: tuple[int, ...], batch_size: int, streams: int, mlperf_conf: Path,
                      user_conf: Path) -> dict:
    """Section ``hosts``: Offline samples/s across two emulated hosts (:class:`TwoHostCluster`: one core each, a
    one-core engine worker on each, the driver on the head host) against the local engine on the same two cores
    (``streams`` streams), the same model, features and settings. Both are the harness's own command line, so the
    two-host run is what a user's `--cluster ray --ray-address HEAD:6379` does; ``count`` None: every feature."""
    samples = count or feature_count
    base = ["-m", "harness", "run", "--scenario", "Offline", "--mode", "performance", "--backend", "deepsparse",
            "--model", str(model_dir), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--no-progress",
            "--batch-size", str(batch_size), "--buckets", ",".join(map(str, buckets)), "--mlperf-conf", str(mlperf_conf),
            "--user-conf", str(user_conf), "--min-duration-ms", "0", "--min-query-count", str(samples),
            "--max-query-count", str(samples), "--target-qps", "1", *(["--count", str(count)] if count else [])]
    reason = TwoHostCluster.unavailable()
    if reason:
        return {"label": TWO_HOSTS_JOB, "skipped": f"two hosts cannot be emulated here: {reason}"}
    started = time.perf_counter()
    with TwoHostCluster() as cluster:
        cores = ",".join(str(host.core) for host in cluster.hosts)
        local = _run_for_record(["taskset", "-c", cores, sys.executable, *base, "--num-streams", str(streams),
                                 "--runs-dir", str(out_dir / "local")], out_dir / "local")
        cluster.start()
        hosts = _run_for_record(cluster.command(cluster.head, [sys.executable, *base, "--cluster", "ray", "--ray-address",
                                                               cluster.address, "--runs-dir", str(out_dir / "two-hosts")]),
                                out_dir / "two-hosts")
        layout = [{"name": h.name, "address": h.address, "core": h.core} for h in cluster.hosts]
    return {"label": TWO_HOSTS_JOB, "samples": samples, "hosts": layout, "run_records": [local, hosts],
            "seconds": round(time.perf_counter() - started, 1)}


def _run_for_record(command: list[str], runs: Path) -> dict:
    from harness.errors import HarnessError

    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    records = sorted(runs.glob("*/run.json"))
    if done.returncode != 0 or not records:
        raise HarnessError(f"{' '.join(command[-40:])}: exit {done.returncode}: {done.stderr.strip()[-1500:]}")
    import json

    return json.loads(records[-1].read_text())


def two_host_summary(job: dict | None) -> dict | None:
    """Local vs two hosts, from the section's job (None when it did not run)."""
    if not job or job.get("skipped") or len(job.get("run_records", [])) != 2:
        return {"skipped": job["skipped"]} if job and job.get("skipped") else None
    local, hosts = job["run_records"]
    local_sps, hosts_sps = (r["results"]["samples_per_second"] for r in (local, hosts))
    cluster = hosts["backend"].get("cluster") or {}
    return {"samples": job["samples"], "hosts": job["hosts"], "local_samples_per_s": local_sps,
            "two_hosts_samples_per_s": hosts_sps, "two_hosts_vs_local": round(hosts_sps / local_sps, 3),
            "nodes": [n["hostname"] for n in cluster.get("nodes", [])],
            "round_trip_ms": hosts["backend"].get("round_trip_ms"),
            "dispatch_overhead_ms": hosts["backend"].get("dispatch_overhead_ms"),
            "local_engine": f"{local['backend'].get('num_streams')} stream(s) x {local['backend'].get('batch_size')}",
            # cores other processes used during the local run (during the two-host run the worker host's engine
            # counts as "other": the hosts share one machine here)
            "local_other_cores": (local.get("machine_load") or {}).get("other_cores_mean")}


def two_host_report_lines(summary: dict | None) -> list[str]:
    if not summary:
        return []
    if summary.get("skipped"):
        return ["## Scale-out across two hosts", "", f"Not measured: {summary['skipped']}.", ""]
    hosts = ", ".join(f"{h['name']} ({h['address']}, core {h['core']})" for h in summary["hosts"])
    return ["## Scale-out across two hosts", "",
            f"Offline over the first {summary['samples']} features, DeepSparse, same model and settings: local on the "
            f"same two cores ({summary['local_engine']}) against two emulated hosts, {hosts}, each a network namespace "
            "with its own PID and UTS namespaces, joined by a veth pair, Ray started with `ray start` on each, one "
            "one-core engine worker per host, the driver on the head host.", "",
            "| | local | two hosts | two hosts / local |", "|---|---:|---:|---:|",
            f"| Offline samples/s | {summary['local_samples_per_s']} | {summary['two_hosts_samples_per_s']} | "
            f"{summary['two_hosts_vs_local']} |", "",
            f"Ray round trip per batch: {summary['round_trip_ms']}; outside the engine and the wait for a stream: "
            f"{summary['dispatch_overhead_ms']} (ms). Other processes used {summary.get('local_other_cores')} cores on "
            "average during the local run.", ""]


def project(offline_sps_per_node: float, service_model, bound_s: float,
            nodes: tuple[int, ...] = PROJECTION_NODES, servers_per_node: int = 1) -> list[dict]:
    """Projected Offline samples/s and Server QPS at p99 <= ``bound_s`` for each node count (each node
    ``servers_per_node`` batch-1 streams with ``service_model``'s times)."""
    from benchmarks.queueing import max_rate_within_bound

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
    ideal dispatcher (the many-server queue of :mod:`benchmarks.queueing`), so its Server figure is an
    upper bound for batch-1 service."""
    rows = []
    for count in cores:
        streams = max(1, count // cores_per_stream)
        # one machine: a node of ``streams`` batch-1 servers
        [row] = project(offline_sps_per_core * count, service_model, bound_s, nodes=(1,), servers_per_node=streams)
        rows.append({"cores": count, "streams": streams, **{k: v for k, v in row.items() if k != "nodes"}})
    return rows


def plot_core_projection(rows: list[dict], measured: dict, path: Path) -> Path:
    plt = pyplot()

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
    plt = pyplot()

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
