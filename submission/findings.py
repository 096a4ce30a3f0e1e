"""What the local validator reports: findings (level, category, path, message), the collector the checks report to,
the directory-listing check they share, and the summary and validation.md section made from the findings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from submission import rules

STRICTER_MARK = "stricter than the official checker"

# What the official checker does instead, for each rule where this validator is deliberately stricter
OPEN_ACCURACY_NOTE = ("in the open division the official checker only logs a warning for accuracy below the "
                      "target and accepts the result; package it with --allow-below-target")
OPEN_TEST01_NOTE = ("the official checker skips compliance tests in the open division; skip TEST01 there with "
                    "--no-compliance")
INVALID_RESULT_NOTE = ("the official checker does not look at LoadGen's result validity; package it with "
                       "--allow-invalid")
AUDIT_CONFIG_NOTE = "the official checker does not check which settings the TEST01 run used"

# (where, rule, what the official checker does): the table documentation/validation.md shows
STRICTER_RULES = (
    ("open", "accuracy below the bert-99 target is an error", OPEN_ACCURACY_NOTE),
    ("open", "TEST01 is run, required and verified", OPEN_TEST01_NOTE),
    ("open, closed", "a performance or TEST01 run that LoadGen marked INVALID is an error", INVALID_RESULT_NOTE),
    ("open, closed", "the TEST01 run must show the audit.config's accuracy-log sampling", AUDIT_CONFIG_NOTE),
)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    category: str  # missing | invalid | noncompliant | accuracy (docs/submission.md)
    path: str  # relative to the tree root
    message: str
    stricter: bool = False  # the official checker would not report this (the message says why)

    def __str__(self) -> str:
        return f"{self.level.upper():7} [{self.category}] {self.path}: {self.message}"


class Collector:
    """The findings of one tree, as the checks report them (``--quick`` turns non-compliance into warnings)."""

    def __init__(self, root: Path, quick: bool, test01_in_open: bool = True):
        self.root = root
        self.quick = quick
        self.test01_in_open = test01_in_open
        self.findings: list[Finding] = []
        self._stricter_note: str | None = None  # applies to every error while set (see stricter())

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root)) or "."
        except ValueError:
            return str(path)

    def error(self, category: str, path: Path, message: str, stricter: str | None = None) -> None:
        """An error; ``stricter`` says what the official checker does instead when it would not report it."""
        # --quick runs are non-compliant by design: reported, but not errors
        level = "warning" if (category == "noncompliant" and self.quick) else "error"
        note = stricter or self._stricter_note
        if note:
            message = f"{message} [{STRICTER_MARK}: {note}]"
        self.findings.append(Finding(level, category, self.rel(path), message, stricter=bool(note)))

    @contextmanager
    def stricter(self, note: str | None) -> Iterator[None]:
        """Every error reported inside is one the official checker would not report (``note`` says why)."""
        previous, self._stricter_note = self._stricter_note, note or self._stricter_note
        try:
            yield
        finally:
            self._stricter_note = previous

    def warn(self, category: str, path: Path, message: str) -> None:
        self.findings.append(Finding("warning", category, self.rel(path), message))


def files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_file()} if path.is_dir() else set()


def dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def file_list_check(c: Collector, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """utils.files_diff: the directory must hold exactly the required files (plus allowed extras)."""
    if not path.is_dir():
        c.error("missing", path, f"directory missing (needs {', '.join(required)})")
        return
    present = files(path)
    allowed = set(required) | set(optional) | set(rules.ALWAYS_OPTIONAL_FILES)
    for name in sorted(set(required) - present):
        c.error("missing", path / name, "required file missing")
    for name in sorted(present - allowed):
        c.error("missing", path / name, f"unexpected file (the checker wants exactly {', '.join(required)})")
    for name in sorted(set(required) & present):
        if (path / name).stat().st_size == 0:
            c.error("missing", path / name, "file is empty")


def summarize(findings: list[Finding]) -> str:
    errors = [f for f in findings if f.level == "error"]
    warnings = [f for f in findings if f.level == "warning"]
    lines = [str(f) for f in errors + warnings]
    stricter = sum(f.stricter for f in errors)
    lines.append(f"{len(errors)} error(s), {len(warnings)} warning(s)"
                 + (f"; {stricter} error(s) {STRICTER_MARK}" if stricter else ""))
    return "\n".join(lines)


def stricter_section(findings: list[Finding]) -> str:
    """The part of validation.md that lists where this validator is stricter than the official checker."""
    lines = [f"## Where this validator is {STRICTER_MARK}", "",
             "Deliberately stricter rules (the official checker's behaviour in the last column):", "",
             "| division | rule here | official checker |", "|---|---|---|"]
    lines += [f"| {where} | {rule} | {note} |" for where, rule, note in STRICTER_RULES]
    flagged = [f for f in findings if f.stricter and f.level == "error"]
    lines += ["", "Findings in this tree that the official checker would not report:", ""]
    lines += [f"- `{f.path}`: {f.message}" for f in flagged] or ["- none"]
    return "\n".join(lines) + "\n"
