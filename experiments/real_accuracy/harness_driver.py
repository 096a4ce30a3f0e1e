"""The harness phase of the real-accuracy experiment: every exported model through ``python -m harness run`` (a
separate process: its command line, as a user runs it) on the held-out articles, and the figures read back from
each run's ``run.json``. Results are cached by job and model (an interrupted phase continues)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compression.errors import CompressionError
from experiments.real_accuracy.config import RealAccuracyConfig
from harness.isolated import run_module
from squad.features import FeatureParams

HARNESS_RESULTS_FILE = "harness_results.json"
CHILD_STOP_GRACE_S = 60.0  # a stopped harness job's time to mark its run interrupted (its own LoadGen child: 30 s)


@dataclass(frozen=True)
class HarnessJob:
    """One ``python -m harness run`` invocation: performance (one pass over every held-out window) and
    accuracy, or a SingleStream latency run."""

    model: str  # row label
    model_dir: str
    backend: str
    bucketing: bool
    fast_vnni: bool = False
    scenario: str = "Offline"
    packing: bool = False  # --packing (several windows per row; no buckets)

    @property
    def key(self) -> str:
        return (f"{self.model}|{self.backend}|{'packed' if self.packing else 'buckets' if self.bucketing else 'padded'}|"
                f"{'fastvnni' if self.fast_vnni else 'exact'}|{self.scenario}")

    @property
    def column(self) -> str:
        """The results table's column: backend and what differs from the default run."""
        how = " packed" if self.packing else "" if self.bucketing else " padded"
        return f"{self.backend}{how}{' fast-VNNI' if self.fast_vnni else ''}"


def write_heldout_data_dir(split_heldout_json: Path, vocab: Path, out: Path, max_questions: int | None = None) -> Path:
    """A data directory the harness accepts: the held-out articles as ``dev-v1.1.json`` beside the vocab
    (``max_questions``: only the first ones, for quick runs). The harness labels it UNOFFICIAL DATA (it is not
    the official dev file), which is right."""
    out.mkdir(parents=True, exist_ok=True)
    dev = split_heldout_json.read_bytes()
    if max_questions is not None:
        dev = (json.dumps(_first_questions(json.loads(dev), max_questions), ensure_ascii=False) + "\n").encode()
    for payload, name in ((dev, "dev-v1.1.json"), (vocab.read_bytes(), "vocab.txt")):
        target = out / name
        if not target.is_file() or target.read_bytes() != payload:
            target.write_bytes(payload)
    return out


