"""The benchmark suite's machinery on a toy model and the built-in sample (figures are not checked, only
that every job runs, the summary is computed from them and the report and plots are written), the MAC
counter on a hand-built sparse graph, and the published-design SUTs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from harness.bench.jobs import TuneConfig
from harness.bench.macs import compute_peak, count_macs
from harness.bench.suite import Suite, SuiteConfig, SuiteModels
from harness.errors import ConfigError
from harness.models import inspect_onnx_model
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def _sparse_linear_qa_model(path, weight: np.ndarray):
    """Embedding (ids -> 8 floats) -> MatMul by ``weight`` [8, 8] -> attention-like x @ x^T @ x -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "sequence"]) for n in ("start_logits", "end_logits")]
    table = np.random.default_rng(0).standard_normal((4000, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "weight"], ["hidden"]),  # weight MACs: 8 x 8 x density per token
        helper.make_node("Transpose", ["hidden"], ["hidden_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["hidden", "hidden_t"], ["scores"]),  # L x L x 8 per window
        helper.make_node("MatMul", ["scores", "hidden"], ["mixed"]),  # L x L x 8 per window
        helper.make_node("ReduceSum", ["mixed", "axes"], ["start_logits"], keepdims=0),
        helper.make_node("ReduceMax", ["mixed"], ["end_logits"], axes=[2], keepdims=0),
        helper.make_node("Cast", ["attention_mask"], ["unused_mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["unused_types"], to=TensorProto.FLOAT),
    ]
    initializers = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(weight, "weight"),
                    numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")]
    model = helper.make_model(helper.make_graph(nodes, "sparse_linear", inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return inspect_onnx_model(path)


def test_count_macs_counts_nonzero_weights_and_attention(tmp_path):
    weight = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
    weight[:, :2] = 0  # 25% of the weights are zero
    profile = count_macs(_sparse_linear_qa_model(tmp_path / "model.onnx", weight))
    assert profile.linear_dense == 64
    assert profile.linear_effective == 48
    assert profile.attention == 16  # two L x L x 8 products
    assert profile.int8 is False
    assert float(profile.effective(10)) == 48 * 10 + 16 * 100
    peak = compute_peak()
    assert peak.int8_macs_per_s > peak.fp32_macs_per_s > 0 and "MACs per cycle" in peak.how


@pytest.fixture(scope="module")
def sample(sample_features):
    return sample_features


def test_published_design_refuses_a_bucketed_backend(sample, tmp_path):
    from harness.backends import BackendOptions, create_backend
    from harness.bench.designs import PublishedOfflineSut
    from harness.qsl import SquadQSL
    from harness.scenarios import SutOptions

    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "model.onnx"))
    backend = create_backend("onnxruntime", model, BackendOptions(batch_size=2, sequence_buckets=(128, 384)))
    qsl = SquadQSL(sample[1])
    try:
        with pytest.raises(ConfigError, match="without length bucketing"):
            PublishedOfflineSut(backend, qsl, SutOptions())
    finally:
        qsl.destroy()
        backend.close()


def test_suite_runs_every_job_and_writes_report_and_plots(sample, tmp_path):
    dataset, features, cache = sample
    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "toy" / "model.onnx"))
    config = SuiteConfig(samples=24, offline_batch=4, server_batch=4, buckets=(96, 160, 384),
                         server_fractions=(0.3,), published_server_fractions=(0.3,), server_duration_ms=400,
                         sections=("offline", "server", "tune"), tune=(TuneConfig(2), TuneConfig(4, 2)))
    suite = Suite(config, SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False)
    results = suite.run()
    summary = results["summary"]
    offline = {(r["job"], r["design"], r["samples"]): r for r in summary["offline"]}
    ours = offline[("ds-sparse-int8-bucketed", "ours", 24)]
    assert ours["buckets"] == [96, 160, 384] and ours["mean_tokens_computed"] < 384
    assert {"bare_samples_per_s", "overhead_pct", "bare_drift_pct"} <= ours.keys()
    assert ("ds-sparse-int8-bucketed", "ours", len(features)) in offline  # the full run
    assert offline[("ds-sparse-int8-padded", "published-offline", 24)]["mean_tokens_computed"] == 384
    assert summary["targets"]["ours_vs_published_offline"] is not None
    assert summary["targets"]["peak_rss_mb_full_offline"] > 0
    designs = {r["design"] for r in summary["server"]}
    assert designs == {"ours", "published-server"}
    assert [(r["batch_size"], r["num_streams"]) for r in summary["tune"]] == [(2, 1), (4, 2)]
    report = (suite.out_dir / "report.md").read_text()
    assert "## Targets" in report and "## Server" in report and "## Tuning" in report
    for name in ("offline_throughput", "latency_vs_qps", "tuning"):
        assert (suite.out_dir / f"{name}.png").stat().st_size > 1000
    saved = json.loads((suite.out_dir / "bench.json").read_text())
    assert saved["summary"]["met"].keys() == summary["targets"].keys()

    # Re-reporting an earlier suite without measuring anything gives the same Offline figures.
    again = Suite(replace(config, sections=()), SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False, reuse=suite.out_dir).run()
    assert again["summary"]["offline"] == summary["offline"]
    assert again["reused_from"] == str(suite.out_dir) and again["jobs"]["server-ours"]["reused"] is True
    with pytest.raises(ConfigError, match="--reuse .* measured on 24 of"):
        Suite(replace(config, samples=12), SuiteModels(sparse_int8=model), features=features, dataset=dataset,
              mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
              feature_cache_dir=cache, progress=False, reuse=suite.out_dir)
