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

    def for_run(self, total_count: int, overrides: LoadGenOverrides) -> tuple[object, dict[str, str]]:
        """The settings for one run: the conf values, then ``overrides``; and the harness's adjustments."""
        for name, value in self.conf_values.items():
            setattr(self.settings, name, value)
        return self.settings, apply_overrides(self.settings, total_count, overrides)


def conf_test_settings(scenario: str, mode: str, *, mlperf_conf: Path, user_conf: Path) -> ConfSettings:
    """TestSettings from mlperf.conf and user.conf (LoadGen's FromConfig), before any override.

    A benchmark that runs several tests of one scenario in a process reads the files once and takes each
    run's settings from :meth:`ConfSettings.for_run`."""
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
    return ConfSettings(settings, {name: getattr(settings, name) for name in _OVERRIDDEN_FIELDS})


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