def _first_questions(document: dict, count: int) -> dict:
    """The SQuAD document cut to its first ``count`` questions (articles and paragraphs kept as they are)."""
    articles = []
    for article in document["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = paragraph["qas"][:count]
            count -= len(qas)
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {**document, "data": articles}


def harness_command(job: HarnessJob, data_dir: Path, runs_dir: Path, cache_dir: Path, windows: int,
                    config: RealAccuracyConfig) -> list[str]:
    """The arguments of ``python -m harness`` that run ``job``."""
    command = ["run", "--scenario", job.scenario, "--model", job.model_dir,
               "--backend", job.backend, "--data-dir", str(data_dir), "--runs-dir", str(runs_dir),
               "--cache-dir", str(cache_dir), "--no-progress"]
    if job.scenario == "Offline":
        # one pass over every held-out window: LoadGen issues max(min_query_count, target_qps x duration) samples
        command += ["--mode", "both", "--target-qps", "1", "--min-duration-ms", "1000", "--min-query-count", str(windows)]
    else:
        # LoadGen generates 2 x min_duration / expected latency queries up front and a run that outpaces them
        # ends INVALID ("ran out of generated queries"); user.conf's value is set for the MobileBERT model.
        command += ["--mode", "performance", "--min-duration-ms", str(config.single_stream_duration_ms),
                    "--min-query-count", "64", "--expected-latency-ms", str(config.single_stream_expected_latency_ms)]
    if job.packing:
        command.append("--packing")
    elif not job.bucketing:
        command.append("--no-bucketing")
    if job.fast_vnni:
        command.append("--fast-vnni-emulation")
    return command


def run_harness_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``python -m harness args``, its output captured; Ctrl-C or SIGTERM stops it too (it marks its run
    interrupted and exits, killed only after ``CHILD_STOP_GRACE_S``: :func:`harness.isolated.run_module`)."""
    process, _ = run_module("harness", args, env=env, capture_output=True, stop_grace_s=CHILD_STOP_GRACE_S)
    return process


def run_harness_job(job: HarnessJob, data_dir: Path, work_dir: Path, windows: int, config: RealAccuracyConfig
                    ) -> dict[str, Any]:
    """Run one job in its own process and collect its records (run.json of each test it made)."""
    runs_dir = work_dir / "runs" / job.key.replace("|", "_")
    if runs_dir.exists():  # a run an interrupted invocation left half-done: keep it aside, never overwrite
        runs_dir.rename(runs_dir.with_name(runs_dir.name + f".abandoned-{int(time.time())}"))
    command = harness_command(job, data_dir, runs_dir, work_dir / "cache", windows, config)
    env = {**os.environ, "OBERT_OFFLINE": "1"}
    started = time.perf_counter()
    proc = run_harness_process(command, env)
    if proc.returncode != 0:
        raise CompressionError(f"harness job {job.key} failed (exit {proc.returncode}): "
                               f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}; command: python -m harness "
                               f"{' '.join(command)}")
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/run.json"))]
    result: dict[str, Any] = {"job": asdict(job), "command": ["python", "-m", "harness", *command], "seconds": round(time.perf_counter() - started, 1),
                              "run_dirs": [r["run_dir"] for r in records]}
    for record in records:
        load = (record.get("machine_load") or {}).get("warning")
        if load:
            result.setdefault("machine_not_idle", []).append(load)
        if record["mode"] == "accuracy":
            result["f1"], result["exact_match"] = record["accuracy"]["f1"], record["accuracy"]["exact_match"]
            result["questions"] = record["accuracy"]["examples_scored"]
            result["predictions"] = str(Path(record["run_dir"]) / "predictions.json")
        else:
            results = record.get("results") or {}
            result["samples_per_second"] = results.get("samples_per_second")
            result["validity"] = results.get("validity")
            result["latency_ms"] = results.get("latency_ms")
            result["backend"] = record["backend"]
            result["engine_precision"] = record["backend"].get("precision")  # what OpenVINO executed
    return result


def harness_jobs(models: dict[str, Path], config: RealAccuracyConfig, int8_label: str | None) -> list[HarnessJob]:
    """Every harness run, model by model, the INT8 model's first: its comparisons (buckets, packing, fast VNNI,
    DeepSparse vs ONNX Runtime) are the ones that matter, so they run together in the first invocation."""
    jobs = []
    for label in sorted(models, key=lambda name: name != int8_label):
        model_dir = str(models[label])
        for backend in config.harness_backends:
            for bucketing in (True, False) if backend in config.padded_backends else (True,):
                jobs.append(HarnessJob(label, model_dir, backend, bucketing))
        if label != int8_label:
            continue
        if "deepsparse" in config.harness_backends:
            for bucketing in (True, False):
                jobs.append(HarnessJob(label, model_dir, "deepsparse", bucketing, fast_vnni=True))
            for fast in (False, True):
                jobs.append(HarnessJob(label, model_dir, "deepsparse", True, fast_vnni=fast, scenario="SingleStream"))
        # packed rows against buckets, on the trained model that matters
        jobs += [HarnessJob(label, model_dir, backend, False, packing=True) for backend in config.harness_backends]
    return jobs


def run_harness_phase(models: dict[str, Path], config: RealAccuracyConfig, data_dir: Path, out_dir: Path,
                      windows: int, int8_label: str | None, progress: bool) -> dict[str, dict[str, Any]]:
    """Every harness job, each result cached by job and model (an interrupted phase continues). Each result
    names the experiment invocation that measured it: speeds compare only within one (see summarize)."""
    from tqdm.auto import tqdm

    invocation = time.strftime("%Y-%m-%dT%H:%M:%S") + f" pid {os.getpid()}"
    path = out_dir / "harness" / HARNESS_RESULTS_FILE
    cached = json.loads(path.read_text()) if path.is_file() else {}
    results: dict[str, dict[str, Any]] = {}
    jobs = harness_jobs(models, config, int8_label)
    bar = tqdm(jobs, desc="harness runs", unit="run", disable=not progress)
    for job in bar:
        stamp = (Path(job.model_dir) / "model.onnx").stat().st_mtime
        previous = cached.get(job.key)
        if previous is not None and previous.get("model_mtime") == stamp:
            results[job.key] = previous
            continue
        bar.set_postfix_str(job.key)
        results[job.key] = {**run_harness_job(job, data_dir, out_dir / "harness", windows, config), "model_mtime": stamp,
                            "invocation": invocation}
        cached[job.key] = results[job.key]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1) + "\n")
    return results


def predictions_identical(a: str, b: str) -> dict[str, Any]:
    first, second = json.loads(Path(a).read_text()), json.loads(Path(b).read_text())
    differing = sorted(q for q in first if first[q] != second.get(q))
    return {"identical": not differing and first.keys() == second.keys(), "differing": len(differing),
            "examples": differing[:5]}


def heldout_windows(data_dir: Path, out_dir: Path) -> int:
    from squad.features import load_or_build_features

    features = load_or_build_features(data_dir / "dev-v1.1.json", data_dir / "vocab.txt", FeatureParams(),
                                      out_dir / "harness" / "cache" / "features", progress=False)
    return len(features)
