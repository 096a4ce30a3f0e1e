"""find-target: the Server bisection with a fake machine, and the user.conf it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.targets import (CONFIRM_ATTEMPTS, Probe, bisect_server_load, confirm_server_load, server_probe,
                             user_conf_text, within_tolerance, write_user_conf)


def machine(capacity: float, full_capacity: float | None = None):
    """A fake Server: VALID up to ``capacity`` QPS (a full-length run: up to ``full_capacity``)."""
    def short(qps: float) -> Probe:
        return Probe(qps, qps <= capacity, p99_ms=60 + 80 * qps / capacity, completed_qps=qps)

    def full(qps: float) -> Probe:
        return Probe(qps, qps <= (full_capacity or capacity), p99_ms=100.0, completed_qps=qps)

    return short, full


def test_the_bisection_ends_within_one_step_of_the_highest_valid_load():
    short, _ = machine(capacity=137.0)
    search = bisect_server_load(short, upper_qps=228.0, tolerance=0.05)
    valid = [p.target_qps for p in search.probes if p.valid]
    invalid = [p.target_qps for p in search.probes if not p.valid]
    assert search.target_qps == max(valid) <= 137.0 < min(invalid)
    assert within_tolerance(search.target_qps, min(invalid), 0.05)
    assert len(search.probes) <= 8


def test_a_confirmation_that_does_not_hold_steps_down_then_bisects_full_length_runs():
    short, full = machine(capacity=137.0, full_capacity=131.0)
    search = bisect_server_load(short, upper_qps=228.0, tolerance=0.05)
    found = search.target_qps
    confirmed = confirm_server_load(search, full, tolerance=0.05)
    fulls = [p for p in confirmed.probes if p.full_length]
    assert confirmed.confirmed and not fulls[0].valid and fulls[1].valid and len(fulls) <= CONFIRM_ATTEMPTS
    assert fulls[1].target_qps == pytest.approx(round(found * 0.9, 3))  # two tolerances lower first
    # then halfway up while the held and the refused full-length loads are more than a tolerance apart
    held = max(p.target_qps for p in fulls if p.valid)
    lowest_refused = min(p.target_qps for p in fulls if not p.valid)
    assert confirmed.target_qps == held <= 131.0 < lowest_refused
    assert within_tolerance(held, lowest_refused, 0.05) and held > round(found * 0.9, 3)


def test_a_sustained_load_far_below_the_short_runs_is_found_by_steps_that_grow():
    """Short runs VALID at 0.75 of Offline, full-length ones only at 0.55 (a queue growing over minutes, measured on
    2 Zen 5 cores): the steps down grow, so a full-length run holds within the attempts."""
    short, full = machine(capacity=184.0, full_capacity=135.0)
    search = confirm_server_load(bisect_server_load(short, upper_qps=246.0), full, tolerance=0.05)
    fulls = [p for p in search.probes if p.full_length]
    assert search.confirmed and search.target_qps <= 135.0 and len(fulls) <= CONFIRM_ATTEMPTS
    assert [p.valid for p in fulls][:3] == [False, False, True]


def test_a_full_length_run_stops_once_it_cannot_be_valid_and_counts_as_refused():
    """Full-length confirmations are asked to stop when the bound is provably lost (a refused load then costs minutes,
    not LoadGen's ten); the stopped run is an INVALID probe with its reason and run directory. Short probes run out
    their duration (their p99 goes into the plot)."""
    from harness.errors import RunStopped

    asked = []

    def run_server(overrides, abort_when_invalid):
        asked.append((overrides.min_duration_ms, abort_when_invalid))
        if abort_when_invalid:
            raise RunStopped("summary", run_dir="/runs/x", reason="the latency bound was lost 120 s into the run")
        return {"results": {"validity": "VALID", "latency_ms": {"p99": 101.0}, "samples_per_second": 150.0},
                "run_dir": "/runs/short"}

    short = server_probe(run_server, 150.0, full=False, probe_duration_ms=30000)
    assert short == Probe(150.0, True, 101.0, 150.0, None, "/runs/short")
    full = server_probe(run_server, 150.0, full=True, probe_duration_ms=30000)
    assert not full.valid and full.full_length and full.run_dir == "/runs/x" and full.p99_ms is None
    assert full.reason == "stopped early: the latency bound was lost 120 s into the run"
    assert asked == [(30000, False), (None, True)]  # the full-length run: the conf's duration, stopped when lost


def test_no_valid_load_is_said_and_not_invented():
    short, full = machine(capacity=0.01)
    search = bisect_server_load(short, upper_qps=10.0)
    assert search.target_qps is None and not any(p.valid for p in search.probes)
    assert confirm_server_load(search, full, 0.05).confirmed is False


def test_the_user_conf_names_only_what_was_found_and_never_replaces_a_file_unasked(tmp_path):
    text = user_conf_text({"Offline": 228.44, "Server": 171.25, "SingleStream": None}, "Produced by ...")
    assert "bert.Offline.target_qps = 228.44" in text and "bert.Server.target_qps = 171.25" in text
    assert "SingleStream" not in text
    existing = tmp_path / "user.conf"
    existing.write_text("bert.Offline.target_qps = 42\n")
    with pytest.raises(ConfigError, match="the file exists; it is kept"):
        write_user_conf(existing, text, overwrite=False)
    assert existing.read_text() == "bert.Offline.target_qps = 42\n"
    assert write_user_conf(existing, text, overwrite=True).read_text() == text


def test_find_target_on_the_toy_model_writes_a_user_conf_that_a_following_run_reads(sample_dataset, tmp_path):
    import json

    from harness.cli import main
    from tests.onnx_fixtures import write_toy_qa_model

    model = write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    common = ["--model", str(model.parent), "--data-dir", str(sample_dataset.dev_json.parent), "--cache-dir",
              str(tmp_path / "cache"), "--backend", "onnxruntime", "--no-progress", "--runs-dir", str(tmp_path / "runs")]
    output = tmp_path / "found" / "user.conf"
    status = main(["find-target", *common, "--probe-duration-ms", "1200", "--no-confirm", "--tolerance", "0.25",
                   "--output", str(output)])
    assert status == 0
    text = output.read_text()
    targets = {line.split(" = ")[0]: float(line.split(" = ")[1]) for line in text.splitlines() if " = " in line}
    assert set(targets) == {"bert.Offline.target_qps", "bert.Server.target_qps", "bert.SingleStream.target_latency"}
    assert 0 < targets["bert.Server.target_qps"] <= targets["bert.Offline.target_qps"]
    [report] = (tmp_path / "runs").glob("find-target-*/find_target.json")
    server = json.loads(report.read_text())["details"]["Server"]
    probes = server["probes"]
    assert any(p["valid"] for p in probes) and (report.parent / "server_p99_vs_load.png").is_file()
    # the token budget measured once, and every run of the search given it
    budget = server["token_budget"]["budget"]
    for probe in probes:
        record = json.loads((Path(probe["run_dir"]) / "run.json").read_text())
        assert record["sut"]["token_budget"] == {"budget": budget, "given": True}
    # each scenario's runs read the conf files once (in their own process): no run is marked for reading them twice
    details = list(report.parent.glob("*/*/mlperf_log_detail.txt"))
    assert {p.parent.parent.name for p in details} == {"offline", "singlestream", "server"}
    for detail in details:
        assert "Multiple conf files" not in detail.read_text(), detail
    # a following run takes its Server target from that file
    assert main(["run", *common, "--scenario", "Server", "--user-conf", str(output), "--min-duration-ms", "500",
                 "--min-query-count", "20"]) == 0
    [run_json] = [p for p in (tmp_path / "runs").glob("*/run.json") if "find-target" not in str(p)]
    assert json.loads(run_json.read_text())["results"]["target_qps"] == pytest.approx(targets["bert.Server.target_qps"])
    # the existing file is kept unless --overwrite
    assert main(["find-target", *common, "--scenario", "Offline", "--output", str(output)]) == 1


def test_a_target_no_full_length_run_confirmed_is_not_reported_as_found():
    short, full = machine(capacity=137.0, full_capacity=50.0)
    search = confirm_server_load(bisect_server_load(short, upper_qps=228.0), full, tolerance=0.05)
    refused = [p.target_qps for p in search.probes if p.full_length]
    assert search.confirmed is False and len(refused) == CONFIRM_ATTEMPTS and search.target_qps < min(refused)
    text = user_conf_text({"Server": search.target_qps}, "Produced by ...", server_confirmed=False)
    assert "# Server: NOT confirmed" in text and f"bert.Server.target_qps = {search.target_qps:g}" in text


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream"])
def test_a_quick_run_is_valid_whatever_the_user_conf_expects_of_this_machine(sample_dataset, tmp_path, scenario):
    """user.conf holds one machine's targets (Offline 42 samples/s, SingleStream 30 ms); a quick run on a much faster
    engine (the toy model: microseconds) must still be VALID, not 'Increase expected QPS' or 'Ran out of generated
    queries'."""
    import json

    from harness.cli import main
    from harness.sysinfo import REPO_ROOT
    from tests.onnx_fixtures import write_toy_qa_model

    conf = (REPO_ROOT / "user.conf").read_text()
    assert "bert.Offline.target_qps = 42" in conf and "bert.SingleStream.target_latency = 30" in conf
    model = write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    assert main(["run", "--quick", "--scenario", scenario, "--model", str(model.parent), "--backend", "onnxruntime",
                 "--data-dir", str(sample_dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    assert record["results"]["validity"] == "VALID", record["results"].get("invalid_reason")


def test_a_server_run_whose_target_is_not_this_machines_says_so_and_names_find_target():
    from harness.run_record import offered_load_note

    base = {"target_qps": 3.0, "target_latency_ms": 130.0, "perf_constraints_met": True, "validity": "VALID"}
    lost = offered_load_note("Server", {**base, "target_qps": 200.0, "perf_constraints_met": False, "validity": "INVALID",
                                        "latency_ms": {"p99": 400.0}})
    assert "did not hold the 130.0 ms bound at 200.0 QPS" in lost and "python -m harness find-target" in lost
    low = offered_load_note("Server", {**base, "latency_ms": {"p99": 20.0}})
    assert "far inside the 130.0 ms bound" in low and "python -m harness find-target" in low
    assert offered_load_note("Server", {**base, "latency_ms": {"p99": 110.0}}) is None


def test_a_server_search_without_an_upper_bound_is_refused_before_any_run(tmp_path, capsys):
    from harness.cli import main

    status = main(["find-target", "--scenario", "Server", "--backend", "onnxruntime", "--no-progress",
                   "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    assert status != 0 and "--upper-qps" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("find-target-*"))


class _ProcessEnded(Exception):
    """A child ended inside a full-length run that was stopped (LoadGen has no abort call)."""

    def __init__(self, probe: Probe):
        self.probe = probe


def test_a_search_whose_stopped_runs_end_its_process_goes_on_in_new_ones_to_the_same_result(tmp_path):
    """Each stopped full-length run ends the child; the next child replays the recorded runs and goes on: the search
    ends where an uninterrupted one does, having run every load once."""
    from dataclasses import asdict

    from harness.targets import append_progress, read_progress, replaying

    short, full = machine(capacity=184.0, full_capacity=135.0)
    whole = confirm_server_load(bisect_server_load(short, upper_qps=246.0), full, tolerance=0.05)
    progress, runs, children = tmp_path / "server_probes.jsonl", [], 0

    def run_probe(qps: float, is_full: bool) -> Probe:
        runs.append((qps, is_full))
        probe = full(qps) if is_full else short(qps)
        if is_full and not probe.valid:
            raise _ProcessEnded(Probe(qps, False, reason="stopped early", full_length=True))
        return probe

    while True:
        children += 1
        probe = replaying(run_probe, progress)
        try:
            found = confirm_server_load(bisect_server_load(probe, upper_qps=246.0),
                                        lambda qps: probe(qps, True), tolerance=0.05)
            break
        except _ProcessEnded as ended:  # the parent records the stopped run
            append_progress(progress, {"probe": asdict(ended.probe)})
    refused = [p for p in whole.probes if p.full_length and not p.valid]
    assert refused and children == len(refused) + 1
    assert found.target_qps == whole.target_qps and found.confirmed
    assert [(p.target_qps, p.full_length, p.valid) for p in found.probes] == \
        [(p.target_qps, p.full_length, p.valid) for p in whole.probes]
    assert len(runs) == len(set(runs)) == len(whole.probes), str(runs)  # no load run twice
    assert len(read_progress(progress)[0]) == len(whole.probes)


def test_the_parent_records_the_stopped_run_and_starts_the_search_again(tmp_path, monkeypatch):
    """``search_in_child``: a child that ended with a stopped run's exit status is followed by another, which finds that
    run in the progress file; a child that ended otherwise without a result is an error."""
    import json
    import subprocess
    from types import SimpleNamespace

    import harness.isolated
    from harness.errors import BackendFault, RunStopped
    from harness.targets import read_progress, search_in_child

    runs_root, progress = tmp_path / "server", tmp_path / "server_probes.jsonl"
    calls = []

    def fake_run_module(module, args, *, result_path):
        calls.append(read_progress(progress)[0])
        if len(calls) == 1:  # the first child ends in a stopped full-length run at 150 QPS
            run_dir = runs_root / "20261207-211946_openvino_Server_performance"
            run_dir.mkdir(parents=True)
            (run_dir / "run.json").write_text(json.dumps({
                "status": "stopped", "settings": {"overrides": {"target_qps": 150.0}},
                "results": {"validity": "INVALID", "invalid_reason": "the latency bound was lost 84 s into the run"}}))
            return subprocess.CompletedProcess([], RunStopped.exit_status), None
        Path(result_path).write_text(json.dumps({"ok": True, "found": {"target": 120.0, "detail": {}}}))
        return subprocess.CompletedProcess([], 0), json.loads(Path(result_path).read_text())

    monkeypatch.setattr(harness.isolated, "run_module", fake_run_module)
    monkeypatch.setattr(harness.isolated, "request_to_spec", lambda request, cache: {})
    request = SimpleNamespace(scenario="Server", runs_root=runs_root)
    assert search_in_child(request, {"progress": str(progress)}, tmp_path) == {"target": 120.0, "detail": {}}
    assert len(calls) == 2 and calls[0] == {}
    [stopped] = calls[1].values()
    assert (stopped.target_qps, stopped.valid, stopped.full_length) == (150.0, False, True)
    assert "84 s into the run" in stopped.reason

    def dead_child(module, args, *, result_path):
        return subprocess.CompletedProcess([], 1), None

    monkeypatch.setattr(harness.isolated, "run_module", dead_child)
    with pytest.raises(BackendFault, match="ended without a result"):
        search_in_child(request, {"progress": str(tmp_path / "other.jsonl")}, tmp_path)


def test_a_gap_of_exactly_one_tolerance_ends_the_confirmation():
    """The 2026-12-07 21:34 search: 163.12 refused, 146.808 (two tolerances down) and 154.964 (halfway up) held; the
    gap 163.12 - 154.964 is one tolerance in decimals but not in binary floats, and cost a fourth 10-minute run."""
    from harness.targets import ServerSearch

    _, full = machine(capacity=170.0, full_capacity=158.0)
    search = confirm_server_load(ServerSearch(target_qps=163.12), full, tolerance=0.05)
    assert [p.target_qps for p in search.probes] == [163.12, 146.808, 154.964]
    assert search.confirmed and search.target_qps == 154.964
