"""Server batching to a token budget (harness.server_batching, the ``tokens`` policy of the Server SUT): the
queue's choices with a fake cost, the SUT's workers with a fake engine, and a Server run through LoadGen."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from harness.backends import BackendOptions
from harness.backends.base import Backend
from harness.models import inspect_onnx_model
from harness.scenarios import SutOptions
from harness.server_batching import TokenBudgetQueue, Waiting, budget_candidates, choose_token_budget
from harness.loadgen_settings import LoadGenOverrides
from tests.onnx_fixtures import write_toy_qa_model

BUCKETS = (128, 192, 256, 384)
SIZES = (1, 2, 4, 8)


def bucketed_cost(lengths) -> int:
    """Rows padded to a power of two, each at the bucket of the longest window (a bucketed engine's account)."""
    rows = next(size for size in SIZES if size >= len(lengths))
    return rows * next(b for b in BUCKETS if b >= max(lengths))


def queue_of(lengths, budget=1024, arrivals=None) -> TokenBudgetQueue:
    queue = TokenBudgetQueue(budget, max_batch=8, cost=bucketed_cost)
    for i, length in enumerate(lengths):
        queue.put(Waiting(arrivals[i] if arrivals else float(i), f"s{i}", length))
    return queue


def test_a_batch_stays_within_the_budget_and_a_window_that_does_not_fit_waits_for_the_next():
    queue = queue_of([100, 120, 300, 110, 90])
    first = [entry.sample for entry in queue.take()]
    # 4 windows of <=128 tokens cost 4 x 128 = 512; the 300-token one would make it 8 x 384 > 1024
    assert first == ["s0", "s1", "s3", "s4"] and bucketed_cost([100, 120, 110, 90]) <= 1024
    assert [entry.sample for entry in queue.take()] == ["s2"] and not queue.take()


def test_the_oldest_always_goes_first_so_a_long_window_is_never_starved():
    # one 384-token window among a stream of short ones that would always fill the budget without it
    queue = queue_of([120] * 3 + [380] + [120] * 40, budget=512)
    taken = []
    while len(queue):
        batch = queue.take()
        assert bucketed_cost([entry.length for entry in batch]) <= 512 or len(batch) == 1
        taken.append([entry.sample for entry in batch])
    position = next(i for i, batch in enumerate(taken) if "s3" in batch)
    assert position == 1 and taken[1][0] == "s3"  # the long one went as soon as it was the oldest


def test_after_the_oldest_the_least_slack_goes_first():
    # s1 (a long window) arrived after s2 but its bucket's expected call is 50 ms longer: less slack
    queue = TokenBudgetQueue(768, max_batch=8, cost=bucketed_cost,
                             expected_s=lambda bucket: {0: 0.010, 3: 0.060}[bucket])
    queue.put(Waiting(0.000, "s0", 380, 3))
    queue.put(Waiting(0.020, "s2", 100, 0))
    queue.put(Waiting(0.030, "s1", 370, 3))
    assert [entry.sample for entry in queue.take()] == ["s0", "s1"]  # 2 x 384 fills the budget
    assert [entry.sample for entry in queue.take()] == ["s2"]


def test_taking_until_empty_drains_everything_in_batches():
    queue = queue_of([380, 370, 100, 90, 300, 200] * 5, budget=768)
    batches = []
    while len(queue):  # as the SUT's workers drain it when the run stops
        batches.append(queue.take())
    assert sum(len(batch) for batch in batches) == 30 and not len(queue)
    assert all(bucketed_cost([e.length for e in batch]) <= 768 for batch in batches)


def test_the_budget_is_the_largest_whose_median_call_with_every_worker_busy_stays_within_its_share_of_the_bound():
    lengths = np.random.default_rng(1).integers(60, 384, size=500)
    calls = []

    def run_call(indices):  # a fake engine: 60 us per token computed, slower with two workers at once
        calls.append(len(indices))
        return 60e-6 * bucketed_cost([int(lengths[i]) for i in indices]) * 1.5

    choice = choose_token_budget(run_call, lengths, max_length=384, max_rows=8, max_batch=8, cost=bucketed_cost, workers=2,
                                 bound_s=0.130)
    # 52 ms per call at most: 52 / (1.5 x 60 us) = 577 tokens computed
    assert choice["limit_ms"] == pytest.approx(52.0, abs=0.1)
    *held, past = choice["measured"]  # stopped at the first budget whose median call went past the limit
    assert past["call_ms_median"] > 52.0 and past["tokens_computed_max"] > 577
    assert held and all(m["call_ms_median"] <= 52.0 for m in held) and choice["budget"] == held[-1]["budget"]
    assert [m["budget"] for m in choice["measured"]] == budget_candidates(384, 8)[:len(choice["measured"])]
    # a batch stays within its budget, or is one window alone (the oldest always goes)
    assert all(m["tokens_computed_max"] <= max(m["budget"], 384) for m in choice["measured"])
    assert budget_candidates(384, 8)[-1] == 16 * 192


class CountingEngine(Backend):
    """A fake engine with compiled batch sizes: records each call's rows, takes ``seconds`` per call."""

    name = "fake"

    def __init__(self, seconds: float = 0.002, sizes=SIZES) -> None:
        super().__init__(_fake_model(),
                         BackendOptions(batch_size=sizes[-1], batch_sizes=sizes))
        self.seconds, self.rows, self.windows = seconds, [], []
        self.lock = threading.Lock()

    def _run(self, feeds):
        rows = next(iter(feeds.values())).shape[0]
        with self.lock:
            self.rows.append(rows)
        time.sleep(self.seconds)
        width = next(iter(feeds.values())).shape[1]
        return np.zeros((rows, width), np.float32), np.zeros((rows, width), np.float32)

    def predict(self, input_ids, attention_mask, token_type_ids):
        with self.lock:
            self.windows.append(len(input_ids))
        return super().predict(input_ids, attention_mask, token_type_ids)

    def describe(self):
        return {"backend": self.name}


def _fake_model():
    from harness.models import ModelInfo

    return ModelInfo(onnx_path=None, input_names={"input_ids": "input_ids", "attention_mask": "attention_mask",
                                                  "token_type_ids": "token_type_ids"},
                     start_output="start", end_output="end", sequence_length=None, batch_size=None, manifest={},
                     embedding_rows=None)


def test_engine_calls_are_padded_to_a_compiled_batch_size():
    engine = CountingEngine(seconds=0.0)
    ids = np.ones((5, 16), np.int64)
    start, end = engine.predict(ids, ids, ids)
    assert start.shape == (5, 16) and engine.rows == [8]
    assert engine.padded_rows(3) == 4 and engine.batch_cost([100, 50, 20], 384) == 4 * 384


class FakeSample:
    def __init__(self, sample_id: int, index: int) -> None:
        self.id, self.index = sample_id, index


def server_sut(sample_features, engine, **options):
    from harness.qsl import SquadQSL
    from harness.scenarios import ServerSut

    _, features, _ = sample_features
    qsl = SquadQSL(features)
    return ServerSut(engine, qsl, SutOptions(server_policy="tokens", **options)), qsl


def test_a_lone_sample_runs_at_once_and_everything_drains_on_stop(sample_features, monkeypatch):
    import mlperf_loadgen as lg

    completed = []
    monkeypatch.setattr(lg, "QuerySamplesComplete", lambda responses: completed.extend(r.id for r in responses))
    engine = CountingEngine(seconds=0.02)
    # a batch timeout of 10 s: the tokens policy must not wait for company
    sut, qsl = server_sut(sample_features, engine, num_workers=1, batch_timeout_ms=10_000, token_budget=4 * 384)
    try:
        started = time.monotonic()
        sut._issue_queries([FakeSample(1, 0)])
        while not completed and time.monotonic() - started < 5:
            time.sleep(0.001)
        assert completed == [1] and time.monotonic() - started < 1.0
        # a burst while the worker is busy: batches of several, every engine call at a compiled size
        sut._issue_queries([FakeSample(100 + i, i % len(qsl.features)) for i in range(40)])
        sut.stop()  # drains what waits
        assert sorted(completed) == [1] + list(range(100, 140))
        assert set(engine.rows) <= set(SIZES) and max(engine.windows) > 1
        described = sut.describe()
        assert described["policy"] == "tokens" and described["token_budget"] == {"budget": 4 * 384, "given": True}
        assert sum(n * c for n, c in described["batch_sizes_run"].items()) == 41
    finally:
        sut.destroy()
        qsl.destroy()


def test_the_budget_is_measured_on_the_engine_when_not_given(sample_features):
    engine = CountingEngine(seconds=0.001)
    sut, qsl = server_sut(sample_features, engine, num_workers=2)
    try:
        choice = sut.describe()["token_budget"]
        assert choice["workers"] == 2 and choice["measured"] and choice["budget"] in budget_candidates(384, 8)
    finally:
        sut.destroy()
        qsl.destroy()


def test_a_server_run_on_the_toy_model_with_the_tokens_policy_is_valid(sample_features, tmp_path):
    from harness.runner import RunRequest, execute_run
    from harness.sysinfo import REPO_ROOT

    dataset, features, _ = sample_features
    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "toy" / "model.onnx"))
    request = RunRequest(
        scenario="Server", mode="performance", backend="onnxruntime", model=model, features=features,
        dataset=dataset, backend_options=BackendOptions(batch_size=8, sequence_buckets=(96, 160, 384)),
        # 500 queries: LoadGen's early stopping needs ~460 under the bound to call a p99 run VALID
        sut_options=SutOptions(num_workers=1, server_policy="tokens"), mlperf_conf=REPO_ROOT / "mlperf.conf",
        user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / "runs",
        overrides=LoadGenOverrides(min_duration_ms=1000, min_query_count=500, target_qps=400), progress=False)
    record = execute_run(request)
    assert record["status"] == "complete" and record["results"]["validity"] == "VALID"
    assert record["sut"]["policy"] == "tokens" and record["sut"]["token_budget"]["budget"] >= 192


