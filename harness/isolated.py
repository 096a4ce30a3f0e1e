"""Running one LoadGen test in a fresh Python process.

LoadGen 6.0.17 keeps configuration state per process: every test after the first one logs
``error_invalid_config: Multiple conf files are used`` in its detail log, an error the submission
checker rejects. So whenever one command runs several tests (``run --mode both``, ``bench``,
``submission``), each runs in its own process. The child rebuilds the features from the feature cache
and re-inspects the model from a JSON description of the request, instead of receiving pickled
arrays (DeepSparse refuses unpickled int64 arrays as "unsupported type 'int64'").

``python -m harness.isolated SPEC.json RESULT.json [WRAPPER.pkl]``
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from harness.errors import BackendFault, DiskFull, HarnessError, RunStopped
from harness.interrupts import Terminated, describe, exit_now, exit_status, install_sigterm_handler
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
        "backend_options": asdict(r.backend_options), "sut_options": asdict(r.sut_options),
        "overrides": r.overrides.given(), "mlperf_conf": str(r.mlperf_conf), "user_conf": str(r.user_conf),
        "runs_root": str(r.runs_root), "audit_config": str(r.audit_config) if r.audit_config else None,
        "fault_grace_s": r.fault_grace_s, "progress": r.progress, "abort_when_invalid": r.abort_when_invalid,
        "requested_count": r.requested_count,
    }


def request_from_spec(spec: dict, wrapper=None) -> RunRequest:
    from harness.backends import BackendOptions
    from squad.data import DatasetFiles
    from harness.models import resolve_model
    from harness.scenarios import SutOptions
    from harness.settings import LoadGenOverrides
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
        dataset=dataset, backend_options=BackendOptions(**spec["backend_options"]),
        sut_options=SutOptions(**spec["sut_options"]), mlperf_conf=Path(spec["mlperf_conf"]),
        user_conf=Path(spec["user_conf"]), runs_root=Path(spec["runs_root"]),
        overrides=LoadGenOverrides(**spec["overrides"]),
        audit_config=Path(spec["audit_config"]) if spec["audit_config"] else None,
        fault_grace_s=spec["fault_grace_s"], progress=spec["progress"], backend_wrapper=wrapper,
        abort_when_invalid=spec.get("abort_when_invalid", False), requested_count=spec.get("requested_count"),
    )


def execute_run_isolated(request: RunRequest, feature_cache_dir: Path) -> dict:
    """:func:`harness.runner.execute_run` in a child process; returns the run record.

    ``request.backend_wrapper`` (tests' fault injection) must be picklable. Raises BackendFault or
    HarnessError as the in-process call would."""
    with tempfile.TemporaryDirectory(prefix="obert-run-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(request_to_spec(request, feature_cache_dir)))
        command = [sys.executable, "-m", "harness.isolated", str(spec_path), str(result_path)]
        if request.backend_wrapper is not None:
            with (Path(tmp) / "wrapper.pkl").open("wb") as f:
                pickle.dump(request.backend_wrapper, f)
            command.append(str(Path(tmp) / "wrapper.pkl"))
        outcome = run_child(command, result_path)
        if outcome is None:
            raise BackendFault(f"{request.scenario} {request.mode} run ended without a result; see the newest run "
                               f"directory under {request.runs_root}")
    if not outcome["ok"]:
        raise _ERRORS.get(outcome["kind"], HarnessError)(outcome["error"])
    return outcome["record"]


def main(argv: list[str]) -> int:
    from harness.runner import execute_run

    spec_path, result_path = Path(argv[0]), Path(argv[1])
    wrapper = None
    if len(argv) > 2:
        with open(argv[2], "rb") as f:
            wrapper = pickle.load(f)  # written by our own parent process
    return write_outcome(result_path, "record",
                         lambda: execute_run(request_from_spec(json.loads(spec_path.read_text()), wrapper)))


def run_child(command: list[str], result_path: Path) -> dict | None:
    """Parent side: run a ``python -m harness...`` child with this checkout importable; returns the
    outcome it wrote (see :func:`write_outcome`), or None when it died before writing one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(command, env=env)
    try:
        child.wait()
    except KeyboardInterrupt as interrupt:
        # Ctrl-C reaches the child too (same process group); SIGTERM only us: pass it on. Either way the
        # child marks its run interrupted and exits; wait for that instead of killing it mid-write.
        if isinstance(interrupt, Terminated):
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=CHILD_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    return json.loads(result_path.read_text()) if result_path.is_file() else None


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
    from harness.cli import configure_logging

    configure_logging(verbose=False)
    install_sigterm_handler()
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt as interrupt:  # the run is already marked interrupted
        print(describe(interrupt), file=sys.stderr)
        exit_now(exit_status(interrupt))
