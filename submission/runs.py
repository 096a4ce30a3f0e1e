"""The runs a package needs, per scenario: performance, accuracy and TEST01 (performance mode with the
audit.config). Complete runs the user points at (``--from-runs``) are reused when they match what this
command would run (model, dataset features, backend and engine settings, LoadGen overrides, conf
files); whatever is missing runs in one child process per scenario (:mod:`harness.isolated`)."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from squad.data import DatasetFiles
from harness.backends import BackendOptions
from harness.compliance_audit import write_audit_config
from harness.errors import ConfigError, HarnessError
from harness.loadgen_logs import DETAIL_LOG, read_detail_log
from harness.models import ModelInfo
from harness.options import to_dict
from harness.rundir import RUN_JSON, is_complete
from harness.isolated import execute_runs_isolated
from harness.engine_settings import EngineSettings, quick_overrides
from harness.runner import RunRequest
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from squad.features import FeatureSet

log = logging.getLogger(__name__)

ROLES = ("performance", "accuracy", "TEST01")
ROLES_WITHOUT_COMPLIANCE = ("performance", "accuracy")  # --no-compliance (open division only)


@dataclass
class RunContext:
    """Everything a run of this package depends on."""

    model: ModelInfo
    features: FeatureSet
    dataset: DatasetFiles
    engine: EngineSettings
    mlperf_conf: Path
    user_conf: Path
    runs_root: Path
    quick: bool = False
    overrides: dict[str, LoadGenOverrides] = field(default_factory=dict)  # per scenario; wins over --quick
    progress: bool = True
    backend_wrapper: object | None = None  # picklable callable(backend) -> backend (tests)
    feature_cache_dir: Path | None = None  # where `features` are cached (runs rebuild them from there)
    backend_choice: dict | None = None  # how engine.backend was chosen (harness.engine_choice), for run.json

    def overrides_for(self, scenario: str) -> LoadGenOverrides:
        if scenario in self.overrides:
            return self.overrides[scenario]
        if self.quick:
            return LoadGenOverrides(**quick_overrides(scenario, len(self.features)))
        return LoadGenOverrides()

    def options(self, scenario: str) -> tuple[BackendOptions, SutOptions]:
        return self.engine.for_scenario(scenario, self.features.params.max_seq_length, self.model)

    def request(self, scenario: str, mode: str, audit_config: Path | None = None) -> RunRequest:
        backend_options, sut_options = self.options(scenario)
        return RunRequest(
            scenario=scenario, mode=mode, backend=self.engine.backend, model=self.model, features=self.features,
            dataset=self.dataset, backend_options=backend_options, sut_options=sut_options,
            mlperf_conf=self.mlperf_conf, user_conf=self.user_conf,
            runs_root=self.runs_root, overrides=self.overrides_for(scenario), audit_config=audit_config,
            progress=self.progress, backend_wrapper=self.backend_wrapper, backend_choice=self.backend_choice,
        )

    def mismatch(self, run_dir: Path, record: dict, scenario: str, role: str) -> str | None:
        """Why a run directory cannot serve as this package's ``role`` run of ``scenario`` (None: it can)."""
        mode = "accuracy" if role == "accuracy" else "performance"
        settings = record.get("settings") or {}
        backend_options, sut_options = self.options(scenario)
        checks = [
            (is_complete(run_dir) and record.get("status") == "complete", "not complete"),
            (record.get("scenario") == scenario, f"scenario {record.get('scenario')}"),
            (record.get("mode") == mode, f"mode {record.get('mode')}"),
            (bool(settings.get("audit_config")) == (role == "TEST01"),
             "a compliance (audit.config) run" if settings.get("audit_config") else "not a TEST01 run"),
            ((record.get("backend") or {}).get("backend") == self.engine.backend, "another backend"),
            (_same_path((record.get("model") or {}).get("path"), self.model.onnx_path), "another model"),
            ((record.get("qsl") or {}).get("fingerprint") == self.features.fingerprint,
             "other dataset features (data dir, --count or --quick differ)"),
            (settings.get("backend_options") == _as_json(to_dict(backend_options)), "other engine settings"),
            (settings.get("sut_options") == _as_json(to_dict(sut_options)), "other SUT settings"),
            (settings.get("overrides", {}) == self.overrides_for(scenario).given(),
             "other LoadGen overrides (--quick differs?)"),
            (_same_text(run_dir / "user.conf", self.user_conf), "another user.conf"),
            (_same_text(run_dir / "mlperf.conf", self.mlperf_conf), "another mlperf.conf"),
        ]
        for ok, reason in checks:
            if not ok:
                return reason
        try:
            errors = read_detail_log(run_dir / DETAIL_LOG).get("errors", [])
        except HarnessError:
            return "no LoadGen detail log"
        if errors:  # e.g. the second test of a `run --mode both` process: "Multiple conf files are used"
            return f"LoadGen logged errors ({errors[0]})"
        return None


