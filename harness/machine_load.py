"""Is anything else loading the machine while we measure? Another run beside ours halves both runs' speed
while each still reports VALID, so a run watches the CPU time the rest of the machine uses (at the start
and throughout) and records a warning in ``run.json`` and the summary when it was not alone.

Other load = (machine-wide busy CPU time - this process's CPU time) / wall time, in cores. Other harness
commands (runs, benchmarks, submissions, compression jobs, test suites) are named explicitly when they
compute during the run (a paused or waiting one is harmless), since their load is what most often spoils a
measurement.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

# More than this many cores used by other processes, on average over the run or over any sampling window,
# makes the run's speed figures suspect (this VM's own background work stays near 0.02 cores).
BUSY_CORES_THRESHOLD = 0.3
SAMPLE_INTERVAL_S = 5.0
START_PROBE_S = 0.5
# Command lines of work that competes with a measurement: ours (harness, benchmark suite, submission packaging,
# compression, experiments, their tests).
_OWN_COMMANDS = (("-m", "harness"), ("-m", "harness.isolated"), ("-m", "benchmarks"), ("-m", "submission"),
                 ("-m", "compression"), ("-m", "experiments"), ("-m", "pytest"))
_OWN_SCRIPTS = ("obert-harness", "obert-bench", "obert-submission", "obert-compress", "obert-experiment")


def is_competing_command(cmdline: list[str]) -> bool:
    """True for another harness/compression command or test run (by its command line)."""
    pairs = set(zip(cmdline, cmdline[1:]))
    if any(pair in pairs for pair in _OWN_COMMANDS):
        return True
    return any(os.path.basename(part) in _OWN_SCRIPTS for part in cmdline[:2])


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


ACTIVE_CORES = 0.1  # a competing command counts only while it computes (not paused, not waiting)


def command_cpu(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds so far) of every other harness/compression/test process."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        try:
            cmdline, times = proc.info["cmdline"] or [], proc.info["cpu_times"]
        except (psutil.Error, KeyError):
            continue
        if proc.info["pid"] not in exclude and times is not None and is_competing_command(cmdline):
            found[proc.info["pid"]] = (" ".join(cmdline)[:120], times.user + times.system)
    return found


def active_commands(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                    wall_s: float) -> list[str]:
    """'pid: command' of the competing processes that used more than ACTIVE_CORES between two snapshots."""
    return [f"{pid}: {command}" for pid, (command, seconds) in after.items()
            if pid in before and wall_s > 0 and (seconds - before[pid][1]) / wall_s > ACTIVE_CORES]


@dataclass
class LoadReport:
    """What the monitor saw; ``warning`` is set when the run was not alone on the machine."""

    cpu_count: int
    other_cores_at_start: float
    other_cores_mean: float = 0.0
    other_cores_max: float = 0.0  # busiest sampling window
    competing_commands: list[str] = field(default_factory=list)
    warning: str | None = None

    @property
    def busy_at_start(self) -> bool:
        return bool(self.competing_commands) or self.other_cores_at_start > BUSY_CORES_THRESHOLD

    def as_dict(self) -> dict:
        return {
            "cpu_count": self.cpu_count,
            "other_cores_at_start": round(self.other_cores_at_start, 2),
            "other_cores_mean": round(self.other_cores_mean, 2),
            "other_cores_max_window": round(self.other_cores_max, 2),
            "busy_threshold_cores": BUSY_CORES_THRESHOLD,
            "competing_commands": self.competing_commands,
            "warning": self.warning,
        }


class LoadMonitor:
    """Samples other processes' CPU use from :meth:`start` to :meth:`stop` in a daemon thread."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S, helper_pids: list[int] | tuple[int, ...] = ()) -> None:
        """``helper_pids``: other processes on this machine that work for this run (Ray actors of the
        run's pool); their CPU time counts as the run's own."""
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._helpers: dict[int, psutil.Process] = {}
        for pid in helper_pids:
            try:
                self._helpers[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
        self._helper_seconds: dict[int, float] = {}  # last seen, kept when a helper exits
        self._exclude = {self._process.pid, *(p.pid for p in self._process.parents()), *self._helpers}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._first: tuple[float, float, float] | None = None  # the sample the run's mean starts from
        self.report: LoadReport | None = None

    def _sample(self) -> tuple[float, float, float]:
        for pid, helper in self._helpers.items():
            try:
                times = helper.cpu_times()
                self._helper_seconds[pid] = times.user + times.system
            except psutil.Error:
                pass  # gone: its last figure stands
        return time.monotonic(), _busy_seconds(), _own_seconds(self._process) + sum(self._helper_seconds.values())

    def _commands(self) -> dict[int, tuple[str, float]]:
        return command_cpu(self._exclude)

    @staticmethod
    def _other_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
        wall = after[0] - before[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / wall)

    def start(self) -> LoadReport:
        """Probe the load now (a short wait) and start watching; returns the start-up report."""
        first, commands = self._sample(), self._commands()
        time.sleep(START_PROBE_S)
        second, commands_now = self._sample(), self._commands()
        self.report = LoadReport(cpu_count=psutil.cpu_count() or 1,
                                 other_cores_at_start=self._other_cores(first, second),
                                 competing_commands=active_commands(commands, commands_now, second[0] - first[0]))
        self._first = second
        self._thread = threading.Thread(target=self._watch, args=(second, commands_now), name="load-monitor",
                                        daemon=True)
        self._thread.start()
        return self.report

    def _watch(self, previous: tuple[float, float, float], previous_commands: dict) -> None:
        while not self._stop.wait(self.interval_s):
            now, commands_now = self._sample(), self._commands()
            cores = self._other_cores(previous, now)
            commands = active_commands(previous_commands, commands_now, now[0] - previous[0])
            previous, previous_commands = now, commands_now
            with self._lock:
                self.report.other_cores_max = max(self.report.other_cores_max, cores)
                for command in commands:
                    if command not in self.report.competing_commands:
                        self.report.competing_commands.append(command)

    def stop(self) -> LoadReport:
        """Stop watching; returns the report with its warning (None when the machine was quiet)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1)
        last = self._sample()
        with self._lock:
            report = self.report
            report.other_cores_mean = self._other_cores(self._first, last)
            report.other_cores_max = max(report.other_cores_max, report.other_cores_mean, report.other_cores_at_start)
            report.warning = load_warning(report)
        return report


def load_warning(report: LoadReport) -> str | None:
    """The note for a run that was not alone on the machine, or None."""
    reasons = []
    if report.competing_commands:
        reasons.append(f"other harness/compression/test commands were running ({'; '.join(report.competing_commands[:3])})")
    if max(report.other_cores_mean, report.other_cores_max) > BUSY_CORES_THRESHOLD:
        reasons.append(f"other processes used {report.other_cores_mean:.2f} of {report.cpu_count} cores on average "
                       f"({report.other_cores_max:.2f} at the busiest)")
    if not reasons:
        return None
    return ("the machine was not idle during this run: " + "; ".join(reasons)
            + ". Speed and latency figures are not representative; measure on an otherwise idle machine")
