"""A Server run's latency bound, watched while LoadGen runs: when more samples are late than p99 allows over the
whole run, it can no longer be VALID (``--abort-when-invalid`` then stops it)."""

from __future__ import annotations


class LatencyWatch:
    """Server performance runs: counts samples over the latency bound as they complete, and knows when so
    many are late that p99 over the whole run can no longer meet the bound (the run will be INVALID).

    LoadGen issues queries until ``min_duration`` has passed at ``target_qps`` (and ``min_query_count`` are
    issued); the run's query count is taken generously (expected + 5 standard deviations of the Poisson
    count), so "lost" is only declared when more than 1% of even that many queries are already late."""

    def __init__(self, bound_s: float, expected_queries: float, percentile: float) -> None:
        self.bound_s = bound_s
        self.total_upper = int(expected_queries + 5 * expected_queries ** 0.5) + 1
        self.allowed_late = int((1.0 - percentile) * self.total_upper)
        self.late = 0
        self.lost_at: float | None = None  # seconds into the run when the bound was lost
        self._scanned = 0

    @classmethod
    def for_settings(cls, scenario: str, mode: str, settings) -> LatencyWatch | None:
        """The watch of a Server performance run with these LoadGen ``settings`` (None for any other run)."""
        if scenario != "Server" or mode != "performance":
            return None
        expected = max(float(settings.min_query_count),
                       float(settings.server_target_qps) * settings.min_duration_ms / 1000.0)
        return cls(settings.server_target_latency_ns / 1e9, expected, settings.server_target_latency_percentile)

    def update(self, latencies_s: list, elapsed_s: float) -> bool:
        """Count the newly completed samples; True exactly when the bound has just been lost."""
        end = len(latencies_s)
        self.late += sum(1 for latency in latencies_s[self._scanned:end] if latency > self.bound_s)
        self._scanned = end
        if self.lost_at is None and self.late > self.allowed_late:
            self.lost_at = elapsed_s
            return True
        return False

    @property
    def lost_note(self) -> str | None:
        if self.lost_at is None:
            return None
        return (f"the latency bound was lost {self.lost_at:.0f} s into the run: {self.late} samples over "
                f"{self.bound_s * 1000:.0f} ms, more than the {self.allowed_late} that p99 allows of the at most "
                f"{self.total_upper} queries the run issues; the run cannot be VALID")

    def as_dict(self) -> dict:
        return {"bound_ms": self.bound_s * 1000, "late_samples": self.late, "allowed_late": self.allowed_late,
                "queries_upper_bound": self.total_upper, "lost_after_s": self.lost_at}
