"""Where each file of a submission tree goes, in the current checker's layout (``v6``: measurements and TEST01
inside ``results/<system>/<benchmark>/<scenario>/``, code pointer in ``src/``) or the older one (``v5``, rounds up to
v5.1: separate ``measurements/``, ``compliance/`` and ``code/`` folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from submission.rules import BENCHMARK

LAYOUTS = ("v6", "v5")


@dataclass(frozen=True)
class Layout:
    """Paths inside ``<root>/<division>/<submitter>/`` for one system and implementation."""

    name: str
    root: Path
    division: str
    submitter: str
    system: str
    implementation: str
    benchmark: str = BENCHMARK

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise ConfigError(f"--layout {self.name!r}: expected one of {', '.join(LAYOUTS)}")
        for what, value in (("submitter", self.submitter), ("system name", self.system),
                            ("implementation", self.implementation)):
            if not value or value.startswith(".") or any(c in value for c in " /\\"):
                raise ConfigError(f"{what} {value!r}: must be non-empty, without spaces or slashes, "
                                  "and not start with '.' (the checker rejects such names)")

    @property
    def org_dir(self) -> Path:
        return self.root / self.division / self.submitter

    @property
    def system_json(self) -> Path:
        return self.org_dir / "systems" / f"{self.system}.json"

    @property
    def code_dir(self) -> Path:
        if self.name == "v6":
            return self.org_dir / "src" / self.benchmark
        return self.org_dir / "code" / self.benchmark / self.implementation

    @property
    def documentation_dir(self) -> Path:
        return self.org_dir / "documentation"

    def results_dir(self, scenario: str) -> Path:
        return self.org_dir / "results" / self.system / self.benchmark / scenario

    def performance_dir(self, scenario: str) -> Path:
        return self.results_dir(scenario) / "performance" / "run_1"

    def accuracy_dir(self, scenario: str) -> Path:
        return self.results_dir(scenario) / "accuracy"

    def measurement_dir(self, scenario: str) -> Path:
        if self.name == "v6":
            return self.results_dir(scenario)
        return self.org_dir / "measurements" / self.system / self.benchmark / scenario

    def measurements_json(self, scenario: str) -> Path:
        if self.name == "v6":
            return self.measurement_dir(scenario) / "measurements.json"
        return self.measurement_dir(scenario) / f"{self.system}_{self.implementation}_{scenario}.json"

    def test01_dir(self, scenario: str) -> Path:
        if self.name == "v6":
            return self.results_dir(scenario) / "TEST01"
        return self.org_dir / "compliance" / self.system / self.benchmark / scenario / "TEST01"

    def relative(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)
