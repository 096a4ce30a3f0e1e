"""Inference engines on the nodes of a Ray cluster, behind the one backend interface.

LoadGen, the QSL and the scenario's scheduling stay in the driver process; each Ray actor holds its own
compiled engine (length-bucketed like a local one) on one node. The SUT's worker threads call
:meth:`RayPoolBackend.predict` as they call any backend; each call goes to the least-loaded live actor and
blocks until its logits are back, so the SUT's own scheduling (Offline batches, Server dynamic batching)
is unchanged and the number of batches in flight is bounded by the SUT's workers (``parallelism``: actors
x ``in_flight`` per actor). Every result returns to the call that sent it, so responses always reach
LoadGen under the ids of the samples they belong to (the MLPerf reference's Ray SUT pairs results with
queries in completion order instead).

Data movement: the model is put into Ray's object store once and every actor writes it to a local file;
a request carries only the batch's compact windows (int32 ids, uint8 masks and segments), cut to the bucket
length that holds them; a response carries the start/end logits of those positions.

Faults: a call to a dead actor (its process or its node died), or one that does not answer within
``call_timeout_s``, marks that actor lost, records the event and runs the same batch again on a surviving
actor (engines are deterministic, so re-running is safe). The pool is then ``degraded`` (run.json and the
summary say so). With no actor left, ``predict`` raises and the SUT's fault path ends the run.

The head (:mod:`harness.backends.cluster`): joining its cluster is bounded by ``--ray-connect-timeout-s``
(Ray itself retries an unreachable head for minutes, in calls that hold off Ctrl-C): its GCS port must accept a TCP
connection within that time, and ``ray.init`` runs in a helper thread that the driver stops waiting for. During a
run a :class:`HeadWatch` probes the same port; a head that stays unreachable that long fails the run through the
SUT's fault path, before Ray's core worker ends the whole process.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from cmdline.children import settle_tokenizers_parallelism
from harness.backends.base import Backend, BackendOptions
from harness.backends.cluster import HeadWatch, RayOptions, keeping_sigterm_handler, quiet, resolve_head, wait_for_head
from harness.bucketing import batch_bucket
from harness.errors import BackendFault, ConfigError, ModelError
from harness.models import ModelInfo
from harness.sysinfo import machine_info

log = logging.getLogger(__name__)

MODEL_DIR_PREFIX = "obert-ray-model-"  # each actor's copy of the model, while its engine is built
CALL_TIMEOUT_S = 120.0  # a batch of 8 x 384 tokens takes ~0.5 s on one core; anything near this is a dead node
LOCAL_START_S = 120.0  # starting a Ray instance on this machine (no --ray-address) may take this long
WAIT_SLICE_S = 1.0  # blocking Ray calls wait in slices of this, so a lost head or Ctrl-C is seen between them
# Ray's core worker ends the whole process once the head has been gone for RAY_gcs_rpc_server_reconnect_timeout_s
# (60 s by default); the driver's is set this much beyond the harness's own limit, so the harness ends the run first
RAY_RECONNECT_MARGIN_S = 60


class RayHeadLost(BackendFault):
    """The Ray head (its GCS) stopped answering; the run cannot go on without it (a backend fault: exit 3)."""


class EngineWorker:
    """The actor body (made a Ray actor class at run time: importing this module does not need Ray)."""

    def __init__(self, make_backend: Callable[[ModelInfo, BackendOptions], Backend], model_bytes, manifest: dict,
                 options: BackendOptions, wrapper=None) -> None:
        from harness.models import inspect_onnx_model

        # The engines read the model file only while they are built: remove this node's copy right after, since
        # an actor that Ray kills never runs a cleanup (each run left a model-sized directory in every node's /tmp).
        model_dir = tempfile.mkdtemp(prefix=MODEL_DIR_PREFIX)
        try:
            path = Path(model_dir) / "model.onnx"
            path.write_bytes(model_bytes)
            model = inspect_onnx_model(path)
            model.manifest = manifest
            self.cpus = options.num_cores
            self.backend = make_backend(model, options)
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)
        if wrapper is not None:  # tests: a slow or failing engine on this worker only
            self.backend = wrapper(self.backend)
        # The actor takes one call per stream plus one waiting (its max_concurrency), so that the next batch is
        # already here when a stream frees up; the waiting one must not compute yet: two calls on one stream's
        # cores put twice the engine's threads on them, which wait on each other (docs/scaling.md).
        self._streams = threading.BoundedSemaphore(self.backend.compute_streams)

    def info(self) -> dict:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": platform.node(), "pid": os.getpid(),
                "cpu_model": machine_info()["cpu_model"], "node_cpus": os.cpu_count(), "cpus": self.cpus,
                "engine": self.backend.describe()}

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray):
        """(start, end, seconds computing, seconds waiting here for a free stream)."""
        arrived = time.perf_counter()
        with self._streams:
            started = time.perf_counter()
            start, end = self.backend.predict(input_ids, attention_mask, token_type_ids)
            return start, end, time.perf_counter() - started, started - arrived


class _Actor:
    def __init__(self, handle, info: dict, capacity: int) -> None:
        self.handle = handle
        self.info = info
        self.capacity = capacity  # batches it takes at once: one per engine stream, plus one waiting
        self.in_flight = 0
        self.alive = True


class RayPoolBackend(Backend):
    """One engine per Ray actor; see the module docstring."""

    name = "ray"

    def __init__(self, engine: str, make_backend: Callable[[ModelInfo, BackendOptions], Backend], model: ModelInfo,
                 options: BackendOptions, *, progress: bool = False, worker_wrappers: list | None = None) -> None:
        """``make_backend`` builds an actor's local backend of the ``engine`` (module-level, so that Ray pickles it
        by name)."""
        super().__init__(model, options)
        import ray

        self.engine_name = engine
        self._ray = ray
        self._started_ray = False
        self._lock = threading.Condition()
        self.events: list[dict] = []
        self._round_trips_ms: list[float] = []
        self._compute_ms: list[float] = []
        self._queued_ms: list[float] = []  # waiting in the actor for a free stream (the batch sent ahead)
        self.call_timeout_s = CALL_TIMEOUT_S
        self.head_watch: HeadWatch | None = None
        self._abandoned_init = False  # a ray.init that outlasted its deadline may still be running
        self._connect(options.ray.address, options.ray.connect_timeout_s)
        try:
            self.actors = self._start_actors(engine, make_backend, model, options, worker_wrappers or [], progress)
        except BaseException:
            self.close()
            raise

    # -- cluster --------------------------------------------------------------------------------------
    def _connect(self, address: str | None, timeout_s: float) -> None:
        """Join the cluster at ``address`` (None: start Ray on this machine) within ``timeout_s``, then watch
        its head. Every failure is one :class:`ConfigError` naming the address."""
        ray = self._ray
        if ray.is_initialized():  # joined by the caller (tests, benchmarks)
            self._watch_head(timeout_s)
            return
        settle_tokenizers_parallelism()  # the tokenizers library (the features) would warn in every forked process
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(int(timeout_s) + RAY_RECONNECT_MARGIN_S))
        where = f"--ray-address {address}" if address else "a local Ray instance"
        started = time.monotonic()
        if address is not None:
            head = resolve_head(address)
            wait_for_head(head, address, deadline=started + timeout_s, timeout_s=timeout_s)
            deadline = started + timeout_s
        else:
            head, deadline = None, started + max(timeout_s, LOCAL_START_S)
        outcome: dict = {}

        def init() -> None:
            try:
                # None starts a Ray instance on this machine; "auto" or HOST:PORT joins a running cluster
                with quiet("ray._private.worker"):  # "SIGTERM handler is not set": the harness keeps its own
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
                outcome["error"] = exc

        # In a thread: ray.init blocks in C++ calls that delay Ctrl-C and can outlast any deadline; this thread
        # waits in short slices, so both are honoured.
        thread = threading.Thread(target=init, name="ray-connect", daemon=True)
        with keeping_sigterm_handler():
            thread.start()
            while thread.is_alive():
                thread.join(timeout=0.2)
                if thread.is_alive() and time.monotonic() > deadline:
                    self._abandoned_init = True  # that thread may still hold Ray: see close()
                    raise ConfigError(
                        f"{where}: the Ray head at {head} accepts connections but Ray could not join its cluster "
                        f"within {time.monotonic() - started:.0f} s (--ray-connect-timeout-s {timeout_s:g}); is it a "
                        f"Ray head, and of this Ray version ({ray.__version__})?" if head else
                        f"{where}: Ray did not start within {time.monotonic() - started:.0f} s")
        error = outcome.get("error")
        if error is not None:
            if isinstance(error, KeyboardInterrupt):
                raise error
            raise ConfigError(f"{where}: could not connect ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                              "start the head with `ray start --head` and the workers with `ray start --address=HEAD:6379`, "
                              "or leave --ray-address out to start Ray on this machine") from None
        self._started_ray = address is None
        self._watch_head(timeout_s)

    def _watch_head(self, timeout_s: float) -> None:
        gcs = self._ray.get_runtime_context().gcs_address
        if gcs:
            self.head_watch = HeadWatch(gcs, lost_after_s=timeout_s)

    def _wait(self, ref, timeout_s: float | None = None):
        """``ray.get(ref)`` in slices: a lost head ends the wait with :class:`RayHeadLost` (a call on a node
        that still runs would otherwise wait for the head until Ray ends the process)."""
        ray = self._ray
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, deadline - time.monotonic())
            try:
                return ray.get(ref, timeout=max(remaining, 0.0))
            except ray.exceptions.GetTimeoutError:
                if self.head_watch is not None and self.head_watch.lost:
                    raise RayHeadLost(self.head_watch.lost) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def _placement(self, options: BackendOptions) -> list[tuple[str, int]]:
        """(node id, CPUs) per actor: by default one actor per node with all its CPUs; ``ray_workers`` actors
        spread round-robin over the nodes; ``ray_cpus_per_worker`` CPUs each (default: the node's share)."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
        if not nodes:
            raise ConfigError("the Ray cluster has no live node with a CPU to run an engine on")
        nodes.sort(key=lambda n: n["NodeID"])
        count = options.ray.workers or len(nodes)
        if count < 1:
            raise ConfigError(f"--ray-workers must be >= 1, got {count}")
        assignment = [nodes[i % len(nodes)] for i in range(count)]
        placement = []
        for node in assignment:
            per_node = sum(1 for n in assignment if n["NodeID"] == node["NodeID"])
            cpus = options.ray.cpus_per_worker or max(1, int(node["Resources"]["CPU"]) // per_node)
            placement.append((node["NodeID"], cpus))
        # An actor that asks for more CPUs than its node has is never placed, and Ray waits for it without end
        # (no bound on placement): refuse such a layout here, naming the settings.
        asked: dict[str, int] = {}
        for node_id, cpus in placement:
            asked[node_id] = asked.get(node_id, 0) + cpus
        for node in nodes:
            total = int(node["Resources"]["CPU"])
            if asked.get(node["NodeID"], 0) > total:
                actors = sum(1 for node_id, _ in placement if node_id == node["NodeID"])
                raise ConfigError(
                    f"Ray node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]}) has {total} CPU(s), but "
                    f"--ray-workers {count} / --ray-cpus-per-worker {options.ray.cpus_per_worker} place {actors} "
                    f"actor(s) of {asked[node['NodeID']] // actors} CPU(s) on it: Ray would wait for them forever; "
                    "ask for fewer workers or CPUs per worker")
        return placement

    def _start_actors(self, engine: str, make_backend: Callable, model: ModelInfo, options: BackendOptions,
                      wrappers: list, progress: bool) -> list[_Actor]:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        model_ref = ray.put(model.onnx_path.read_bytes())  # once into the object store; each node fetches it once
        actor_class = ray.remote(EngineWorker)
        handles, capacities = [], []
        for index, (node_id, cpus) in enumerate(self._placement(options)):
            # An actor's engine gets the actor's CPUs, and at most one stream per CPU.
            streams = min(options.num_streams or 1, cpus)
            engine_options = replace(options, ray=RayOptions(), num_cores=cpus,
                                     num_streams=streams if streams > 1 else None)
            # Each stream computes one batch; one more waits in the actor so the round trip is hidden.
            capacities.append(streams + 1)
            handles.append(actor_class.options(
                num_cpus=cpus, max_concurrency=capacities[-1], max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(make_backend, model_ref, model.manifest, engine_options,
                     wrappers[index] if index < len(wrappers) else None))
        from tqdm import tqdm

        infos = []
        bar = tqdm(handles, desc=f"starting {len(handles)} Ray workers ({engine} engines)", unit="worker",
                   disable=not progress or None, leave=False)
        for handle in bar:  # engines compile on their nodes in parallel; an error is the model's
            try:
                infos.append(self._wait(handle.info.remote()))
            except ray.exceptions.RayActorError as exc:
                cause = getattr(exc, "cause", None) or exc
                raise ModelError(f"{model.onnx_path}: a Ray worker could not build its {engine} engine "
                                 f"({str(cause).splitlines()[-1][:300]})") from None
        return [_Actor(handle, info, capacity) for handle, info, capacity in zip(handles, infos, capacities)]

    # -- the backend interface --------------------------------------------------------------------------
    @property
    def sequence_buckets(self) -> tuple[int, ...] | None:
        return self.options.sequence_buckets

    @property
    def parallelism(self) -> int:
        return sum(actor.capacity for actor in self.actors)

    @property
    def compute_streams(self) -> int:
        return sum(actor.capacity - 1 for actor in self.actors if actor.alive)

    def helper_process_ids(self) -> list[int]:
        """The actors on this host and the Ray daemon (raylet) that runs them."""
        import psutil

        here = platform.node()
        pids = set()
        for actor in self.actors:
            if actor.info.get("hostname") == here:
                pids.add(actor.info["pid"])
                try:
                    pids.add(psutil.Process(actor.info["pid"]).ppid())
                except psutil.Error:
                    pass
        return sorted(pids)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        n = input_ids.shape[0]
        if n == 0 or n > self.batch_size:
            raise ValueError(f"batch of {n} samples; the backend takes 1..{self.batch_size}")
        length = self._request_length(attention_mask)
        payload = (np.ascontiguousarray(input_ids[:, :length], dtype=np.int32),
                   np.ascontiguousarray(attention_mask[:, :length], dtype=np.uint8),
                   np.ascontiguousarray(token_type_ids[:, :length], dtype=np.uint8))
        while True:
            if self.head_watch is not None and self.head_watch.lost:
                raise RayHeadLost(self.head_watch.lost)
            actor = self._acquire()
            sent = time.perf_counter()
            try:
                start, end, compute_s, queued_s = self._wait(actor.handle.predict.remote(*payload), self.call_timeout_s)
            except (self._ray.exceptions.RayActorError, self._ray.exceptions.GetTimeoutError) as exc:
                self._lose(actor, exc)
                continue  # the same batch again, on a surviving actor
            finally:
                self._release(actor)
            with self._lock:
                self._round_trips_ms.append(1000 * (time.perf_counter() - sent))
                self._compute_ms.append(1000 * compute_s)
                self._queued_ms.append(1000 * queued_s)
            return start, end

    def _request_length(self, attention_mask: np.ndarray) -> int:
        """The bucket length that holds the batch (its windows are cut to it before they travel)."""
        return batch_bucket(attention_mask, self.options.sequence_buckets or (attention_mask.shape[1],))

    def _acquire(self) -> _Actor:
        with self._lock:
            alive = [a for a in self.actors if a.alive]
            if not alive:
                raise RuntimeError("every Ray worker of the pool is lost: " +
                                   "; ".join(e["error"] for e in self.events[-3:]))
            actor = min(alive, key=lambda a: a.in_flight / a.capacity)
            actor.in_flight += 1
            return actor

    def _release(self, actor: _Actor) -> None:
        with self._lock:
            actor.in_flight -= 1

    def _lose(self, actor: _Actor, exc: BaseException) -> None:
        with self._lock:
            if not actor.alive:
                return
            actor.alive = False
            event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": "worker lost",
                     "node_id": actor.info["node_id"], "hostname": actor.info["hostname"], "pid": actor.info["pid"],
                     "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                     "workers_left": sum(1 for a in self.actors if a.alive)}
            self.events.append(event)
        log.warning("Ray worker on %s (pid %s) lost (%s); its batches run again on the %d left", event["hostname"],
                    event["pid"], event["error"], event["workers_left"])

    @property
    def degraded(self) -> bool:
        return any(not a.alive for a in self.actors)

    def describe(self) -> dict:
        import ray

        with self._lock:
            round_trips = np.asarray(self._round_trips_ms)
            queued = np.asarray(self._queued_ms)
            overhead = round_trips - np.asarray(self._compute_ms) - queued
        nodes: dict[str, dict] = {}
        for actor in self.actors:
            node = nodes.setdefault(actor.info["node_id"], {
                "node_id": actor.info["node_id"], "hostname": actor.info["hostname"],
                "cpu_model": actor.info["cpu_model"], "node_cpus": actor.info["node_cpus"], "workers": 0})
            node["workers"] += 1
        engine = self.actors[0].info["engine"] if self.actors else {}
        return {
            **engine,
            "backend": f"{self.engine_name} on ray",
            "engine": self.engine_name,
            "cluster": {
                "kind": "ray", "ray_version": ray.__version__, "address": self.options.ray.address or "local",
                "number_of_nodes": len(nodes), "workers": len(self.actors),
                "cpus_per_worker": sorted({a.info["cpus"] for a in self.actors}),
                "in_flight_per_worker": sorted({a.capacity for a in self.actors}), "nodes": list(nodes.values()),
            },
            "sequence_buckets": list(self.options.sequence_buckets) if self.options.sequence_buckets else None,
            "round_trip_ms": _percentiles(round_trips), "dispatch_overhead_ms": _percentiles(overhead),
            "queued_in_worker_ms": _percentiles(queued),
            "degraded": self.degraded,
            "events": list(self.events),
        }

    def _run(self, feeds):  # pragma: no cover - predict() is overridden
        raise NotImplementedError

    def close(self) -> None:
        ray = self._ray
        watch, self.head_watch = self.head_watch, None
        if watch is not None:
            watch.stop()
        if (watch is not None and watch.lost) or self._abandoned_init:
            # Without a head, ray.kill and ray.shutdown wait for it (until Ray ends the process): leave the actors
            # to their nodes, which end them once the head is gone for good
            self.actors = []
            return
        for actor in getattr(self, "actors", []):
            try:
                ray.kill(actor.handle)
            except Exception:  # a lost actor is already gone
                pass
        self.actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()


def _percentiles(values: np.ndarray) -> dict | None:
    if values.size == 0:
        return None
    return {"calls": int(values.size), **{f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}}
