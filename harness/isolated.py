"""Running LoadGen tests in a fresh Python process.

LoadGen 6.0.17 keeps configuration state per process: once user.conf has been read a second time, every
test logs ``error_invalid_config: Multiple conf files are used`` in its detail log, an error the submission
checker rejects. Tests of one scenario can share one reading (``harness.loadgen_settings.ConfSettings``), so a child
runs one scenario's tests (performance, accuracy, TEST01) on one engine, compiling which is most of a short
run's time. Tests of another scenario go to
another child. The child rebuilds the features from the feature cache and re-inspects the model from a JSON
description of the requests, instead of receiving pickled arrays (DeepSparse refuses unpickled int64 arrays
as "unsupported type 'int64'").

``python -m harness.isolated SPEC.json RESULT.json [WRAPPER.pkl]``

:func:`run_module` is how every application of the harness (submission, the benchmark suite's jobs, the
experiments' ``python -m harness run`` jobs) runs a child process: with this checkout importable, stopped with the
parent, its outcome read back.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from cmdline.children import run_child
from harness.errors import BackendFault, DiskFull, HarnessError, RunStopped
from harness.interrupts import run_child_main
from harness.options import from_dict, to_dict
from harness.runner import RunRequest
from harness.sysinfo import REPO_ROOT

CHILD_EXIT_GRACE_S = 30.0  # how long an interrupted child gets to record its run before it is killed
# The errors that cross the process boundary as themselves (each has its own exit status); others as HarnessError
_ERRORS = {cls.__name__: cls for cls in (BackendFault, DiskFull, RunStopped)}


def request_to_spec(request: RunRequest, feature_cache_dir: Path) -> dict:
    """A JSON description of a request from which :func:`request_from_spec` rebuilds it."""
    r = request
    return {
        "scenario": r.scenario, "mode": r.mode, "backend": r.backend, "model_path": str(r.model.onnx_path),
        "dataset": {"dev_json": str(r.dataset.dev_json), "vocab": str(r.dataset.vocab),
                    "kind": r.dataset.kind, "source": r.dataset.source},
        "feature_params": asdict(r.features.params), "feature_cache_dir": str(feature_cache_dir),
        "count": len(r.features) if ":first" in r.features.fingerprint else None,
        "fingerprint": r.features.fingerprint,
        "backend_options": to_dict(r.backend_options), "sut_options": to_dict(r.sut_options),
        "overrides": r.overrides.given(), "mlperf_conf": str(r.mlperf_conf), "user_conf": str(r.user_conf),
        "runs_root": str(r.runs_root), "audit_config": str(r.audit_config) if r.audit_config else None,
        "fault_grace_s": r.fault_grace_s, "progress": r.progress, "abort_when_invalid": r.abort_when_invalid,
        "requested_count": r.requested_count, "backend_choice": r.backend_choice,
    }


def request_from_spec(spec: dict, wrapper=None) -> RunRequest:
    from harness.backends import BackendOptions
    from harness.backends.registry import engine
    from squad.data import DatasetFiles
    from harness.models import resolve_model
    from harness.scenarios import SutOptions
    from harness.loadgen_settings import LoadGenOverrides
    from squad.features import FeatureParams, load_or_build_features, select_features

    data = spec["dataset"]
    dataset = DatasetFiles(Path(data["dev_json"]), Path(data["vocab"]), data["kind"], data["source"])
    features = load_or_build_features(dataset.dev_json, dataset.vocab, FeatureParams(**spec["feature_params"]),
                                      Path(spec["feature_cache_dir"]), progress=False)
    if spec["count"] is not None:
        features = select_features(features, spec["count"])
    if features.fingerprint != spec["fingerprint"]:
        raise HarnessError(f"features changed since the run was planned ({features.fingerprint} != "
                           f"{spec['fingerprint']}); is another process rebuilding the feature cache?")
    model = resolve_model(spec["model_path"], download_dir=Path(spec["feature_cache_dir"]).parent / "models")
    return RunRequest(
        scenario=spec["scenario"], mode=spec["mode"], backend=spec["backend"], model=model, features=features,
        dataset=dataset, sut_options=from_dict(SutOptions, spec["sut_options"]),
        backend_options=from_dict(BackendOptions, spec["backend_options"],
                                  types={"engine": engine(spec["backend"]).options_type()}), mlperf_conf=Path(spec["mlperf_conf"]),
        user_conf=Path(spec["user_conf"]), runs_root=Path(spec["runs_root"]),
        overrides=LoadGenOverrides(**spec["overrides"]),
        audit_config=Path(spec["audit_config"]) if spec["audit_config"] else None,
        fault_grace_s=spec["fault_grace_s"], progress=spec["progress"], backend_wrapper=wrapper,
        abort_when_invalid=spec.get("abort_when_invalid", False), requested_count=spec.get("requested_count"),
        backend_choice=spec.get("backend_choice"),
    )


def execute_runs_isolated(requests: list[RunRequest], feature_cache_dir: Path) -> list[dict]:
    """Tests of one scenario, in order, in one child process on one engine; returns their run records.

    The requests must agree on everything the engine and the conf reading depend on (scenario, backend, model,
    backend options, features, conf files); they differ in mode, overrides and audit config. Each
    ``request.backend_wrapper`` (tests' fault injection) must be picklable. Raises BackendFault or HarnessError
    as the in-process call would; the tests completed before the failing one keep their complete run
    directories."""
    first = requests[0]
    specs = [request_to_spec(r, feature_cache_dir) for r in requests]
    shared = {key: specs[0][key] for key in ENGINE_KEYS}
    differing = sorted(key for spec in specs for key in ENGINE_KEYS if spec[key] != shared[key])
    if differing:
        raise ValueError(f"tests run on one engine must share {', '.join(dict.fromkeys(differing))}")
    with tempfile.TemporaryDirectory(prefix="obert-run-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({"runs": specs}))
        args = [str(spec_path), str(result_path)]
        if first.backend_wrapper is not None:
            with (Path(tmp) / "wrapper.pkl").open("wb") as f:
                pickle.dump(first.backend_wrapper, f)
            args.append(str(Path(tmp) / "wrapper.pkl"))
        _, outcome = run_module("harness.isolated", args, result_path=result_path)
    return child_result(outcome, "records", f"{first.scenario} {'/'.join(r.mode for r in requests)} runs",
                        first.runs_root)


def child_result(outcome: dict | None, key: str, what: str, runs_root: Path):
    """The parent's side of :func:`write_outcome`: the child's result, or its error raised here as itself."""
    if outcome is None:
        raise BackendFault(f"{what} ended without a result; see the newest run directory under {runs_root}")
    if not outcome["ok"]:
        raise _ERRORS.get(outcome["kind"], HarnessError)(outcome["error"])
    return outcome[key]


# What one engine and one reading of the conf files serve: the requests of one child must agree on these
ENGINE_KEYS = ("scenario", "backend", "model_path", "dataset", "feature_params", "count", "fingerprint",
               "backend_options", "mlperf_conf", "user_conf")


def run_tests_on_one_engine(requests: list[RunRequest]) -> list[dict]:
    """The child's work: build the engine and read the conf files once, then run each test on them."""
    from harness.backends import create_backend
    from harness.runner import execute_run
    from harness.loadgen_settings import conf_test_settings

    first = requests[0]
    conf = conf_test_settings(first.scenario, first.mode, mlperf_conf=first.mlperf_conf, user_conf=first.user_conf)
    backend = create_backend(first.backend, first.model, first.backend_options, progress=first.progress)
    try:
        return [execute_run(request, backend=backend, conf_settings=conf) for request in requests]
    finally:
        backend.close()


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    wrapper = None
    if len(argv) > 2:
        with open(argv[2], "rb") as f:
            wrapper = pickle.load(f)  # written by our own parent process
    specs = json.loads(spec_path.read_text())["runs"]
    return write_outcome(result_path, "records",
                         lambda: run_tests_on_one_engine([request_from_spec(spec, wrapper) for spec in specs]))


def run_module(module: str, args: Sequence[str], *, result_path: Path | None = None,
               env: Mapping[str, str] | None = None, capture_output: bool = False,
               stop_grace_s: float = CHILD_EXIT_GRACE_S) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run ``python -m module args`` to its end with this checkout importable (``env``: the child's environment, this
    process's by default); returns the finished process (its output as text with ``capture_output``) and the outcome
    it wrote to ``result_path`` (see :func:`write_outcome`; None when it wrote none). Ctrl-C or SIGTERM stops the
    child too: it marks its run interrupted and exits, killed only after ``stop_grace_s``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    process = run_child([sys.executable, "-m", module, *args], env=env, capture_output=capture_output,
                        stop_grace_s=stop_grace_s)
    outcome = json.loads(result_path.read_text()) if result_path is not None and result_path.is_file() else None
    return process, outcome


def write_outcome(result_path: Path, key: str, work) -> int:
    """Child side of a process boundary: run ``work()`` and write ``{"ok": true, key: result}``, or the
    user-facing error and its kind, as JSON for the parent; returns the exit status."""
    try:
        outcome = {"ok": True, key: work()}
    except HarnessError as exc:
        kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else "HarnessError"
        outcome = {"ok": False, "kind": kind, "error": str(exc), "exit_status": exc.exit_status}
    result_path.write_text(json.dumps(outcome, default=str))
    return 0 if outcome["ok"] else outcome["exit_status"]


if __name__ == "__main__":
    from harness.logging_config import configure_logging

    configure_logging(verbose=False)
    run_child_main(main)
