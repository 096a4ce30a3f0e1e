"""The MLPerf Inference submission rules that apply to ``bert-99``, as the submission checker encodes them.

Mirrored (not copied) from mlcommons/inference ``tools/submission/submission_checker`` (``constants.py``,
``checks/*.py``) and ``compliance/TEST01`` for the current round; every value names its source so it
can be re-checked when a new round changes it.
"""

from __future__ import annotations

import re

BENCHMARK = "bert-99"  # constants.MODEL_CONFIG[...]["models"]; our compressed variant goes in the notes
CHECKER_VERSION = "v6.1"  # the round whose RNG seeds LoadGen 6.0.17 carries (docs/submission.md)

DIVISIONS = ("open", "closed")
ALL_SCENARIOS = ("Offline", "SingleStream", "Server")  # what this harness runs; open accepts any non-empty subset
EDGE_SUITE = ("Offline", "SingleStream")  # required-scenarios-edge["bert-99"]; also the default set to run
# The scenario suites the checker enforces, in the closed division only (loader.check_scenarios is called for
# closed/network; open gets no scenario check at all). Keyed by system_type; bert-99 has no optional
# scenarios in any of them (optional-scenarios-*), and no datacenter-only suite since v5.0.
CLOSED_SUITES = {
    "edge": EDGE_SUITE,  # required-scenarios-edge
    "datacenter,edge": EDGE_SUITE,  # required-scenarios-datacenter-edge
    "edge,datacenter": EDGE_SUITE,
}
TEST01_REQUIRED_DIVISIONS = ("closed",)  # compliance_check skips every compliance test in the open division
SYSTEM_TYPES = ("edge", "datacenter", "datacenter,edge", "edge,datacenter")  # system_check.system_type_check
AVAILABILITIES = ("available", "preview", "rdi")  # constants.VALID_AVAILABILITIES

# accuracy-target["bert-99"] = ("F1", 90.874 * 0.99)
REFERENCE_F1 = 90.874
ACCURACY_TARGET_F1 = REFERENCE_F1 * 0.99
# constants.ACC_PATTERN["F1"]: the line the checker parses in accuracy.txt (re.match, line by line)
F1_PATTERN = re.compile(r"^{[\"\']exact_match[\"\']\:\s*[\d\.]+,\s*[\"\']f1[\"\']\:\s*([\d\.]+)}")
HASH_PATTERN = re.compile(r"^hash=([\w\d]+)$")  # written by truncate_accuracy_log.py

DATASET_SIZE = 10833  # dataset-size["bert-99"]: the accuracy run must cover all of it
PERFORMANCE_SAMPLE_COUNT = 10833  # performance-sample-count["bert-99"]
OFFLINE_MIN_SAMPLES_PER_QUERY = 10833  # OFFLINE_MIN_SPQ_SINCE_V4["bert-99"] (closed only)
MIN_QUERIES = {"SingleStream": 1024, "Offline": 1}  # min-queries["bert-99"] (not checked with early stopping)
EARLY_STOPPING_SCENARIOS = ("Server", "SingleStream", "MultiStream")  # Config.uses_early_stopping
MIN_DURATION_MS = 600_000  # TEST_DURATION_MS

# RESULT_FIELD_NEW: the detail-log key that is the headline result of each scenario
RESULT_FIELD = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "Server": "result_completed_samples_per_sec",
}
UNITS = {"Offline": "Samples/s", "SingleStream": "Latency (ms)", "Server": "Queries/s"}  # UNIT_DICT