@pytest.mark.parametrize("engine", ["deepsparse", "onnxruntime", "openvino"])
def test_an_engine_built_for_several_batch_sizes_answers_each_window_as_alone(tmp_path, sample_features, engine):
    from harness.backends import create_backend

    _, features, _ = sample_features
    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "toy" / "model.onnx"))
    backend = create_backend(engine, model, BackendOptions(batch_size=4, batch_sizes=(1, 2, 4)))
    alone = create_backend(engine, model, BackendOptions(batch_size=1))
    try:
        ids, mask, types = (np.asarray(a[:3]) for a in (features.input_ids, features.input_mask, features.segment_ids))
        start, end = backend.predict(ids, mask, types)
        assert start.shape == (3, ids.shape[1])
        for i in range(3):
            one_start, one_end = alone.predict(ids[i:i + 1], mask[i:i + 1], types[i:i + 1])
            np.testing.assert_allclose(start[i], one_start[0], atol=1e-5)
            np.testing.assert_allclose(end[i], one_end[0], atol=1e-5)
        if engine == "deepsparse":  # one compiled engine per size; a call of 3 ran on the one of 4
            assert sorted(backend.engines) == [1, 2, 4] and backend.describe()["batch_sizes"] == [1, 2, 4]
            assert backend.padded_rows(3) == 4
        else:  # a symbolic batch axis (ONNX Runtime), a bounded dynamic one (OpenVINO): any batch as it is
            assert backend.batch_sizes == (1, 2, 3, 4) and backend.padded_rows(3) == 3
    finally:
        backend.close()
        alone.close()


def test_an_invalid_run_names_the_constraint_loadgen_flagged():
    from harness.loadgen_logs import invalid_reason

    # early stopping is the one LoadGen leaves its own reason empty for
    detail = {"result_validity": "INVALID", "result_invalid_reason": "", "result_perf_constraints_met": True,
              "result_min_duration_met": True, "result_min_queries_met": True, "early_stopping_met": False}
    assert invalid_reason(detail) == "early stopping not satisfied"
    both = {**detail, "result_invalid_reason": "Reduce target QPS to improve latency.",
            "result_perf_constraints_met": False}
    assert invalid_reason(both) == ("Reduce target QPS to improve latency.; latency constraint not met; early stopping "
                                    "not satisfied")
    assert invalid_reason({**detail, "result_validity": "VALID"}) is None
