"""The official MLPerf submission checker, run on a packaged tree (``--official-checker DIR``).

``DIR`` is the submitter's own clone of mlcommons/inference (never downloaded); its checker runs from
``tools/submission`` as the clone's own tests run it, with no ``--skip-*`` flag (:func:`checker_command`). Its log is
kept in the tree's ``documentation/``; its verdict is recorded, never acted upon.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from submission import rules

CHECKER_TOOLS = Path("tools") / "submission"  # the working directory the checker package is imported from
CHECKER_PACKAGE = CHECKER_TOOLS / "submission_checker"
OLD_SINGLE_FILE_CHECKER = CHECKER_TOOLS / "submission_checker.py"  # rounds up to v5.x
LOG_NAME = "official_checker.log"
CSV_NAME = "official_checker_summary.csv"
TIMEOUT_S = 1800
FIRST_ERRORS = 5
OK_LINE = "SUMMARY: submission looks OK"  # its last line, exit status 0
ERRORS_LINE = "SUMMARY: submission has errors"  # exit status 1
# "[2026-01-01 10:00:00,000 main.py:120 ERROR] message" (the checker's format) or "ERROR:main:message"
_LEVEL = re.compile(r"^\[[^\]]*\b(?P<bracket>DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\s?|^(?P<plain>DEBUG|INFO|WARNING|ERROR|CRITICAL):[^:]*:")


@dataclass
class CheckerVerdict:
    """What the official checker said about a tree."""

    status: str  # "looks OK" | "errors" | "did not complete"
    exit_status: int | None
    first_errors: list[str] = field(default_factory=list)
    warnings: int = 0
    log_path: Path | None = None
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "looks OK"

    def summary(self) -> str:
        head = (f"official checker {rules.CHECKER_VERSION}: {self.status}"
                f" (exit status {self.exit_status}" + (f", {self.warnings} warning(s)" if self.warnings else "") + ")")
        if self.log_path:
            head += f"; log: {self.log_path}"
        return "\n".join([head, *(f"    {line}" for line in self.first_errors)])


def locate_checker(clone: Path, version: str = rules.CHECKER_VERSION) -> Path:
    """``tools/submission`` of a clone of mlcommons/inference whose checker knows round ``version``; one
    ConfigError naming ``--official-checker`` otherwise (checked before any run starts)."""
    clone = Path(clone).expanduser()
    if not clone.is_dir():
        raise ConfigError(f"--official-checker {clone}: not a directory (expected a local clone of mlcommons/inference)")
    if not (clone / CHECKER_PACKAGE / "main.py").is_file():
        if (clone / OLD_SINGLE_FILE_CHECKER).is_file():
            raise ConfigError(f"--official-checker {clone}: holds the old single-file checker {OLD_SINGLE_FILE_CHECKER} "
                              f"(rounds up to v5.x); update the clone (git -C {clone} pull) for {CHECKER_PACKAGE}/")
        raise ConfigError(f"--official-checker {clone}: not a clone of mlcommons/inference holding the submission "
                          f"checker (no {CHECKER_PACKAGE / 'main.py'})")
    # the round names are keys of MODEL_CONFIG (constants.py); look in every module in case they move
    quoted = (f'"{version}"', f"'{version}'")
    sources = (path.read_text(errors="replace") for path in (clone / CHECKER_PACKAGE).rglob("*.py"))
    if not any(q in source for source in sources for q in quoted):
        raise ConfigError(f"--official-checker {clone}: its submission checker does not know round {version} (the round "
                          f"whose seeds LoadGen 6.0.17 uses); update the clone (git -C {clone} pull)")
    return clone / CHECKER_TOOLS


def checker_command(tree: Path, submitter: str, csv_path: Path, version: str = rules.CHECKER_VERSION) -> list[str]:
    """The command line, to run from ``tools/submission`` of the clone."""
    return [sys.executable, "-m", "submission_checker.main", "--input", str(Path(tree).resolve()),
            "--version", version, "--submitter", submitter, "--csv", str(csv_path)]


def _message(line: str) -> tuple[str | None, str]:
    """(level, message) of one checker log line; level None for lines that are not log records."""
    m = _LEVEL.match(line)
    if not m:
        return None, line
    return m.group("bracket") or m.group("plain"), line[m.end():].strip()


def parse_verdict(output: str, exit_status: int | None) -> CheckerVerdict:
    """The verdict from the checker's combined output and exit status."""
    records = [_message(line) for line in output.splitlines() if line.strip()]
    errors = [msg for level, msg in records if level in ("ERROR", "CRITICAL") and not msg.startswith("SUMMARY:")]
    warnings = sum(level == "WARNING" for level, _ in records)
    if exit_status == 0 and OK_LINE in output:
        return CheckerVerdict("looks OK", exit_status, [], warnings)
    if ERRORS_LINE in output or (exit_status and errors):
        return CheckerVerdict("errors", exit_status, errors[:FIRST_ERRORS], warnings)
    # no summary line: it stopped early (unknown argument, import error, traceback...); show how it ended
    tail = [msg for _, msg in records][-FIRST_ERRORS:]
    return CheckerVerdict("did not complete", exit_status, tail, warnings)


def run_official_checker(tools_dir: Path, tree: Path, submitter: str, log_path: Path, csv_copy: Path | None = None,
                         version: str = rules.CHECKER_VERSION, timeout_s: int = TIMEOUT_S) -> CheckerVerdict:
    """Run the checker on ``tree``; write its log to ``log_path`` (and its CSV to ``csv_copy``). Both are written
    after the checker has finished, so that it never sees a half-written file of ours in the tree it checks."""
    with tempfile.TemporaryDirectory(prefix="obert-checker-") as tmp:
        csv_path = Path(tmp) / "summary.csv"
        command = checker_command(tree, submitter, csv_path, version)
        try:
            done = subprocess.run(command, cwd=tools_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=timeout_s, check=False)
            output, exit_status = done.stdout, done.returncode
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            output, exit_status = partial + f"\n(stopped by the harness after {timeout_s} s)\n", None
        except OSError as exc:
            output, exit_status = f"could not start the checker: {exc}\n", None
        verdict = parse_verdict(output, exit_status)
        verdict.command = command
        verdict.log_path = Path(log_path)
        verdict.log_path.parent.mkdir(parents=True, exist_ok=True)
        verdict.log_path.write_text(
            f"# {' '.join(command)}\n# (run in {tools_dir}; exit status {exit_status}; verdict: {verdict.status})\n\n"
            + output)
        if csv_copy is not None and csv_path.is_file():
            shutil.copyfile(csv_path, csv_copy)
    return verdict


def verdict_section(verdict: CheckerVerdict) -> str:
    """The part of validation.md that records the official checker's verdict."""
    # as a submitter would type it: the interpreter is ours, the CSV went through a temporary file
    shown = ["python", *verdict.command[1:]]
    if "--csv" in shown:
        shown[shown.index("--csv") + 1] = CSV_NAME
    lines = ["## Official submission checker", "",
             f"`{' '.join(shown)}` (from `tools/submission` of the mlcommons/inference clone): "
             f"**{verdict.status}** (exit status {verdict.exit_status}, {verdict.warnings} warning(s)). "
             f"Full log: `{verdict.log_path.name if verdict.log_path else LOG_NAME}`"
             f"{f'; its results table: `{CSV_NAME}`' if verdict.log_path and (verdict.log_path.parent / CSV_NAME).is_file() else ''}.",
             ""]
    if verdict.first_errors:
        lines += ["First errors:" if verdict.status == "errors" else "Last lines:", "", "```",
                  *verdict.first_errors, "```", ""]
    return "\n".join(lines)
