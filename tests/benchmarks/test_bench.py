"""The benchmark suite's machinery on a toy model and the built-in sample (figures are not checked, only
that every job runs, the summary is computed from them and the report and plots are written), the MAC
counter on a hand-built sparse graph, and the published-design SUTs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.jobs import TuneConfig
from benchmarks.macs import compute_peak, count_macs
from benchmarks.report import TARGET_TEXT, target_lines
from benchmarks.config import SuiteConfig, SuiteModels
from benchmarks.projections import bucket_choice, bucket_plans
from benchmarks.suite import Suite
from harness.errors import ConfigError
from harness.models import inspect_onnx_model
from harness.sysinfo import REPO_ROOT, machine_info
from tests.onnx_fixtures import write_toy_packed_variant, write_toy_qa_model


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


@pytest.mark.parametrize("design, buckets, message", [
    ("PublishedOfflineSut", (128, 384), "without length bucketing"),  # v2.1 padded every window to 384
    ("PublishedV3OfflineSut", None, "one engine per length bucket"),  # v3.0 bucketed
])
def test_published_designs_refuse_a_backend_of_the_other_kind(sample, tmp_path, design, buckets, message):
    from harness.backends import BackendOptions, create_backend
    from benchmarks import designs
    from harness.qsl import SquadQSL
    from harness.scenarios import SutOptions

    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "model.onnx"))
    backend = create_backend("onnxruntime", model, BackendOptions(batch_size=2, sequence_buckets=buckets))
    qsl = SquadQSL(sample[1])
    try:
        with pytest.raises(ConfigError, match=message):
            getattr(designs, design)(backend, qsl, SutOptions())
    finally:
        qsl.destroy()
        backend.close()


def test_suite_runs_every_job_and_writes_report_and_plots(sample, tmp_path):
    dataset, features, cache = sample
    path = write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    write_toy_packed_variant(path)
    model = inspect_onnx_model(path)
    config = SuiteConfig(samples=24, offline_batch=4, server_batch=4, buckets=(96, 160, 384), v3_batch=8,
                         server_fractions=(0.3,), published_server_fractions=(0.3,), server_duration_ms=400,
                         offline_streams=1, server_streams=1, other_offline_configs=((2, 2),), other_server_streams=(2,),
                         other_streams_server_fractions=(0.3,), singlestream_duration_ms=300, service_profile_count=3,
                         sections=("offline", "server", "tune"), tune=(TuneConfig(2), TuneConfig(4, 2)))
    suite = Suite(config, SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False)
    results = suite.run()
    summary = results["summary"]
    offline = {(r["job"], r["design"], r["samples"]): r for r in summary["offline"]}
    ours = offline[("ds-sparse-int8-bucketed", "ours", 24)]
    assert ours["buckets"] == [96, 160, 384] and ours["mean_tokens_computed"] < 384
    assert {"bare_samples_per_s", "overhead_pct", "bare_spread_pct"} <= ours.keys()
    assert len(ours["overhead_rounds_pct"]) == 3  # bare, harness, bare, harness, bare, harness, bare
    assert len(results["jobs"]["ds-sparse-int8-bucketed"]["overhead"]["bare_samples_per_s"]) == 4
    assert ("ds-sparse-int8-bucketed", "ours", len(features)) in offline  # the full run
    variant = offline[("ds-sparse-int8-bucketed-2x2", "ours", 24)]
    assert (variant["streams"], variant["batch_size"]) == (2, 2)
    assert ours["streams"] == 1
    assert offline[("ds-sparse-int8-padded", "published-offline", 24)]["mean_tokens_computed"] == 384
    assert summary["targets"]["ours_vs_published_offline"] is not None
    # Neural Magic's v3.0 design on the same features: its five buckets, one stream, its own batch
    v3 = offline[("ds-sparse-int8-v3design", "published-v3-offline", len(features))]
    assert v3["buckets"] == [64, 128, 192, 256, 384] and (v3["streams"], v3["batch_size"]) == (1, 8)
    assert summary["targets"]["ours_vs_v3_design_offline"] == pytest.approx(  # our headline (see below)
        summary["targets"]["offline_samples_per_s_full"] / v3["samples_per_s"], abs=0.01)
    assert summary["targets"]["offline_samples_per_s_full"] > 0
    # ours with packed rows instead of buckets, on the same features; the headline is the faster of the two
    packed = offline[("ds-sparse-int8-packed", "ours", len(features))]
    assert packed["windows_per_row"] > 1 and packed["mean_tokens_computed"] < 384 and packed["buckets"] is None
    assert summary["offline_headline"]["packed_vs_bucketed"] == pytest.approx(
        packed["samples_per_s"] / offline[("ds-sparse-int8-bucketed", "ours", len(features))]["samples_per_s"], abs=0.01)
    assert summary["targets"]["offline_samples_per_s_full"] == max(
        packed["samples_per_s"], offline[("ds-sparse-int8-bucketed", "ours", len(features))]["samples_per_s"])
    assert summary["targets"]["server_vs_queueing_bound"] is None or summary["targets"]["server_vs_queueing_bound"] > 0
    # projection to many-core machines from this run's Offline and Server service times
    cores = summary["core_projection"]
    rows = {r["cores"]: r for r in cores["rows"]}
    assert sorted(rows) == [2, 8, 32, 96, 192] and cores["cores_per_stream"] >= 1
    assert rows[192]["offline_samples_per_s"] == pytest.approx(192 * cores["offline_samples_per_s_per_core"], rel=1e-3)
    assert rows[192]["server_qps"] >= rows[8]["server_qps"] > 0
    assert all(0 < r["server_vs_offline"] for r in rows.values())
    assert summary["targets"]["peak_rss_mb_full_offline"] > 0
    designs = {r["design"] for r in summary["server"]}
    assert designs == {"ours", "published-server"}
    assert set(summary["server_best"]) == {"server-ours", "server-ours-slack", "server-ours-2streams", "server-published"}
    slack = [r for r in summary["server"] if r["job"] == "server-ours-slack"]
    assert slack and all(r["p99_ms"] is not None for r in slack)
    # batch 4 here: no in-run bound (it rescales batch-1 service times)
    bounds = {r["job"]: r for r in summary["server_bounds"] if r["kind"] == "isolated"}
    assert [r["kind"] for r in summary["server_bounds"]].count("in-run") == 0
    assert bounds.keys() == {"server-ours", "server-ours-2streams"}
    assert bounds["server-ours-2streams"]["servers"] == 2 and bounds["server-ours"]["max_qps"] > 0
    assert sorted(bounds["server-ours"]["bucket_service_ms"]) == [96, 160, 384]
    [single] = summary["singlestream"]
    assert single["job"] == "singlestream-ours" and single["p90_ms"] > 0
    assert [(r["batch_size"], r["num_streams"]) for r in summary["tune"]] == [(2, 1), (4, 2)]
    report = (suite.out_dir / "report.md").read_text()
    assert "## Targets" in report and "## Server" in report and "## Tuning" in report and "## SingleStream" in report
    # provenance on top: what produced the figures, when, at which commit, on which CPU; no blank target rows
    assert report.splitlines()[2].startswith("Produced by `") and " UTC, commit `" in report.splitlines()[2]
    recorded = json.loads((suite.out_dir / "bench.json").read_text())["provenance"]
    assert recorded["isa"] == machine_info()["isa"] and recorded["commit"] and "not measured |" not in report
    assert "queueing model" in report
    assert "## Projection to many-core machines" in report and "v3.0 design" in report
    for name in ("offline_throughput", "latency_vs_qps", "tuning", "core_projection"):
        assert (suite.out_dir / f"{name}.png").stat().st_size > 1000
    saved = json.loads((suite.out_dir / "bench.json").read_text())
    assert saved["summary"]["met"].keys() == summary["targets"].keys()

    # Re-reporting an earlier suite without measuring anything gives the same Offline figures.
    again = Suite(replace(config, sections=()), SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False, reuse=suite.out_dir).run()
    assert again["summary"]["offline"] == summary["offline"]
    assert again["reused_from"] == [str(suite.out_dir)] and again["jobs"]["server-ours"]["reused"] is True
    # Several earlier suites combine; the first that has a job wins.
    other = json.loads((suite.out_dir / "bench.json").read_text())
    other["jobs"]["server-ours"]["build_s"] = -1.0
    other["jobs"]["bucket-lengths"] = {**other["jobs"]["tune-ds-sparse-int8"], "label": "bucket-lengths"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "bench.json").write_text(json.dumps(other))
    combined = Suite(replace(config, sections=()), SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                     mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                     feature_cache_dir=cache, progress=False, reuse=[suite.out_dir, tmp_path / "other"]).run()
    assert combined["jobs"]["server-ours"]["build_s"] != -1.0
    assert "bucket-lengths" in combined["jobs"]
    with pytest.raises(ConfigError, match="--reuse .* measured on 24 of"):
        Suite(replace(config, samples=12), SuiteModels(sparse_int8=model), features=features, dataset=dataset,
              mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
              feature_cache_dir=cache, progress=False, reuse=suite.out_dir)


def test_bucket_plans_choose_the_batch_per_bucket_jointly_with_the_bucket_set():
    from types import SimpleNamespace

    # short windows run fastest at batch 16, long ones at batch 8: one batch for all cannot get both
    speed = {(128, 8): 100.0, (128, 16): 150.0, (384, 8): 30.0, (384, 16): 20.0}
    rows = [{"length": n, "batch_size": b, "num_streams": 2, "samples_per_s": sps, "build_s": 40.0,
             "rss_added_mb": 200.0} for (n, b), sps in speed.items()]
    features = SimpleNamespace(params=SimpleNamespace(max_seq_length=384), seq_lengths=np.array([100, 90, 120, 300]))
    plans = bucket_plans(rows, features)
    assert [p["buckets"] for p in plans] == [[128, 384], [384]]  # every set of the measured lengths, fastest first
    bucketed, padded = plans
    assert bucketed["batches"] == [16, 8] and bucketed["window_share"] == [0.75, 0.25]
    assert bucketed["expected_samples_per_s"] == pytest.approx(1 / (0.75 / 150 + 0.25 / 30), abs=0.01)
    assert bucketed["uniform_batch_samples_per_s"] == {"8": pytest.approx(1 / (0.75 / 100 + 0.25 / 30), abs=0.01),
                                                       "16": pytest.approx(1 / (0.75 / 150 + 0.25 / 20), abs=0.01)}
    assert (bucketed["build_s"], bucketed["rss_added_mb"]) == (80.0, 400.0)
    assert padded["batches"] == [8] and padded["vs_padded"] == 1.0
    assert bucketed["vs_padded"] == pytest.approx(bucketed["expected_samples_per_s"] / 30.0, abs=0.01)

    choice = bucket_choice(plans, {"buckets": [128, 384], "offline_batch": 8})
    assert choice["default_expected"] == bucketed["uniform_batch_samples_per_s"]["8"]
    assert choice["joint_vs_default"] == pytest.approx(75.0 / 63.16, abs=0.002)
    assert choice["best"]["buckets"] == [128, 384] and choice["best_within_default_engines"]["buckets"] == [128, 384]
    # without the longest window's length measured, no plan can hold every window
    assert bucket_plans([r for r in rows if r["length"] == 128], features) == []
    assert bucket_choice([], {"buckets": [128, 384], "offline_batch": 8}) is None


def test_the_report_lists_only_measured_targets_and_names_the_rest_in_one_line():
    keys = list(TARGET_TEXT)
    nothing = {"targets": dict.fromkeys(keys), "met": dict.fromkeys(keys), "target_values": dict.fromkeys(keys, 1.0)}
    assert target_lines(nothing) == []  # a section that measured no target gets no table of blanks
    one = {**nothing, "targets": {**nothing["targets"], keys[0]: 61.5}, "met": {**nothing["met"], keys[0]: True}}
    lines = target_lines(one)
    assert [line for line in lines if line.startswith("| ") and "---" not in line][1:] == [
        f"| {TARGET_TEXT[keys[0]][0]} | {TARGET_TEXT[keys[0]][1].format(1.0)} | 61.50 | yes |"]
    assert lines[-1].startswith("Not measured by the sections run: ") and TARGET_TEXT[keys[1]][0] in lines[-1]


def test_overhead_compares_each_harness_run_with_the_bare_loops_around_it():
    from benchmarks.summaries import overhead_summary

    # The machine speeds up 100 -> 110 -> 120 -> 130 while the harness costs exactly 1%.
    summary = overhead_summary({"bare_samples_per_s": [100, 110, 120, 130],
                                "harness_samples_per_s": [0.99 * 105, 0.99 * 115, 0.99 * 125]})
    assert summary["overhead_pct"] == pytest.approx(1.0)
    assert summary["overhead_rounds_pct"] == pytest.approx([1.0, 1.0, 1.0])
    assert summary["bare_spread_pct"] == pytest.approx(100 * 30 / 115, abs=0.01)


def test_fifo_queue_matches_mm1_theory_and_more_servers_never_hurt():
    from benchmarks.queueing import fifo_latencies

    rng = np.random.default_rng(3)
    gaps, service = rng.exponential(1 / 50, 200_000), rng.exponential(0.01, 200_000)
    # M/M/1 sojourn time is exponential with rate mu - lambda = 50/s: p99 = ln(100) / 50.
    assert np.percentile(fifo_latencies(gaps, service), 99) == pytest.approx(np.log(100) / 50, rel=0.03)
    one, two = fifo_latencies(gaps[:2000], service[:2000]), fifo_latencies(gaps[:2000], service[:2000], servers=2)
    assert np.all(two <= one + 1e-12) and np.all(two >= service[:2000] - 1e-12)


def test_max_rate_within_bound_finds_the_p99_crossing():
    from benchmarks.queueing import ServiceModel, max_rate_within_bound, percentile_at_rate

    model = ServiceModel(lengths=(128, 384), shares=(0.75, 0.25), seconds=((0.02, 0.022), (0.05, 0.055)))
    rate = max_rate_within_bound(model, 0.130, queries=5000)
    assert 0 < rate < 1 / model.mean_s
    assert percentile_at_rate(model, rate, queries=5000) <= 0.130 < percentile_at_rate(model, rate * 1.05, queries=5000)
    slower = ServiceModel(model.lengths, model.shares, ((0.2,), (0.2,)))
    assert max_rate_within_bound(slower, 0.130, queries=5000) == 0.0  # one window alone misses the bound
    assert max_rate_within_bound(model, 0.130, servers=2, queries=5000) > rate


def test_engine_overhead_is_wall_time_beyond_engine_time():
    from harness.run_record import harness_overhead_pct as engine_overhead_pct

    record = {"engine_busy_s": 9.8, "results": {"samples_per_second": 50.0}, "samples_completed": 500,
              "settings": {"sut_options": {"num_workers": 1}}}
    assert engine_overhead_pct(record) == pytest.approx(100 * (10.0 - 9.8) / 9.8, abs=0.01)
    two_workers = {**record, "engine_busy_s": 19.0, "settings": {"sut_options": {"num_workers": 2}}}
    assert engine_overhead_pct(two_workers) == pytest.approx(100 * (20.0 - 19.0) / 19.0, abs=0.01)
    assert engine_overhead_pct({**record, "engine_busy_s": None}) is None
    # Older records: a pinned query count (min == max, as the suite's Offline tests set) gives the samples.
    pinned = {k: v for k, v in record.items() if k != "samples_completed"}
    pinned["settings"] = {"sut_options": {"num_workers": 1}, "overrides": {"min_query_count": 500, "max_query_count": 500}}
    assert engine_overhead_pct(pinned) == engine_overhead_pct(record)
    assert engine_overhead_pct({**pinned, "settings": {"overrides": {"min_query_count": 500}}}) is None


def test_ray_section_compares_with_local_and_projects_to_many_nodes(sample, tmp_path):
    pytest.importorskip("ray")
    dataset, features, cache = sample
    path = write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    write_toy_packed_variant(path)
    model = inspect_onnx_model(path)
    config = SuiteConfig(samples=24, offline_batch=4, server_batch=1, buckets=(96, 160, 384), full_offline=False,
                         offline_streams=1, other_offline_configs=(), server_duration_ms=500, ray_server_fractions=(0.2,),
                         service_profile_count=3, sections=("ray",))  # one invocation: local and Ray
    suite = Suite(config, SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False)
    ray = suite.run()["summary"]["ray"]
    assert ray["offline_local"] > 0 and ray["offline_ray"] > 0 and ray["ray_vs_local"] is not None
    assert ray["workers"] == 2 and ray["cluster"]["number_of_nodes"] == 2 and ray["cluster"]["cpus_per_worker"] == [1]
    assert ray["dispatch_overhead_ms"]["calls"] > 0
    projection = {row["nodes"]: row for row in ray["projection"]}
    assert sorted(projection) == [1, 2, 4, 8, 16, 32, 64]
    assert projection[64]["offline_samples_per_s"] == pytest.approx(64 * ray["offline_ray"], rel=1e-3)
    assert ray["projection_streams_per_node"] == 1
    # the Ray Server sweep ran through the default placement on the one-node cluster, at the local sweep's loads
    server_cluster = suite.results["jobs"]["ray-server"]["records"][-1]["backend"]["cluster"]
    assert (server_cluster["number_of_nodes"], server_cluster["workers"]) == (1, 1)
    loads = {job: [r["target_qps"] for r in suite.results["summary"]["server"] if r["job"] == job]
             for job in ("local-server", "ray-server")}
    assert loads["local-server"] == loads["ray-server"] and loads["local-server"]
    assert projection[64]["server_qps"] >= projection[1]["server_qps"] > 0  # more servers never hurt
    # the placement comparison: one node with both CPUs, one actor owning it vs one actor per core
    assert ray["placement"]["node"] > 0 and ray["placement"]["core"] > 0 and ray["placement"]["core_vs_node"] > 0
    jobs = suite.results["jobs"]
    node_cluster = jobs["ray-placement-node"]["records"][-1]["backend"]["cluster"]
    core_cluster = jobs["ray-placement-core"]["records"][-1]["backend"]["cluster"]
    assert (node_cluster["number_of_nodes"], node_cluster["workers"], node_cluster["cpus_per_worker"]) == (1, 1, [2])
    assert (core_cluster["number_of_nodes"], core_cluster["workers"], core_cluster["cpus_per_worker"]) == (1, 2, [1])
    report = (suite.out_dir / "report.md").read_text()
    assert "## Scale-out on Ray" in report and "| 64 |" in report and "one actor per core" in report
    assert (suite.out_dir / "ray_projection.png").stat().st_size > 1000


def test_vnni_section_runs_each_scenario_with_and_without_the_fast_emulation(sample, tmp_path):
    dataset, features, cache = sample
    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "toy" / "model.onnx"))
    config = SuiteConfig(samples=24, offline_batch=4, buckets=(96, 160, 384), offline_streams=1,
                         singlestream_duration_ms=300, sections=("vnni",))
    suite = Suite(config, SuiteModels(sparse_int8=model), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False)
    results = suite.run()
    # the engine of each job reports the emulation it ran with (the variable is set in the job's own process)
    ran_with = {label: job["records"][-1]["backend"]["fast_vnni_emulation"] for label, job in results["jobs"].items()}
    assert ran_with == {"vnni-default-offline": False, "vnni-fast-offline": True,
                        "vnni-default-singlestream": False, "vnni-fast-singlestream": True}
    vnni = results["summary"]["vnni"]
    assert vnni["offline_samples"] == len(features)  # every feature (full_offline)
    assert vnni["offline_speedup"] == pytest.approx(vnni["offline_fast"] / vnni["offline_default"], abs=1e-3)
    assert vnni["singlestream_p90_ms_default"] > 0 and vnni["singlestream_p90_ms_fast"] > 0
    assert "## DeepSparse fast VNNI emulation" in (suite.out_dir / "report.md").read_text()


def test_engines_section_runs_openvino_beside_deepsparse_and_reports_the_ratios(sample, tmp_path):
    from compression.benchmark_model import build_benchmark_model

    dataset, features, cache = sample
    model_dir = build_benchmark_model(tmp_path / "tiny", vocab=None, variant="sparse-int8", preset="tiny", seed=3,
                                      packed_variant=False)
    model = inspect_onnx_model(model_dir / "model.onnx")
    dense = inspect_onnx_model(build_benchmark_model(tmp_path / "tiny-dense", vocab=None, variant="dense-fp32",
                                                     preset="tiny", seed=3, packed_variant=False) / "model.onnx")
    # Server points of 500 queries at least: LoadGen's early stopping needs ~460 to call a run VALID, and only
    # VALID points count as held
    config = SuiteConfig(samples=24, offline_batch=4, server_batch=1, buckets=(192, 384), singlestream_duration_ms=300,
                         server_duration_ms=300, engine_server_fractions=(0.05, 0.1), engine_server_min_queries=500,
                         engine_token_server_fractions=(0.1, 0.3), engine_full_server_duration_ms=400,
                         engine_full_server_shares=(50.0, 0.5, 0.25),  # the first far over what the sweep held
                         sections=("engines",))
    suite = Suite(config, SuiteModels(sparse_int8=model, dense_fp32_14l=dense), features=features, dataset=dataset,
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", out_root=tmp_path / "out",
                  feature_cache_dir=cache, progress=False)
    results = suite.run()
    jobs = results["jobs"]
    assert {label: job["backend_name"] for label, job in jobs.items()} == {
        "ds-engine-offline": "deepsparse", "ov-engine-offline": "openvino", "ov-engine-offline-f32": "openvino",
        "ov-engine-offline-sparse-weights": "openvino", "ds-engine-server": "deepsparse",
        "ds-engine-server-tokens": "deepsparse", "ds-engine-singlestream": "deepsparse",
        "ds-engine-server-full": "deepsparse", "ov-engine-server": "openvino", "ov-engine-server-tokens": "openvino",
        "ov-engine-singlestream": "openvino", "ov-engine-server-full": "openvino", "ov-dense-fp32-14l": "openvino",
        "ov-profile-int8": "openvino", "ov-profile-dense-fp32-14l": "openvino"}
    backend = jobs["ov-engine-offline-f32"]["records"][-1]["backend"]
    assert backend["executed_precision"] == {**backend["executed_precision"], "matmuls": "int8", "float_ops": "f32"}
    assert jobs["ov-engine-offline-sparse-weights"]["records"][-1]["backend"]["sparse_weights_decompression_rate"] == \
        pytest.approx(0.4)
    # the full-length runs' loads: shares of the highest load LoadGen called VALID in either policy's sweep, run with
    # that policy, tried in order until one is VALID
    sweep = [r for r in results["summary"]["server"] if r["job"] in ("ov-engine-server", "ov-engine-server-tokens")]
    best = max((r for r in sweep if r["validity"] == "VALID"), key=lambda r: r["target_qps"])
    records = jobs["ov-engine-server-full"]["records"]
    refused, second = records[:2]
    assert refused["results"]["validity"] == "INVALID"
    assert len(records) == (2 if second["results"]["validity"] == "VALID" else 3)  # none tried after a VALID one
    assert refused["results"]["target_qps"] == pytest.approx(50.0 * best["target_qps"], rel=1e-3)
    assert second["results"]["target_qps"] == pytest.approx(0.5 * best["target_qps"], rel=1e-3)
    assert second["settings"]["sut_options"]["server_policy"] == best["policy"]
    attempts = results["summary"]["engines"]["server_full_attempts"]["ov"]
    assert [a["target_qps"] for a in attempts] == [r["results"]["target_qps"] for r in records]
    shown = results["summary"]["engines"]["server_full"]["ov"]
    assert shown["target_qps"] == max((a for a in attempts if a["validity"] == "VALID"), default=attempts[-1],
                                      key=lambda a: a["target_qps"])["target_qps"]
    tokens = jobs["ov-engine-server-tokens"]["records"][-1]
    assert tokens["sut"]["policy"] == "tokens" and tokens["backend"]["num_streams"] == 2
    engines = results["summary"]["engines"]
    offline = engines["offline_all"]
    assert offline["openvino_vs_deepsparse"] == pytest.approx(offline["openvino"] / offline["deepsparse"], abs=1e-3)
    assert engines["isa"] == results["machine"]["isa"] and engines["openvino_precision"].startswith("int8")
    assert engines["singlestream_p90_ms"]["openvino"] > 0 and engines["server_full_openvino"]["target_qps"] > 0
    # each policy's highest VALID load as a share of the same engine's Offline, and a full run per engine
    for engine, offline_sps in (("ds", offline["deepsparse"]), ("ov", offline["openvino"])):
        for row in engines["server_by_policy"][engine].values():
            assert row is None or row["vs_offline"] == pytest.approx(row["target_qps"] / offline_sps, abs=1e-3)
        assert engines["server_full"][engine]["target_qps"] > 0
    # the INT8 model against the dense one, layer type by layer type, with the throughput ratio and its target
    profile = results["summary"]["openvino_profile"]
    assert profile["int8_vs_dense_samples_per_s"] == pytest.approx(
        profile["samples_per_s"]["int8"] / profile["samples_per_s"]["dense"], abs=1e-3)
    assert profile["by_layer_type"]["FullyConnected"]["int8"] > 0 and profile["by_layer_type"]["FullyConnected"]["dense"] > 0
    int8_kernels = {layer["exec_type"] for layer in profile["layers"]
                    if layer["layer_type"] == "FullyConnected" and layer["int8_nodes"]}
    assert int8_kernels and all(kernel.lower().endswith("i8") for kernel in int8_kernels)
    assert profile["sparse_weights"]["matmul_nodes"] > 0 and profile["sparse_weights"]["sparse_weight_matmuls"] >= 0
    report = (suite.out_dir / "report.md").read_text()
    assert "## Engines: OpenVINO vs DeepSparse" in report and "ISA:" in report
    assert "the INT8 model against the dense model, per layer type" in report


def test_server_bound_at_the_in_run_engine_speed_rescales_the_isolated_service_times():
    from types import SimpleNamespace

    from benchmarks.projections import server_bounds

    features = SimpleNamespace(params=SimpleNamespace(max_seq_length=384), seq_lengths=np.array([100] * 3 + [300]))
    jobs = {"server-ours": {"service_s": {"128": [0.020] * 5, "384": [0.060] * 5}, "backend": {"num_streams": 1}}}
    isolated_mean_ms = 0.75 * 20 + 0.25 * 60
    best = {"server-ours": {"engine_ms_per_batch": 1.25 * isolated_mean_ms, "batch_size": 1, "target_qps": 5.0}}
    rows = {r["kind"]: r for r in server_bounds(jobs, [], features, None, best)}
    assert rows.keys() == {"isolated", "in-run"}
    assert rows["isolated"]["mean_service_ms"] == pytest.approx(isolated_mean_ms)
    assert rows["in-run"]["mean_service_ms"] == pytest.approx(1.25 * isolated_mean_ms)
    assert rows["in-run"]["bucket_service_ms"] == {128: 25.0, 384: 75.0}
    assert 0 < rows["in-run"]["max_qps"] < rows["isolated"]["max_qps"]
    # without a valid batch-1 run there is nothing to rescale by
    assert [r["kind"] for r in server_bounds(jobs, [], features, None, {"server-ours": None})] == ["isolated"]


def test_peak_memory_of_a_child_process_is_its_own_not_its_parents():
    # Bench jobs run in child processes of a suite that may hold >1 GB (features, a model build): the
    # child's peak must not inherit the parent's, as getrusage's ru_maxrss does after vfork+exec.
    import subprocess
    import sys

    ballast = np.ones(400 * 2**20, dtype=np.uint8)  # the parent: +400 MB resident
    child = subprocess.run([sys.executable, "-c", "from harness.sysinfo import peak_rss_mb; print(peak_rss_mb())"],
                           capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert float(child.stdout) < 300, f"the child reported {child.stdout.strip()} MB, its parent's ballast included"
    assert ballast.sum() > 0
