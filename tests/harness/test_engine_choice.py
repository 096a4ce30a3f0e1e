"""``--backend auto``: the rule on faked CPU flags (AMX, AVX-512 VNNI, AVX2 only), the fallbacks (a model without
its QDQ form, an engine that cannot be imported), the choice and its reason in run.json and the summary line, and an
accuracy run under ``auto`` that gives exactly the chosen engine's responses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cmdline.provenance import cpu_isa
from harness.engine_choice import (AUTO, ENGINE_RULE, EngineChoice, choose_engine, fit_to_model, rule_for,
                                   summary_tag)
from harness.models import inspect_onnx_model
from harness.sysinfo import REPO_ROOT

# /proc/cpuinfo flags of the machines the rule's lines rest on (docs/running.md, Which engine), cut to the ISA part
AMX_XEON = "avx2 avx512f avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8 fma".split()
ZEN5 = "avx2 avx512f avx512_bf16 avx512_vnni fma".split()
AVX2_ONLY = "avx2 fma".split()


@pytest.mark.parametrize("flags, engine, cpu_class, measured", [
    (AMX_XEON, "openvino", "AMX", True),
    (["avx2", "amx_tile"], "openvino", "AMX", True),  # any AMX flag counts
    (ZEN5, "openvino", "AVX-512 VNNI, no AMX", True),
    (AVX2_ONLY, "deepsparse", "AVX2 only", False),
    ([], "deepsparse", "no AVX2", False),  # flags unreadable
], ids=["amx-xeon", "amx-tile", "zen5-vnni", "avx2-only", "no-flags"])
def test_the_rule_picks_the_engine_from_the_cpu_flags(flags, engine, cpu_class, measured):
    choice = choose_engine(AUTO, flags=flags)
    assert (choice.chosen, choice.cpu_class, choice.fallback) == (engine, cpu_class, None)
    assert rule_for(flags).measured is measured
    assert "docs/running.md, Which engine" in choice.reason or not flags
    if not measured and flags:  # the rule says what it does not rest on
        assert "rests on no measurement" in choice.reason and "OpenVINO has not been measured" in choice.reason


def test_every_line_of_the_rule_points_at_a_written_measurement():
    """The docs section the rule's reasons point at holds the figures each measured line rests on."""
    text = (REPO_ROOT / "docs" / "running.md").read_text()
    section = text.split("## Which engine", 1)[1].split("\n## ", 1)[0]
    for figure in ("2.29x", "1.16x", "1.32x", "performance/amx-2026-12-07/report.md"):
        assert figure in section, figure
    assert "AVX2 only" in section and "`--backend auto`" in section
    assert [rule.engine for rule in ENGINE_RULE] == ["openvino", "openvino", "deepsparse"]


def test_a_named_engine_overrides_the_rule():
    for name in ("deepsparse", "openvino", "onnxruntime"):
        choice = choose_engine(name, flags=AMX_XEON)
        assert (choice.requested, choice.chosen, choice.fallback) == (name, name, None)
        assert summary_tag(choice.as_dict()) == ""


