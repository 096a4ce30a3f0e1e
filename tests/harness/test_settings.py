"""LoadGen settings: mlperf.conf matches LoadGen's embedded rules; user.conf and overrides apply."""

from __future__ import annotations

import re

import pytest

from harness.errors import ConfigError
from harness.loadgen_settings import LoadGenOverrides, build_test_settings, conf_test_settings, validate_conf_file
from harness.sysinfo import REPO_ROOT

MLPERF_CONF = REPO_ROOT / "mlperf.conf"
USER_CONF = REPO_ROOT / "user.conf"


def conf_value(path, model: str, scenario: str, key: str) -> str | None:
    """Value LoadGen would pick: model/scenario-specific lines beat wildcard ones."""
    found: dict[tuple[bool, bool], str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([\w.*-]+)\.(\w+|\*)\.(\w+)\s*=\s*(\S+)", line.split("#")[0])
        if m and m.group(3) == key and m.group(1) in (model, "*") and m.group(2) in (scenario, "*"):
            found[(m.group(1) == model, m.group(2) == scenario)] = m.group(4)
    for rank in [(True, True), (False, True), (True, False), (False, False)]:
        if rank in found:
            return found[rank]
    return None


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream"])
def test_repo_mlperf_conf_matches_loadgen_embedded_rules(scenario):
    import mlperf_loadgen as lg

    embedded = lg.TestSettings()
    embedded.FromConfig(str(MLPERF_CONF), "bert", scenario, 0)
    assert embedded.performance_sample_count_override == int(conf_value(MLPERF_CONF, "bert", scenario, "performance_sample_count_override")) == 10833
    for key in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"):
        assert getattr(embedded, key) == int(conf_value(MLPERF_CONF, "bert", scenario, key))
    assert embedded.min_duration_ms == int(conf_value(MLPERF_CONF, "bert", scenario, "min_duration")) == 600000
    if scenario == "Server":
        assert embedded.server_target_latency_ns == int(conf_value(MLPERF_CONF, "bert", "Server", "target_latency")) * 10**6
        assert embedded.server_target_latency_ns == 130 * 10**6
    if scenario == "Offline":
        assert embedded.min_query_count == int(conf_value(MLPERF_CONF, "bert", "Offline", "min_query_count")) == 10833


def test_user_conf_targets_are_applied():
    settings, adjustments = build_test_settings(
        "Offline", "performance", mlperf_conf=MLPERF_CONF, user_conf=USER_CONF, total_count=10833,
        overrides=LoadGenOverrides(),
    )
    assert settings.offline_expected_qps == float(conf_value(USER_CONF, "bert", "Offline", "target_qps"))
    assert settings.performance_sample_count_override == 10833
    assert adjustments == {}


def test_performance_count_is_clamped_to_qsl_size_and_reported():
    settings, adjustments = build_test_settings(
        "Server", "performance", mlperf_conf=MLPERF_CONF, user_conf=USER_CONF, total_count=300,
        overrides=LoadGenOverrides(target_qps=7.5, min_duration_ms=1000, min_query_count=10),
    )
    assert settings.performance_sample_count_override == 300
    assert "performance_sample_count_override" in adjustments
    assert settings.server_target_qps == 7.5
    assert settings.min_duration_ms == 1000 and settings.min_query_count == 10
    assert settings.server_target_latency_ns == 130 * 10**6  # untouched by unrelated overrides


def test_shared_conf_settings_do_not_carry_one_runs_overrides_into_the_next():
    # The benchmark runs several tests on one TestSettings read once; a 512-feature run clamps the
    # performance count and sets a duration, which must not stay for a later run over every feature.
    conf = conf_test_settings("Offline", "performance", mlperf_conf=MLPERF_CONF, user_conf=USER_CONF)
    first, adjustments = conf.for_run(512, LoadGenOverrides(min_duration_ms=0, target_qps=1.0))
    assert first.performance_sample_count_override == 512 and "performance_sample_count_override" in adjustments
    second, adjustments = conf.for_run(10833, LoadGenOverrides())
    assert second.performance_sample_count_override == 10833 and adjustments == {}
    assert second.min_duration_ms == 600000
    assert second.offline_expected_qps == float(conf_value(USER_CONF, "bert", "Offline", "target_qps"))


def test_user_conf_typo_is_reported_with_line(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# ok\nbert.Offline.target_qps = 10\nbert.Offline target_qps 10\n")
    with pytest.raises(ConfigError, match=r"user.conf:3: cannot parse"):
        validate_conf_file(conf, "--user-conf")


def test_missing_conf_names_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"--user-conf .*nope.conf: file not found"):
        build_test_settings("Offline", "performance", mlperf_conf=MLPERF_CONF, user_conf=tmp_path / "nope.conf",
                            total_count=10, overrides=LoadGenOverrides())


def test_bad_mode_and_qps(tmp_path):
    with pytest.raises(ConfigError, match="--mode"):
        build_test_settings("Offline", "fast", mlperf_conf=MLPERF_CONF, user_conf=USER_CONF, total_count=10,
                            overrides=LoadGenOverrides())
    with pytest.raises(ConfigError, match="--target-qps must be > 0"):
        build_test_settings("Offline", "performance", mlperf_conf=MLPERF_CONF, user_conf=USER_CONF,
                            total_count=10, overrides=LoadGenOverrides(target_qps=0))


@pytest.mark.parametrize("value", ["1e400", "inf", "-Infinity", "nan"])
def test_non_finite_conf_values_are_refused(tmp_path, value):
    """strtod reads these without complaint (1e400 overflows to inf) and LoadGen ran with target_qps = inf."""
    conf = tmp_path / "user.conf"
    conf.write_text(f"bert.Offline.min_query_count = 0x10\nbert.Offline.target_qps = {value}\n")
    with pytest.raises(ConfigError, match=rf"user.conf:2: bert.Offline.target_qps: value '{value}' is not a finite number"):
        validate_conf_file(conf, "--user-conf", user_conf=True)


@pytest.mark.parametrize("name", ["target_qps", "target_latency_ms", "expected_latency_ms"])
def test_non_finite_overrides_are_refused(name):
    for value in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')} {value}: expected a finite number"):
            LoadGenOverrides(**{name: value})


def test_engine_defaults_per_scenario_and_backend():
    from harness.backends.deepsparse_backend import DeepSparseOptions
    from harness.engine_settings import DEFAULT_BATCH_SIZE, DEFAULT_STREAMS, EngineSettings
    from harness.scenarios import SutOptions

    deepsparse = EngineSettings(backend="deepsparse")
    offline, offline_sut = deepsparse.for_scenario("Offline")
    assert (offline.batch_size, offline.num_streams) == (DEFAULT_BATCH_SIZE["Offline"], DEFAULT_STREAMS["Offline"])
    assert offline.engine == DeepSparseOptions()  # the engine's own defaults where none were given
    assert offline.engine.scheduler_for(offline.num_streams) == ("multi_stream" if DEFAULT_STREAMS["Offline"] > 1
                                                                 else "default")
    assert offline_sut.num_workers == DEFAULT_STREAMS["Offline"]  # one worker per stream
    aging = EngineSettings(backend="deepsparse", sut=SutOptions(server_policy="aging"))
    server, server_sut = aging.for_scenario("Server")
    assert (server.batch_size, server.num_streams) == (1, None)  # engine default: one stream
    assert server.engine.scheduler_for(server.num_streams) == "default" and server_sut.num_workers == 1
    # Server's default policy, tokens: calls of 1, 2, 4, 8 packed rows on one stream (and worker) per core
    tokens, tokens_sut = deepsparse.for_scenario("Server")
    assert deepsparse.sut.server_policy == "tokens" and tokens.packing and tokens.sequence_buckets is None
    assert (tokens.batch_size, tokens.batch_sizes, tokens.num_streams) == (8, (1, 2, 4, 8), 2)
    assert tokens.engine.scheduler_for(tokens.num_streams) == "multi_stream" and tokens_sut.num_workers == 2
    # Streams are a DeepSparse/OpenVINO setting: ONNX Runtime gets none, and one SUT worker.
    ort, ort_sut = EngineSettings(backend="onnxruntime").for_scenario("Offline")
    assert ort.num_streams is None and ort_sut.num_workers == 1
    # Explicit settings win.
    explicit = EngineSettings(backend="deepsparse", num_streams=1, sut=SutOptions(num_workers=3),
                              engine_options={"deepsparse": DeepSparseOptions(scheduler="elastic")})
    options, sut = explicit.for_scenario("Offline")
    assert options.num_streams == 1 and sut.num_workers == 3
    assert options.engine.scheduler_for(options.num_streams) == "elastic"


# Keys LoadGen honours in user.conf, with a scenario where each one changes a TestSettings field. The
# rest of KNOWN_CONF_KEYS are either rules-only (ignored in user.conf) or apply only to LLM token latencies.
_USER_CONF_PROBES = {
    "mode": "Offline", "min_duration": "Offline", "max_duration": "Offline", "min_query_count": "Offline",
    "max_query_count": "Offline", "target_qps": "Server", "target_latency": "Server",
    "target_latency_percentile": "Server", "samples_per_query": "MultiStream", "max_async_queries": "Server",
    "coalesce_queries": "Server", "performance_sample_count_override": "Offline",
    "accuracy_sample_count_override": "Offline", "performance_issue_unique": "Offline",
    "performance_issue_same": "Offline", "performance_issue_same_index": "Offline", "print_timestamps": "Offline",
    "accuracy_log_rng_seed": "Offline", "accuracy_log_sampling_target": "Offline",
    "sample_concatenate_permutation": "Offline", "use_token_latencies": "Offline", "infer_token_latencies": "Offline",
}


def _fields(settings) -> dict:
    return {name: str(getattr(settings, name)) for name in dir(settings) if not name.startswith("_")
            and name != "FromConfig"}


@pytest.mark.parametrize("key", sorted(_USER_CONF_PROBES))
def test_known_user_conf_keys_are_honoured_by_loadgen(tmp_path, key):
    """The key list the validator accepts is LoadGen's: each key changes a setting when LoadGen reads it."""
    import mlperf_loadgen as lg

    from harness.loadgen_settings import KNOWN_CONF_KEYS, RULES_ONLY_KEYS

    assert key in KNOWN_CONF_KEYS and key not in RULES_ONLY_KEYS
    scenario = _USER_CONF_PROBES[key]
    base = lg.TestSettings()
    base.FromConfig(str(MLPERF_CONF), "bert", scenario, 0)
    conf = tmp_path / "user.conf"
    # 1: accuracy mode, or the one "on" value of these switches; 7 differs from every other default
    value = "1" if key in ("mode", "infer_token_latencies", "sample_concatenate_permutation", "use_token_latencies") else "7"
    conf.write_text(f"bert.{scenario}.{key} = {value}\n")
    validate_conf_file(conf, "--user-conf", user_conf=True)
    changed = lg.TestSettings()
    changed.FromConfig(str(MLPERF_CONF), "bert", scenario, 0)
    changed.FromConfig(str(conf), "bert", scenario, 1)
    assert _fields(changed) != _fields(base)


@pytest.mark.parametrize("key", ["target_qpz", "qsl_rng_seed"])
def test_keys_loadgen_would_ignore_in_user_conf_are_refused(tmp_path, key):
    import mlperf_loadgen as lg

    base = lg.TestSettings()
    base.FromConfig(str(MLPERF_CONF), "bert", "Offline", 0)
    conf = tmp_path / "user.conf"
    conf.write_text(f"bert.Offline.{key} = 3\n")
    ignored = lg.TestSettings()
    ignored.FromConfig(str(MLPERF_CONF), "bert", "Offline", 0)
    ignored.FromConfig(str(conf), "bert", "Offline", 1)
    assert _fields(ignored) == _fields(base)  # LoadGen drops the line without a word...
    with pytest.raises(ConfigError, match=rf"user.conf:1: bert.Offline.{key}"):  # ...we do not
        validate_conf_file(conf, "--user-conf", user_conf=True)


def test_official_mlperf_conf_passes_the_validator():
    from harness.loadgen_settings import read_conf_file

    entries = read_conf_file(MLPERF_CONF, "--mlperf-conf")
    assert len(entries) > 100 and {e.key for e in entries} >= {"target_latency", "performance_sample_count_override"}
