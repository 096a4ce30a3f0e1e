"""Spellings users of the MLPerf reference run.py, Neural Magic's harness and the MLC automation type
(docs/options-map.md), --audit-conf outside the submission flow, and a run on a given model that leaves torch
and sparseml unimported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)


@pytest.fixture()
def toy_model_dir(tmp_path):
    write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    return tmp_path / "toy"


def _common(tmp_path, sample_dataset, model_dir) -> list[str]:
    return ["run", "--backend", "onnxruntime", "--model", str(model_dir), "--data-dir",
            str(sample_dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"), "--runs-dir",
            str(tmp_path / "runs"), "--no-progress", "--quick", "--count", "16"]


@pytest.mark.parametrize("alias, canonical", [
    (["--accuracy"], ["--mode", "accuracy"]),
    (["--model-path", "m"], ["--model", "m"]),
    (["--model_path", "m"], ["--model", "m"]),
    (["--max_examples", "5"], ["--count", "5"]),
    (["--max-examples", "5"], ["--count", "5"]),
    (["--mlperf_conf", "a.conf"], ["--mlperf-conf", "a.conf"]),
    (["--user_conf", "u.conf"], ["--user-conf", "u.conf"]),
    (["--audit_conf", "TEST01"], ["--audit-conf", "TEST01"]),
    (["--batch_size", "3"], ["--batch-size", "3"]),
    (["--target_qps", "7"], ["--target-qps", "7"]),
])
def test_an_alias_parses_exactly_like_our_spelling(alias, canonical):
    from harness.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", *alias]) == parser.parse_args(["run", *canonical])
    assert parser.parse_args(["run", *alias]) != parser.parse_args(["run"])


def test_the_submission_command_takes_the_engine_aliases_too():
    from submission.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--batch_size", "3"]).batch_size == 3


def test_a_test01_audit_run_outside_the_submission_flow(tmp_path, sample_dataset, toy_model_dir):
    """--audit-conf TEST01: the bert TEST01 audit.config the submission flow writes, in effect in LoadGen (the detail
    log's effective settings, a sampled accuracy log in performance mode) and recorded in run.json."""
    from harness.loadgen_logs import read_detail_log
    from harness.compliance_audit import TEST01_AUDIT_CONFIG

    proc = _run_cli(*_common(tmp_path, sample_dataset, toy_model_dir), "--audit_conf", "TEST01")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compliance audit run" in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "audit.config").read_text() == TEST01_AUDIT_CONFIG
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    assert detail["effective_accuracy_log_sampling_target"] == 4096
    assert detail["effective_accuracy_log_rng_seed"] == 720381539243781796
    assert detail["errors"] == [], detail["errors"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["mode"] == "performance" and record["settings"]["audit_config"].endswith("audit.config")
    sampled = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sampled, "TEST01 samples responses into the accuracy log of a performance run"


def test_a_plain_run_has_no_audit(tmp_path, sample_dataset, toy_model_dir):
    """Without --audit-conf a stray audit.config in the working directory is never read (the runner names an
    empty one in the run directory), and the accuracy log of a performance run stays empty."""
    from harness.loadgen_logs import read_detail_log
    from harness.compliance_audit import write_audit_config

    stray = tmp_path / "cwd"
    stray.mkdir()
    write_audit_config(stray / "audit.config")
    proc = subprocess.run([sys.executable, "-m", "harness", *_common(tmp_path, sample_dataset, toy_model_dir)],
                          capture_output=True, text=True, timeout=300, cwd=stray,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert read_detail_log(run_dir / "mlperf_log_detail.txt")["effective_accuracy_log_sampling_target"] == 0
    assert json.loads((run_dir / "mlperf_log_accuracy.json").read_text()) == []


@pytest.mark.parametrize("extra, fragments", [
    (["--audit-conf", "TEST01", "--mode", "both"], ("--audit-conf", "performance mode")),
    (["--audit-conf", "TEST01", "--accuracy"], ("--audit-conf", "performance mode")),
    (["--audit-conf", "nowhere/audit.config"], ("--audit-conf", "nowhere/audit.config", "no such file")),
])
def test_audit_conf_mistakes_are_one_clear_error(tmp_path, sample_dataset, toy_model_dir, extra, fragments):
    proc = _run_cli(*_common(tmp_path, sample_dataset, toy_model_dir), *extra)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert all(fragment in error for fragment in fragments), error
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


_HEAVY = ("torch", "sparseml", "compression")


def test_the_cli_and_the_run_path_of_a_given_model_import_neither_torch_nor_sparseml(tmp_path, toy_model_dir):
    """torch and sparseml (~2.4 s, ~270 MB) are the compression pipeline's: a run on a given model needs neither.
    The command line and every module of the run path are imported, and the model resolved, in a fresh process."""
    script = f"""
import sys
from pathlib import Path
import harness.cli, harness.commands, harness.runner, harness.isolated, harness.scenarios, harness.loadgen_settings
import harness.backends, harness.backends.bucketed, harness.backends.onnxruntime_backend, harness.accuracy
from harness.cli import build_parser
from harness.run_inputs import resolve_run_model
build_parser().parse_args(["run", "--model", {str(toy_model_dir)!r}])
model = resolve_run_model({str(toy_model_dir)!r}, Path("unused-vocab.txt"), Path({str(tmp_path / "cache")!r}))
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout, proc.stdout


def test_a_performance_run_on_a_given_model_imports_neither_torch_nor_sparseml(tmp_path, sample_dataset,
                                                                               toy_model_dir):
    """The whole `run` on a given model, once the feature cache is built (building it tokenizes with transformers,
    which imports torch when it is installed; `prepare` does that once)."""
    args = _common(tmp_path, sample_dataset, toy_model_dir)
    prepare = _run_cli("prepare", "--data-dir", str(sample_dataset.dev_json.parent), "--cache-dir",
                       str(tmp_path / "cache"), "--no-progress")
    assert prepare.returncode == 0, prepare.stderr[-2000:]
    script = f"""
import sys
from harness.cli import main
code = main({args!r})
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
sys.exit(code)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout, proc.stdout[-2000:]


def test_a_built_default_model_is_found_without_importing_the_compression_pipeline(tmp_path):
    """`run` without --model on the default model once built: its directory name (the compression pipeline's) is
    remembered per digest of compression's code and recipes, so neither torch nor sparseml is imported. An entry of
    another digest (compression changed since) is not used."""
    models = tmp_path / "models"
    models.mkdir()
    env = {**os.environ, "OBERT_MODELS_DIR": str(models), "OBERT_BENCHMARK_PRESET": "tiny"}
    (models / ".default-model-dirs.json").write_text(json.dumps({"sparse-int8|tiny|0000000000000000": "stale"}))
    compute = """
from pathlib import Path
from compression.benchmark_model import default_model_dir as theirs
from harness.run_inputs import default_model_dir
print(default_model_dir("sparse-int8")); print(theirs("sparse-int8", root=Path(%r), preset="tiny"))
""" % str(models)
    first = subprocess.run([sys.executable, "-c", compute], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                           env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    ours, theirs = first.stdout.split()
    assert ours == theirs and not ours.endswith("stale")
    write_toy_qa_model(Path(ours) / "model.onnx")  # stands for the built model
    find = f"""
import sys
from pathlib import Path
from harness.run_inputs import benchmark_model_dir
print(benchmark_model_dir("sparse-int8", Path("unused-vocab.txt")))
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
"""
    second = subprocess.run([sys.executable, "-c", find], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.splitlines() == [ours, "imported: []"], second.stdout


def _declared_flags(package: Path) -> dict[str, list[str]]:
    """Every flag string given to a declaration (``flag``, ``also``, ``add_argument``) in ``package``, with where."""
    import ast

    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "flag", "also", "add_argument"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                        found.setdefault(arg.value, []).append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    return found


def test_each_engine_and_loadgen_flag_of_run_is_declared_once():
    """An engine or LoadGen option is one declaration, next to what reads it: the flags of `harness run --help`
    (other than the run's own) each appear in exactly one declaration in the harness."""
    from harness.cli import build_parser

    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {name for action in run_parser._actions for name in action.option_strings if name.startswith("--")}
    declared = _declared_flags(REPO_ROOT / "harness")
    engine_flags = {name for name in flags if any("engine_settings.py" in p or "backends" in p or "scenarios.py" in p
                                                  or "loadgen_settings.py" in p for p in declared.get(name, []))}
    assert {"--precision", "--scheduler", "--intra-op-threads", "--ray-workers", "--server-policy", "--batch-size",
            "--target-qps", "--no-bucketing"} <= engine_flags
    repeated = {name: declared[name] for name in engine_flags if len(declared[name]) != 1}
    assert not repeated, f"declared more than once: {repeated}"


def test_the_recorded_command_of_a_run_gives_back_its_settings():
    """The `harness run` command a submission's README gives for a recorded run parses back to the same engine, SUT
    and LoadGen settings (the flags are generated from the same declarations)."""
    import shlex

    from harness.backends.openvino_backend import OpenVinoOptions
    from harness.cli import build_parser
    from harness.options import from_args, to_dict
    from harness.engine_settings import EngineSettings
    from harness.loadgen_settings import LoadGenOverrides
    from submission.package import run_command

    given = ["--backend", "openvino", "--precision", "f32", "--num-streams", "2", "--buckets", "128,384",
             "--workers", "3", "--server-policy", "aging", "--batch-size", "4", "--target-qps", "12.5"]
    args = build_parser().parse_args(["run", "--scenario", "Server", *given])
    engine = EngineSettings.from_args(args)
    options, sut = engine.for_scenario("Server")
    overrides = from_args(LoadGenOverrides, args)
    assert options.engine == OpenVinoOptions(precision="f32")
    record = {"scenario": "Server", "mode": "performance", "backend": {"backend": "openvino"},
              "model": {"path": "m"}, "dataset": {"dev_json": "/d/dev-v1.1.json"},
              "settings": {"backend_options": to_dict(options), "sut_options": to_dict(sut),
                           "overrides": overrides.given()}}
    again = build_parser().parse_args(shlex.split(run_command(record))[3:])
    assert EngineSettings.from_args(again).for_scenario("Server") == (options, sut)
    assert from_args(LoadGenOverrides, again) == overrides


def test_a_run_of_both_modes_checks_its_input_and_converts_the_model_once(tmp_path, sample_dataset, toy_model_dir,
                                                                         monkeypatch):
    """One `harness run --mode both` on OpenVINO: the model and vocabulary are checked once and the engine's form of
    the model is settled once, for the one engine both tests run on."""
    import harness.backends.openvino_backend as openvino_backend
    import harness.runner as runner
    from harness.cli import main

    calls = {"check_model_fits": 0, "check_vocab_fits": 0, "openvino_model": 0}

    def counted(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(runner, "check_model_fits")
    counted(runner, "check_vocab_fits")
    counted(openvino_backend, "openvino_model")
    args = _common(tmp_path, sample_dataset, toy_model_dir)
    args[args.index("--backend") + 1] = "openvino"
    assert main([*args, "--mode", "both", "--precision", "f32"]) == 0
    assert calls == {"check_model_fits": 1, "check_vocab_fits": 1, "openvino_model": 1}
    assert len(list((tmp_path / "runs").iterdir())) == 2