# Files (constants.REQUIRED_* and checks that diff directory listings)
REQUIRED_PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
OPTIONAL_PERF_FILES = ("mlperf_log_accuracy.json",)
REQUIRED_ACC_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt", "mlperf_log_accuracy.json")
ALWAYS_OPTIONAL_FILES = ("mlperf_log_trace.json", "results.json", ".gitkeep")  # utils.files_diff
REQUIRED_MEASURE_FILES = ("user.conf", "README.md")
MEASUREMENTS_FIELDS = (  # SYSTEM_IMP_REQUIRED_FILES: keys of measurements.json, all non-empty
    "input_data_types", "retraining", "starting_weights_filename", "weight_data_types", "weight_transformations",
)
REQUIRED_TEST01_ACC_FILES_PASS = ("mlperf_log_accuracy.json", "accuracy.txt")
REQUIRED_TEST01_ACC_FILES_FAIL = REQUIRED_TEST01_ACC_FILES_PASS + ("baseline_accuracy.txt", "compliance_accuracy.txt")
REQUIRED_COMPLIANCE_PERF_FILES = REQUIRED_PERF_FILES
MAX_ACCURACY_LOG_SIZE = 10 * 1024  # a results/.../accuracy/mlperf_log_accuracy.json must be truncated below this
TRUNCATE_VIEWABLE_SIZE = 4096  # truncate_accuracy_log.py keeps this much of the start and of the end
FILE_SIZE_LIMIT = 50 * 1024 * 1024  # no file in a submission may be larger

# System description (constants.SYSTEM_DESC_REQUIRED_FIELDS / ..._MEANINGFUL_RESPONSE_REQUIRED_FIELDS)
SYSTEM_REQUIRED_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
    "system_type_detail",
)
SYSTEM_MEANINGFUL_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count", "host_memory_capacity",
    "host_memory_configuration", "host_storage_capacity", "host_storage_type", "host_networking",
    "host_network_card_count", "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect", "accelerator_memory_configuration",
    "accelerator_interconnect", "cooling", "framework", "operating_system", "other_software_stack",
)

# TEST01 (compliance/TEST01) verification; its audit.config is harness/compliance_audit.py's
# verify_performance.py: the TEST01 score must be within 10% of the submission's (20% for latencies of
# at most 0.2 ms SingleStream / 1.6 ms MultiStream, where timer noise dominates)
TEST01_PERF_TOLERANCE = 0.10
TEST01_PERF_TOLERANCE_FAST = 0.20
TEST01_FAST_SINGLESTREAM_NS = 200_000
# Config.get_delta_perc: when responses are not bit-identical, the sampled subset's accuracy from the
# TEST01 log and from the accuracy run must agree within (1 - 0.99) = 1% for bert-99
TEST01_ACCURACY_DELTA_PERCENT = 1.0
PASS_LINE = "TEST PASS"  # the checker looks for this line in verify_*.txt


def accuracy_target_met(f1: float) -> bool:
    return f1 >= ACCURACY_TARGET_F1


def scenario_set_problems(division: str, system_type: str, scenarios: list[str]) -> list[tuple[str | None, str]]:
    """Why a bert-99 result with these scenarios cannot be submitted in ``division``, as (scenario or None,
    message) pairs; empty when it can. Closed: exactly the suite of the system type. Open: any non-empty
    set of bert-99 scenarios."""
    problems: list[tuple[str | None, str]] = []
    if not scenarios:
        problems.append((None, f"no scenario: a bert-99 result needs at least one of {', '.join(ALL_SCENARIOS)}"))
    for scenario in scenarios:
        if scenario not in ALL_SCENARIOS:
            problems.append((scenario, f"{scenario!r} is not a bert-99 scenario ({', '.join(ALL_SCENARIOS)})"))
    if division != "closed":
        return problems
    suite = CLOSED_SUITES.get(str(system_type).replace(" ", "").lower())
    if suite is None:
        problems.append((None, f"system_type {system_type!r} has no bert-99 suite in the closed division (bert-99 is "
                               "an edge benchmark since v5.0): set system_type to edge in the system template"))
        return problems
    for scenario in suite:
        if scenario not in scenarios:
            problems.append((scenario, f"required scenario {scenario} missing: the closed division needs the full "
                                       f"bert-99 {system_type} suite ({' + '.join(suite)}); the open division "
                                       "accepts any non-empty set of scenarios"))
    for scenario in scenarios:
        if scenario in ALL_SCENARIOS and scenario not in suite:
            problems.append((scenario, f"{scenario} is not part of the bert-99 {system_type} suite "
                                       f"({' + '.join(suite)}), the only scenarios the closed division accepts"))
    return problems
