"""The README's results-at-a-glance table and plots, written from the run directories of one invocation."""

from __future__ import annotations

from dataclasses import replace

from harness.backends import BackendOptions
from benchmarks.glance import LATENCY_PLOT, SERVER_PLOT, write_glance
from harness.models import inspect_onnx_model
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def test_the_glance_reports_each_full_length_run_with_its_verdict_and_plots_the_probes(sample_features, tmp_path):
    dataset, features = sample_features[:2]
    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "toy" / "model.onnx"))
    # "Full length" here: no command-line overrides, the lengths from a user.conf, as the script's runs are
    user_conf = tmp_path / "user.conf"
    user_conf.write_text((REPO_ROOT / "user.conf").read_text() + "\n".join([
        "bert.Offline.min_duration = 100", f"bert.Offline.min_query_count = {len(features)}",
        "bert.Offline.target_qps = 200000",  # the toy model answers ~45,000 samples/s: enough for the 100 ms
        "bert.Server.min_duration = 1000", "bert.Server.min_query_count = 20", "bert.Server.target_qps = 40",
        "bert.SingleStream.min_duration = 500", "bert.SingleStream.min_query_count = 20",
        "bert.SingleStream.target_latency = 1", ""]))
    base = RunRequest(scenario="Offline", mode="performance", backend="onnxruntime", model=model, features=features,
                      dataset=dataset, backend_options=BackendOptions(batch_size=1), sut_options=SutOptions(num_workers=1),
                      mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=user_conf, runs_root=tmp_path / "runs",
                      overrides=LoadGenOverrides(), progress=False)
    probe = execute_run(replace(base, scenario="Server", overrides=LoadGenOverrides(min_duration_ms=500, target_qps=30,
                                                                                      min_query_count=10)))
    assert probe["settings"]["overrides"]
    records = []
    for scenario, mode in (("Offline", "performance"), ("Server", "performance"), ("SingleStream", "performance"),
                           ("Offline", "accuracy")):
        records.append(execute_run(replace(base, scenario=scenario, mode=mode)))
        assert records[-1]["status"] == "complete" and not records[-1]["settings"]["overrides"], records[-1]["settings"]

    files = write_glance(tmp_path / "runs", tmp_path / "glance", command="scripts/results_at_a_glance.sh RUNS")
    text = files["table"].read_text()
    lines = text.splitlines()
    assert lines[0].startswith("Produced by `scripts/results_at_a_glance.sh RUNS` at ") and " commit `" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| scenario")]
    assert [row.split(" | ")[:2] for row in rows] == [["| Offline", "performance"], ["| Server", "performance"],
                                                      ["| SingleStream", "performance"], ["| Offline", "accuracy"]]
    # LoadGen's own verdict of each run (the toy runs are too short for some to be VALID), with its reason
    for row, record in zip(rows[:3], records):
        verdict = row.split(" | ")[4]
        assert verdict.split(" (")[0] == record["results"]["validity"], (row, record["results"])
        assert (record["results"]["invalid_reason"] or "").strip()[:20] in verdict
    assert rows[3].split(" | ")[4] == "-"  # an accuracy run has no LoadGen verdict
    assert "**40 QPS** offered" in rows[1] and "p90 " in rows[2] and "F1 " in rows[3]
    assert "Offered loads chosen by short probes" in text and "Server 30 QPS -> p99" in text
    assert files["latency_plot"].name == LATENCY_PLOT and files["latency_plot"].stat().st_size > 1000
    assert files["server_plot"].name == SERVER_PLOT and files["server_plot"].stat().st_size > 1000
    assert f"![latency_plot]({LATENCY_PLOT})" in text
