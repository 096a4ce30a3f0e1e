"""LoadGen test settings: official rules from mlperf.conf, per-system targets from user.conf, then any
command-line overrides (which make a run non-compliant, and are recorded as such)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import ConfigError

MLPERF_MODEL = "bert"  # the benchmark name mlperf.conf/user.conf use for bert-99 and bert-99.9
MODES = ("performance", "accuracy")

_CONF_LINE = re.compile(r"^\s*([\w.-]+|\*)\.(\w+|\*)\.(\w+)\s*=\s*(\S+)\s*$")


@dataclass(frozen=True)
class LoadGenOverrides:
    """Command-line changes to what the conf files say; every field left None keeps the conf value."""

    performance_count: int | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    min_query_count: int | None = None
    max_query_count: int | None = None
    target_qps: float | None = None  # Offline: expected QPS; Server: target QPS
    target_latency_ms: float | None = None  # Server latency bound (changing it breaks the rules)
    expected_latency_ms: float | None = None  # SingleStream: expected latency

    def given(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def validate_conf_file(path: Path, setting: str) -> None:
    """Check a LoadGen conf file exists and every line is ``model.scenario.key = value`` or a comment.

    LoadGen skips lines it cannot parse without saying so; a typo would silently drop a target."""
    if not path.is_file():
        raise ConfigError(f"{setting} {path}: file not found")
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip()
        if stripped and not _CONF_LINE.match(stripped):
            raise ConfigError(
                f"{path}:{number}: cannot parse {line.strip()!r}; expected 'model.scenario.key = value'"
            )


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
    settings = conf_test_settings(scenario, mode, mlperf_conf=mlperf_conf, user_conf=user_conf)
    return settings, apply_overrides(settings, total_count, overrides)


def conf_test_settings(scenario: str, mode: str, *, mlperf_conf: Path, user_conf: Path):
    """lg.TestSettings from mlperf.conf and user.conf (LoadGen's FromConfig), before any override.

    LoadGen allows one FromConfig pair per process; a benchmark that runs several tests of one scenario
    in a process builds this once and applies each test's overrides to it (:func:`apply_overrides`)."""
    import mlperf_loadgen as lg

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    validate_conf_file(mlperf_conf, "--mlperf-conf")
    validate_conf_file(user_conf, "--user-conf")

    settings = lg.TestSettings()
    # LoadGen >= 5 carries the official mlperf.conf inside the library and loads it for conf_type=0
    # whatever the path; our mlperf.conf is a verbatim copy kept for the record and the submission tree
    # (tests/test_settings.py checks the two agree).
    settings.FromConfig(str(mlperf_conf), MLPERF_MODEL, scenario, 0)
    if settings.FromConfig(str(user_conf), MLPERF_MODEL, scenario, 1) != 0:
        raise ConfigError(f"--user-conf {user_conf}: LoadGen rejected the file")
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
    return settings


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
