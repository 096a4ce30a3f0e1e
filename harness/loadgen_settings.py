"""LoadGen test settings: official rules from mlperf.conf, per-system targets from user.conf, then any
command-line overrides (which make a run non-compliant, and are recorded as such)."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.errors import ConfigError
from harness.options import flag

MLPERF_MODEL = "bert"  # the benchmark name mlperf.conf/user.conf use for bert-99 and bert-99.9
MODES = ("performance", "accuracy")

@dataclass(frozen=True)
class LoadGenOverrides:
    """Command-line changes to what the conf files say; every field left None keeps the conf value."""

    performance_count: int | None = flag("--performance-count", type=int,
                                         help="performance sample count (default: mlperf.conf)")
    min_duration_ms: int | None = flag("--min-duration-ms", type=int, help="minimum test duration")
    max_duration_ms: int | None = flag("--max-duration-ms", type=int, help="maximum test duration")
    min_query_count: int | None = flag("--min-query-count", type=int, help="minimum queries (Offline: samples)")
    max_query_count: int | None = flag("--max-query-count", type=int, help="maximum queries")
    target_qps: float | None = flag("--target-qps", "--target_qps", type=float,
                                    help="Offline expected QPS / Server target QPS")
    target_latency_ms: float | None = flag("--target-latency-ms", type=float,
                                           help="Server latency bound (mlperf.conf: 130; changing it breaks the rules)")
    expected_latency_ms: float | None = flag("--expected-latency-ms", type=float, help="SingleStream expected latency")

    def __post_init__(self) -> None:
        # float("inf") and float("nan") parse from the command line; LoadGen would run with them
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{item.name.replace('_', '-')} {value}: expected a finite number")

    def given(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


LOADGEN_SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
# The settings LoadGen 6.0.17's TestSettings::FromConfig looks up (tests/harness/test_settings.py checks this list
# against the library: each one it honours in user.conf changes a TestSettings field there).
KNOWN_CONF_KEYS = frozenset({
    "mode", "min_duration", "max_duration", "min_query_count", "max_query_count", "target_qps", "target_latency",
    "target_latency_percentile", "target_duration", "samples_per_query", "max_async_queries", "coalesce_queries",
    "performance_sample_count_override", "accuracy_sample_count_override", "performance_issue_unique",
    "performance_issue_same", "performance_issue_same_index", "print_timestamps", "accuracy_log_rng_seed",
    "accuracy_log_sampling_target", "accuracy_log_probability", "qsl_rng_seed", "sample_index_rng_seed",
    "schedule_rng_seed", "test05", "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
    "sample_concatenate_permutation", "use_token_latencies", "infer_token_latencies", "token_latency_scaling_factor",
    "ttft_latency", "tpot_latency",
})
# Taken only from the official rules LoadGen carries; in user.conf they are silently ignored.
RULES_ONLY_KEYS = frozenset({
    "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "test05", "test05_qsl_rng_seed",
    "test05_sample_index_rng_seed", "test05_schedule_rng_seed", "accuracy_log_probability",
})
# What LoadGen's parser accepts as a value: all of it must parse with strtoul(..., 0) or strtod.
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)", re.IGNORECASE)


@dataclass(frozen=True)
class ConfEntry:
    line: int
    model: str
    scenario: str
    key: str
    value: str


def read_conf_file(path: Path, setting: str, *, user_conf: bool = False) -> list[ConfEntry]:
    """Every setting of a LoadGen conf file, checked line by line the way LoadGen tokenizes it.

    LoadGen's parser splits on whitespace and silently skips much of what it cannot use: a misspelled
    key, ``key=value`` without spaces, a scenario it does not know, a seed in user.conf. So a typo would
    silently drop a target. Here each of those is one error naming the file, the line and the key."""
    if not path.is_file():
        raise ConfigError(f"{setting} {path}: file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting} {path}: cannot read it ({exc})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0] == "#" or tokens[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(tokens) < 3 or tokens[1] != "=":
            raise ConfigError(f"{where}: cannot parse {line.strip()!r}; expected 'model.scenario.key = value' "
                              "with spaces around '=' (LoadGen skips other lines without a word)")
        if len(tokens) > 3:
            raise ConfigError(f"{where}: {tokens[0]}: unexpected text after the value {tokens[2]!r} (LoadGen reads "
                              "every word after '=' as a value; put comments on their own line)")
        parts = tokens[0].rsplit(".", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"{where}: {tokens[0]!r} is not 'model.scenario.key' (e.g. bert.Offline.target_qps)")
        model, scenario, key = parts
        if scenario != "*" and scenario not in LOADGEN_SCENARIOS:
            raise ConfigError(f"{where}: {tokens[0]}: unknown scenario {scenario!r}; LoadGen knows "
                              f"{', '.join(LOADGEN_SCENARIOS)} and *")
        if key not in KNOWN_CONF_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_CONF_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: {tokens[0]}: unknown LoadGen setting {key!r} (LoadGen would ignore the line "
                              f"without a word){hint}")
        if user_conf and key in RULES_ONLY_KEYS:
            raise ConfigError(f"{where}: {tokens[0]}: {key} is taken only from the official mlperf.conf; LoadGen "
                              "ignores it in user.conf")
        if not _NUMBER.fullmatch(tokens[2]):
            raise ConfigError(f"{where}: {tokens[0]}: value {tokens[2]!r} is not a number (LoadGen takes integers "
                              "and decimals only)")
        if not math.isfinite(float.fromhex(tokens[2]) if "x" in tokens[2].lower() else float(tokens[2])):
            # strtod reads "inf", "nan" and overflows such as 1e400 without complaint; LoadGen would run with them
            raise ConfigError(f"{where}: {tokens[0]}: value {tokens[2]!r} is not a finite number")
        entries.append(ConfEntry(number, model, scenario, key, tokens[2]))
    return entries


def validate_conf_file(path: Path, setting: str, *, user_conf: bool = False) -> None:
    """Check a LoadGen conf file before LoadGen reads it (see :func:`read_conf_file`)."""
    read_conf_file(path, setting, user_conf=user_conf)


def build_test_settings(
    scenario: str,
    mode: str,
    *,
    mlperf_conf: Path,
    user_conf: Path,
    total_count: int,
    overrides: LoadGenOverrides,
):
    """Returns (lg.TestSettings, dict of adjustments the harness made on its own, with reasons)."""
    return conf_test_settings(scenario, mode, mlperf_conf=mlperf_conf, user_conf=user_conf).for_run(
        total_count, overrides)


# The TestSettings fields apply_overrides may change.
_OVERRIDDEN_FIELDS = ("performance_sample_count_override", "min_duration_ms", "max_duration_ms", "min_query_count",
                      "max_query_count", "offline_expected_qps", "server_target_qps", "server_target_latency_ns",
                      "single_stream_expected_latency_ns")


@dataclass
class ConfSettings:
    """lg.TestSettings read once from the conf files, and the conf files' values of every field an
    override may change. LoadGen's TestSettings cannot be copied, so runs that share one (several tests
    in a process) get those fields restored before their own overrides: one run's overrides (a clamped
    performance count, a duration) never leak into the next."""

    settings: object
    conf_values: dict

    def for_run(self, total_count: int, overrides: LoadGenOverrides,
                mode: str | None = None) -> tuple[object, dict[str, str]]:
        """The settings for one run: the conf values, then ``overrides``; and the harness's adjustments.
        ``mode`` switches the test mode, so that one reading of the conf files serves the performance and
        the accuracy test of a scenario in one process."""
        for name, value in self.conf_values.items():
            setattr(self.settings, name, value)
        if mode is not None:
            self.settings.mode = _test_mode(mode)
        return self.settings, apply_overrides(self.settings, total_count, overrides)


def conf_test_settings(scenario: str, mode: str, *, mlperf_conf: Path, user_conf: Path) -> ConfSettings:
    """TestSettings from mlperf.conf and user.conf (LoadGen's FromConfig), before any override.

    A benchmark that runs several tests of one scenario in a process reads the files once and takes each
    run's settings from :meth:`ConfSettings.for_run`."""
    import mlperf_loadgen as lg

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    validate_conf_file(mlperf_conf, "--mlperf-conf")
    validate_conf_file(user_conf, "--user-conf", user_conf=True)

    settings = lg.TestSettings()
    # LoadGen >= 5 carries the official mlperf.conf inside the library and loads it for conf_type=0
    # whatever the path; our mlperf.conf is a verbatim copy kept for the record and the submission tree
    # (tests/harness/test_settings.py checks the two agree).
    settings.FromConfig(str(mlperf_conf), MLPERF_MODEL, scenario, 0)
    if settings.FromConfig(str(user_conf), MLPERF_MODEL, scenario, 1) != 0:
        raise ConfigError(f"--user-conf {user_conf}: LoadGen rejected the file")
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = _test_mode(mode)
    return ConfSettings(settings, {name: getattr(settings, name) for name in _OVERRIDDEN_FIELDS})


@dataclass(frozen=True)
class IssuePlan:
    """What a performance test will issue, by LoadGen's own rules (its TestSettingsInternal)."""

    samples: int  # samples LoadGen issues (Server and SingleStream: queries of one sample)
    by_duration: int  # what min_duration at the target rate alone asks for
    expected_s: float  # at the rate the settings assume (a slower engine takes longer)
    rate: float  # samples per second the settings assume

    @property
    def set_by_min_query_count(self) -> bool:
        return self.samples > self.by_duration

    def as_dict(self) -> dict:
        return {**asdict(self), "expected_s": round(self.expected_s, 1)}


def issue_plan(scenario: str, settings) -> IssuePlan:
    """The samples a performance test issues: Offline one query of max(min_query_count, 1.1 x min_duration x
    expected QPS) samples (1.1: LoadGen's slack, truncated as its uint64 conversion does); Server queries at
    target_qps and SingleStream one after another until both min_duration and min_query_count are reached."""
    min_s = settings.min_duration_ms / 1000.0
    if scenario == "Offline":
        rate = settings.offline_expected_qps
        by_duration = int(1.1 * min_s * rate)
    elif scenario == "Server":
        rate = settings.server_target_qps
        by_duration = math.ceil(min_s * rate)
    else:
        rate = 1e9 / settings.single_stream_expected_latency_ns
        by_duration = math.ceil(min_s * rate)
    samples = max(int(settings.min_query_count), by_duration)
    if scenario != "Offline" and settings.max_query_count:
        samples = min(samples, int(settings.max_query_count))
    expected_s = samples / rate
    if scenario != "Offline" and settings.max_duration_ms:
        expected_s = min(expected_s, settings.max_duration_ms / 1000.0)
    return IssuePlan(samples=samples, by_duration=by_duration, expected_s=expected_s, rate=rate)


def plan_note(scenario: str, plan: IssuePlan, features: int, user_conf: Path) -> str | None:
    """A warning when ``min_query_count`` makes a shortened test issue far more than its duration asks for
    (``--count 64 --min-duration-ms 2000`` issued 10,833 samples, 20 minutes on ONNX Runtime, unannounced)."""
    if not plan.set_by_min_query_count or plan.samples < 2 * max(plan.by_duration, features, 1):
        return None
    origin = "mlperf.conf"
    try:
        for entry in read_conf_file(user_conf, "--user-conf", user_conf=True):
            if entry.key == "min_query_count" and entry.model in (MLPERF_MODEL, "*") and entry.scenario in (scenario, "*"):
                origin = str(user_conf)
    except ConfigError:
        pass
    minutes = plan.expected_s / 60
    return (f"LoadGen will issue {plan.samples:,} samples over the {features:,} features ({scenario} min_query_count "
            f"from {origin}; the minimum duration alone asks for {plan.by_duration:,}): about "
            f"{f'{minutes:.1f} min' if minutes >= 1 else f'{plan.expected_s:.0f} s'} at the {plan.rate:g} samples/s the "
            "settings assume, longer on a slower engine. --min-query-count N lowers it (--quick: the feature count)")


def _test_mode(mode: str):
    import mlperf_loadgen as lg

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    return lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly


def apply_overrides(settings, total_count: int, overrides: LoadGenOverrides) -> dict[str, str]:
    """Apply command-line overrides; returns the adjustments the harness made on its own, with reasons."""
    adjustments: dict[str, str] = {}
    o = overrides
    if o.performance_count is not None:
        settings.performance_sample_count_override = o.performance_count
    if settings.performance_sample_count_override > total_count:
        adjustments["performance_sample_count_override"] = (
            f"{settings.performance_sample_count_override} -> {total_count}: the QSL holds only "
            f"{total_count} samples"
        )
        settings.performance_sample_count_override = total_count
    if o.min_duration_ms is not None:
        settings.min_duration_ms = o.min_duration_ms
    if o.max_duration_ms is not None:
        settings.max_duration_ms = o.max_duration_ms
    if o.min_query_count is not None:
        settings.min_query_count = o.min_query_count
    if o.max_query_count is not None:
        settings.max_query_count = o.max_query_count
    if o.target_qps is not None:
        if o.target_qps <= 0:
            raise ConfigError(f"--target-qps must be > 0, got {o.target_qps}")
        settings.offline_expected_qps = o.target_qps
        settings.server_target_qps = o.target_qps
    if o.target_latency_ms is not None:
        settings.server_target_latency_ns = int(o.target_latency_ms * 1e6)
    if o.expected_latency_ms is not None:
        settings.single_stream_expected_latency_ns = int(o.expected_latency_ms * 1e6)
    return adjustments