def _as_json(value):
    """``value`` as run.json holds it (tuples become lists), so recorded and current settings compare equal."""
    return json.loads(json.dumps(value))


def _same_path(recorded: str | None, actual: Path) -> bool:
    return recorded is not None and Path(recorded).resolve() == Path(actual).resolve()


def _same_text(a: Path, b: Path) -> bool:
    try:
        return Path(a).read_bytes() == Path(b).read_bytes()
    except OSError:
        return False


@dataclass
class ScenarioRuns:
    scenario: str
    runs: dict[str, Path] = field(default_factory=dict)  # role -> run directory
    reused: dict[str, bool] = field(default_factory=dict)
    roles: tuple[str, ...] = ROLES  # the runs this package needs for the scenario

    def missing(self) -> list[str]:
        return [role for role in self.roles if role not in self.runs]


def candidate_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories named by ``--from-runs``: each path is a run directory or a parent of some."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"--from-runs {path}: not a directory")
        if (path / RUN_JSON).is_file():
            found.append(path)
        else:
            found += sorted(p for p in path.iterdir() if (p / RUN_JSON).is_file())
    return found


def select_runs(ctx: RunContext, scenarios: list[str], candidates: list[Path],
                roles: tuple[str, ...] = ROLES) -> tuple[dict[str, ScenarioRuns], list[str]]:
    """The newest matching run per scenario and role; also a line per candidate that was passed over."""
    selected = {s: ScenarioRuns(s, roles=roles) for s in scenarios}
    skipped: list[str] = []
    records = []
    for run_dir in candidates:
        try:
            records.append((run_dir, json.loads((run_dir / RUN_JSON).read_text())))
        except (OSError, json.JSONDecodeError) as exc:
            skipped.append(f"{run_dir}: unreadable {RUN_JSON} ({exc})")
    records.sort(key=lambda item: str(item[1].get("started", "")), reverse=True)  # newest first
    for run_dir, record in records:
        scenario = record.get("scenario")
        if scenario not in selected:
            continue
        reasons = []
        for role in roles:
            if role in selected[scenario].runs:
                continue
            reason = ctx.mismatch(run_dir, record, scenario, role)
            if reason is None:
                selected[scenario].runs[role] = run_dir
                selected[scenario].reused[role] = True
                break
            reasons.append(f"{role}: {reason}")
        else:
            if reasons:
                skipped.append(f"{run_dir.name}: not reused ({'; '.join(reasons)})")
    return selected, skipped


def execute_isolated(ctx: RunContext, scenario: str, roles: list[str], audit_config: Path | None = None) -> list[dict]:
    """A scenario's runs (``roles`` of :data:`ROLES`, in order) in one child process on one engine (see
    :mod:`harness.isolated` for why one process per scenario); returns their run records."""
    if ctx.feature_cache_dir is None:
        raise ConfigError("RunContext.feature_cache_dir is needed to run in a child process")
    requests = [ctx.request(scenario, "accuracy" if role == "accuracy" else "performance",
                            audit_config if role == "TEST01" else None) for role in roles]
    return execute_runs_isolated(requests, ctx.feature_cache_dir)


def complete_runs(ctx: RunContext, selected: dict[str, ScenarioRuns]) -> dict[str, ScenarioRuns]:
    """Run every missing role of every scenario (performance, then accuracy, then TEST01), each scenario's on
    one engine in one process."""
    with tempfile.TemporaryDirectory(prefix="obert-test01-") as tmp:
        audit = write_audit_config(Path(tmp) / "audit.config")
        for scenario, runs in selected.items():
            missing = runs.missing()
            if not missing:
                continue
            log.info("running %s %s (not found among reusable runs)", scenario, ", ".join(missing))
            for role, record in zip(missing, execute_isolated(ctx, scenario, missing, audit)):
                runs.runs[role] = Path(record["run_dir"])
                runs.reused[role] = False
                print(record["summary"])
    return selected
