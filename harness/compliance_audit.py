"""The bert TEST01 audit.config: what ``run --audit-conf TEST01`` and the submission flow's TEST01 runs hand LoadGen.

TEST01 checks accuracy in performance mode: LoadGen samples responses into the accuracy log of a performance run,
which the submission flow then compares with the accuracy run's (``submission.compliance``).
"""

from __future__ import annotations

from pathlib import Path

# the values of the audit.config MLCommons publishes for bert (compliance/TEST01): mode 2 = performance,
# accuracy-log sampling on
TEST01_AUDIT_CONFIG = (
    "# TEST01 - verify accuracy in performance mode (bert). Written by the harness; same values as the\n"
    "# audit.config MLCommons publishes for bert (mode 2 = performance, accuracy-log sampling on).\n"
    "*.*.mode = 2\n"
    "*.*.accuracy_log_rng_seed = 720381539243781796\n"
    "*.*.accuracy_log_sampling_target = 4096\n"
)


def write_audit_config(path: Path) -> Path:
    """Write the bert TEST01 audit.config to ``path`` (LoadGen reads it when the run starts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEST01_AUDIT_CONFIG)
    return path