def test_an_engine_that_cannot_be_imported_falls_back_to_the_other(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    choice = choose_engine(AUTO, flags=ZEN5)
    assert choice.chosen == "deepsparse" and "openvino cannot be imported here" in choice.fallback
    line = choice.console_line()
    assert line.startswith("engine: deepsparse, by --backend auto falling back from openvino (the rule's engine on "
                           "AVX-512 VNNI, no AMX): openvino cannot be imported here") and "\n" not in line


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> Path:
    """The harness's default INT8 model at tiny geometry, with its QDQ form (what OpenVINO runs)."""
    from compression.benchmark_model import build_benchmark_model

    return build_benchmark_model(tmp_path_factory.mktemp("engine-choice") / "sparse-int8", vocab=None,
                                 variant="sparse-int8", preset="tiny", seed=3, packed_variant=False, progress=False)


@pytest.fixture()
def without_qdq(tiny_int8, tmp_path) -> Path:
    """The same model's DeepSparse form alone, as an export made before the QDQ form existed left it."""
    alone = tmp_path / "no-qdq"
    alone.mkdir()
    shutil.copyfile(tiny_int8 / "model.onnx", alone / "model.onnx")
    return alone


@pytest.mark.parametrize("flags", [AMX_XEON, ZEN5], ids=["amx", "vnni"])
def test_a_model_without_its_qdq_form_falls_back_to_deepsparse(flags, tiny_int8, without_qdq):
    choice = choose_engine(AUTO, flags=flags)
    assert choice.chosen == "openvino"
    with_qdq = fit_to_model(choice, inspect_onnx_model(tiny_int8 / "model.onnx"))
    assert with_qdq == choice  # the QDQ form is there: OpenVINO runs it in INT8
    fell_back = fit_to_model(choice, inspect_onnx_model(without_qdq / "model.onnx"))
    assert fell_back.chosen == "deepsparse" and fell_back.reason == choice.reason
    assert str(without_qdq / "model.onnx") in fell_back.fallback and "MatMulInteger" in fell_back.fallback
    assert "9x slower" in fell_back.fallback
    assert summary_tag(fell_back.as_dict()) == f" (auto: {choice.cpu_class}; fallback from openvino)"
    # a float model OpenVINO runs as it is; a named engine is never changed
    from tests.onnx_fixtures import write_toy_qa_model

    toy = write_toy_qa_model(without_qdq.parent / "toy" / "model.onnx")
    assert fit_to_model(choice, inspect_onnx_model(toy)).chosen == "openvino"
    named = choose_engine("openvino", flags=flags)
    assert fit_to_model(named, inspect_onnx_model(without_qdq / "model.onnx")) == named


def test_run_json_and_the_summary_line_name_the_choice_and_its_reason(sample_features, without_qdq, tmp_path):
    """The fallback's run, on any x86 CPU: the choice made on AMX flags for a model without its QDQ form."""
    from harness.backends import BackendOptions
    from harness.runner import RunRequest, execute_run
    from harness.scenarios import SutOptions
    from harness.loadgen_settings import LoadGenOverrides

    dataset, features, _ = sample_features
    model = inspect_onnx_model(without_qdq / "model.onnx")
    choice = fit_to_model(choose_engine(AUTO, flags=AMX_XEON), model)
    record = execute_run(RunRequest(
        scenario="Offline", mode="performance", backend=choice.chosen, model=model, features=features,
        dataset=dataset, backend_options=BackendOptions(batch_size=4), sut_options=SutOptions(num_workers=1),
        mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / "runs",
        overrides=LoadGenOverrides(min_duration_ms=200, min_query_count=len(features), target_qps=500),
        progress=False, backend_choice=choice.as_dict()))
    on_disk = json.loads((Path(record["run_dir"]) / "run.json").read_text())
    assert on_disk["backend_choice"] == {"requested": "auto", "chosen": "deepsparse", "reason": choice.reason,
                                         "cpu_class": "AMX", "fallback": choice.fallback}
    assert on_disk["backend"]["backend"] == "deepsparse"
    assert on_disk["summary"].startswith("[COMPLETE] deepsparse (auto: AMX; fallback from openvino) Offline performance")


def _run_cli(backend: str, model_dir: Path, sample_dataset, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backend", backend, "--model", str(model_dir), "--mode", "accuracy",
         "--data-dir", str(sample_dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"),
         "--runs-dir", str(tmp_path / f"runs-{backend}"), "--quick", "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def _accuracy_log(runs: Path) -> tuple[dict, dict]:
    run_dir = next(runs.iterdir())
    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: e["data"] for e in entries}, json.loads((run_dir / "run.json").read_text())


def test_auto_resolves_to_a_named_engine_whose_accuracy_log_it_gives(tiny_int8, sample_dataset, tmp_path):
    """This CPU's rule decides; the accuracy log under auto is the named engine's, response for response."""
    expected = rule_for(cpu_isa()).engine
    auto = _run_cli("auto", tiny_int8, sample_dataset, tmp_path)
    assert auto.returncode == 0, auto.stderr[-3000:]
    named = _run_cli(expected, tiny_int8, sample_dataset, tmp_path)
    assert named.returncode == 0, named.stderr[-3000:]
    auto_log, auto_record = _accuracy_log(tmp_path / "runs-auto")
    named_log, named_record = _accuracy_log(tmp_path / f"runs-{expected}")
    assert auto_record["backend"]["backend"] == expected == auto_record["backend_choice"]["chosen"]
    assert auto_record["backend_choice"]["requested"] == "auto" and auto_record["backend_choice"]["reason"]
    assert named_record["backend_choice"] == EngineChoice(expected, expected, "named with --backend").as_dict()
    assert auto_log == named_log and len(auto_log) > 0
    assert auto_record["accuracy"]["f1"] == named_record["accuracy"]["f1"]
    # said once at the start, and on the summary line
    lines = [line for line in auto.stderr.splitlines() if line.startswith("engine: ")]
    assert lines == [f"engine: {expected}, chosen by --backend auto: {auto_record['backend_choice']['reason']}; "
                     "--backend NAME overrides"]
    assert f"] {expected} (auto: {rule_for(cpu_isa()).cpu_class})" in auto.stdout
    assert not [line for line in named.stderr.splitlines() if line.startswith("engine: ")]


def test_the_suites_engines_section_checks_the_rule_against_what_it_measured():
    """The benchmark suite names its engines; its engines section says whether ``auto``'s engine was the faster one."""
    from benchmarks.report import engines_section
    from benchmarks.summaries import auto_check

    assert auto_check(AMX_XEON, {"samples_per_s": 110.54}, {"samples_per_s": 253.35}) == {
        "engine": "openvino", "cpu_class": "AMX", "rule_measured": True, "faster_offline": "openvino", "agrees": True}
    avx2 = auto_check(AVX2_ONLY, {"samples_per_s": 30.0}, {"samples_per_s": 40.0})
    assert (avx2["engine"], avx2["agrees"]) == ("deepsparse", False)
    assert auto_check(AVX2_ONLY, None, {"samples_per_s": 40.0})["agrees"] is None
    empty = {"deepsparse": None, "openvino": None, "openvino_vs_deepsparse": None}
    report = "\n".join(engines_section({
        "cpu_model": "cpu", "isa": AVX2_ONLY, "auto": avx2, "offline_first": empty, "offline_all": empty,
        "server_sweep": {"ds": None, "ov": None}, "server_sweep_openvino_vs_deepsparse": None,
        "singlestream_p90_ms": {"deepsparse": None, "openvino": None}, "singlestream_p90_openvino_vs_deepsparse": None}))
    assert "`--backend auto` picks deepsparse on this CPU class (AVX2 only, a line of the rule that rested on no " \
           "measurement); faster here in Offline: openvino: it DISAGREES" in report
