"""Tests of the training half of the compression pipeline.

* Fast unit tests: training labels on crafted contexts, the LR/pruning schedules computed from the
  recipes (checked against sparseml's own LR modifiers), recipe derivation, bit-exact resume.
* One session fixture runs ``obert-compress smoke`` end to end (about 2 minutes on 2 cores; the test
  fails above 5) and the tests check what its reports claim, recomputing each claim from the artifacts
  (models, train logs, ONNX graph) rather than trusting the reports.

The real SQuAD dev file and vocab are needed (``$OBERT_DATA_DIR`` or ``../shared/data``); without them
the data-dependent tests skip.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from compression.dev_split import split_dev_by_article
from compression.errors import CompressionError, RecipeError
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    canonical_param_name,
    derive_recipe,
    find_modifiers,
    load_recipe,
    pruned_param_patterns,
)
from compression.schedule import expected_lr, lr_schedule, lr_segments, pruning_schedule, recipe_epochs
from compression.squad_records import QARecord, read_squad_records
from compression.train_features import WindowParams, build_train_features, label_window

SMOKE_TIME_LIMIT_S = 300.0


@pytest.fixture(scope="session")
def tokenizer(data_dir: Path):
    from compression.export import load_vocab_tokenizer

    return load_vocab_tokenizer(data_dir / "bert-uncased-vocab.txt")


# ----------------------------------------------------------------------------------------------
# Training labels


def test_label_window_inside_and_outside() -> None:
    # tokens: [CLS] q [SEP] c0 c1 c2 c3 [SEP] pad ; context characters: "ab cd ef gh"
    offsets = [(0, 0), (0, 1), (0, 0), (0, 2), (3, 5), (6, 8), (9, 11), (0, 0), (0, 0)]
    sequence_ids = [None, 0, None, 1, 1, 1, 1, None, None]
    assert label_window(offsets, sequence_ids, 3, 8) == (4, 5)  # "cd ef"
    assert label_window(offsets, sequence_ids, 9, 11) == (6, 6)  # last context token (HF's loop overruns here)
    assert label_window(offsets, sequence_ids, 4, 5) == (4, 4)  # inside one token
    # the window holds only "cd ef": an answer starting before or ending after it is not in this window
    cut = [None, 0, None, None, 1, 1, None, None, None]
    assert label_window(offsets, cut, 0, 5) == (0, 0)
    assert label_window(offsets, cut, 6, 11) == (0, 0)
    assert label_window(offsets, [None, 0, None], 0, 1) == (0, 0)  # no context at all


def test_train_features_label_answers_per_window(tokenizer) -> None:
    words = [f"word{i}" for i in range(80)]
    context = " ".join(words[:50] + ["the", "golden", "answer", "is", "here"] + words[50:])
    answer = "golden answer"
    start = context.index(answer)
    record = QARecord("q1", "t", context, "  where is it?", ({"text": answer, "answer_start": start},))
    features = build_train_features([record], tokenizer, WindowParams(max_seq_length=48, doc_stride=16), progress=False)
    assert len(features) > 3
    inside = [i for i in range(len(features)) if features.start_positions[i] > 0]
    outside = [i for i in range(len(features)) if features.start_positions[i] == 0]
    assert inside and outside
    for i in inside:
        s, e = int(features.start_positions[i]), int(features.end_positions[i])
        assert tokenizer.decode(features.input_ids[i][s:e + 1]) == answer
        assert features.token_type_ids[i][s] == 1  # a context token
    for i in outside:  # every window labelled [CLS] really lacks the full answer
        text = tokenizer.decode(features.input_ids[i][features.token_type_ids[i] == 1])
        assert answer not in text
    # the question is left-stripped, windows are full length, the CLS/padding conventions hold
    assert features.input_ids.shape[1] == 48
    assert torch.all(features.input_ids[:, 0] == tokenizer.cls_token_id)
    assert int(features.example_index.max()) == 0


def test_dev_split_is_by_article(data_dir: Path, tmp_path: Path) -> None:
    split = split_dev_by_article(data_dir / "dev-v1.1.json", tmp_path)
    assert (len(split.train_articles), len(split.heldout_articles)) == (40, 8)
    assert split.train_questions + split.heldout_questions == 10570
    train, heldout = read_squad_records(split.train_json), read_squad_records(split.heldout_json)
    assert not {r.context for r in train} & {r.context for r in heldout}
    assert "NOT THE STANDARD BENCHMARK" in json.loads(split.train_json.read_text())["note"]


def test_a_validation_split_comes_from_the_training_articles_and_never_overlaps(data_dir: Path, tmp_path: Path) -> None:
    split = split_dev_by_article(data_dir / "dev-v1.1.json", tmp_path, validation_articles=4)
    assert (len(split.train_articles), len(split.validation_articles), len(split.heldout_articles)) == (36, 4, 8)
    assert split.train_questions + split.validation_questions + split.heldout_questions == 10570
    parts = [read_squad_records(path) for path in (split.train_json, split.validation_json, split.heldout_json)]
    titles = [{r.title for r in part} for part in parts]
    assert not (titles[0] & titles[1] or titles[0] & titles[2] or titles[1] & titles[2])
    # the held-out articles are the same as without a validation part: the final table reads the same questions
    plain = split_dev_by_article(data_dir / "dev-v1.1.json", tmp_path / "plain")
    assert plain.heldout_articles == split.heldout_articles
    assert set(split.validation_articles) | set(split.train_articles) == set(plain.train_articles)


def test_a_window_budget_is_drawn_from_every_article_in_proportion() -> None:
    """The first-N cut trained the students on 5 of 40 articles; the stratified draw covers every article, keeps
    each article's share, gives the budget exactly, and depends on the seed."""
    from compression.train_features import TrainFeatures

    sizes = {"big": 600, "mid": 300, "small": 90, "tiny": 10}
    strata = [label for label, n in sizes.items() for _ in range(n)]
    n = len(strata)
    features = TrainFeatures(*(torch.arange(n) for _ in range(6)))
    drawn = features.sample(100, seed=1, strata=strata)
    picked = [strata[int(i)] for i in drawn.input_ids]
    assert len(drawn) == 100 and len(set(drawn.input_ids.tolist())) == 100
    assert {label: picked.count(label) for label in sizes} == {"big": 60, "mid": 30, "small": 9, "tiny": 1}
    assert drawn.input_ids.tolist() == sorted(drawn.input_ids.tolist())  # file order kept
    assert drawn.input_ids.tolist() == features.sample(100, seed=1, strata=strata).input_ids.tolist()
    assert drawn.input_ids.tolist() != features.sample(100, seed=2, strata=strata).input_ids.tolist()
    # a budget smaller than the first article alone still reaches every article
    assert {strata[int(i)] for i in features.sample(8, seed=1, strata=strata).input_ids} == set(sizes)


def test_bad_training_file_names_the_file(tmp_path: Path) -> None:
    from harness.errors import DatasetError

    bad = tmp_path / "train.json"
    bad.write_text('{"data": [{"paragraphs": [{"context": 3}]}]}')
    with pytest.raises(DatasetError, match="train.json"):
        read_squad_records(bad)


# ----------------------------------------------------------------------------------------------
# Schedules


def test_the_teacher_evaluation_is_reused_for_the_same_heldout_file_by_content(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from compression.steps.teacher import TEACHER_INFO_FILE, cached_teacher_evaluation

    heldout = tmp_path / "teacher-data" / "dev-split-heldout.json"
    heldout.parent.mkdir()
    heldout.write_text('{"data": [1]}')
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    evaluation = {"f1": 71.9, "windows": 3, "eval_json": str(heldout)}
    (teacher / TEACHER_INFO_FILE).write_text(json.dumps({"evaluation": evaluation}))
    copy = tmp_path / "run" / "dev-split-heldout.json"  # a pruning run's own copy of the split
    copy.parent.mkdir()
    copy.write_text(heldout.read_text())
    assert cached_teacher_evaluation(str(teacher), SimpleNamespace(eval_json=copy, eval_features=[0] * 3)) == evaluation
    assert cached_teacher_evaluation(str(teacher), SimpleNamespace(eval_json=copy, eval_features=[0] * 4)) is None
    copy.write_text('{"data": [2]}')  # another held-out set: evaluate the teacher again
    assert cached_teacher_evaluation(str(teacher), SimpleNamespace(eval_json=copy, eval_features=[0] * 3)) is None


def test_a_teacher_without_a_trained_qa_head_is_refused_and_a_student_without_one_is_warned(tmp_path: Path, caplog) -> None:
    """A pretrained encoder loads as a QA model with a new random head each time: as a teacher it would distil
    noise (the compress-your-own guide's stand-in once did, and its F1 check failed by chance)."""
    from transformers import BertConfig, BertForQuestionAnswering, BertModel

    from compression.checkpoints import load_qa_model

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path / "encoder")
    BertForQuestionAnswering(config).save_pretrained(tmp_path / "qa")
    with pytest.raises(CompressionError, match=r"no trained question-answering head \(qa_outputs.bias, qa_outputs.weight"):
        load_qa_model(tmp_path / "encoder", role="teacher")
    with caplog.at_level("WARNING", logger="compression.checkpoints"):
        load_qa_model(tmp_path / "encoder", role="student")
        assert "student" in caplog.text and "random one" in caplog.text
        caplog.clear()
        load_qa_model(tmp_path / "qa", role="teacher")
        assert caplog.text == ""


def test_lr_schedule_of_the_published_recipe() -> None:
    segments = lr_segments(COMPRESSION_RECIPE)
    spe = 100
    assert recipe_epochs(COMPRESSION_RECIPE) == 30.0
    assert expected_lr(segments, 0, spe) == pytest.approx(1e-4)
    assert expected_lr(segments, 100, spe) == pytest.approx(1e-4 + 0.5 * (1e-6 - 1e-4))  # linear, halfway
    assert expected_lr(segments, 200, spe) == pytest.approx(1e-4)  # epoch 2: the cyclic segment starts
    assert expected_lr(segments, 399, spe) == pytest.approx(5e-5)  # last step of a 2-epoch cycle
    assert expected_lr(segments, 400, spe) == pytest.approx(1e-4)  # rewind
    assert expected_lr(segments, 2800, spe) == pytest.approx(1e-4)  # epoch 28: final linear decay
    assert expected_lr(segments, 2999, spe) == pytest.approx(1e-4 + 0.995 * (1e-6 - 1e-4))
    quant = lr_schedule(QUANTIZATION_RECIPE, 50, 100)
    assert quant[0] == pytest.approx(3e-5) and quant[50] == pytest.approx(1.5e-5) and quant[-1] > 0


def test_lr_schedule_matches_sparseml(tmp_path: Path) -> None:
    """Drive sparseml's own LR modifiers (from the recipe, epochs scaled) and compare every step."""
    from compression.quantize import load_manager
    from compression.sparseml_logging import sparseml_loggers
    from compression.recipes import RecipeModifier, dump_recipe

    recipe = load_recipe(derive_recipe(COMPRESSION_RECIPE, tmp_path / "r.yaml", epoch_scale=0.125))
    lr_only = {"training_modifiers": [m for m in recipe["training_modifiers"]
                                      if m.tag in ("EpochRangeModifier", "LearningRateFunctionModifier")]}
    assert all(isinstance(m, RecipeModifier) for m in lr_only["training_modifiers"])
    path = tmp_path / "lr.yaml"
    path.write_text(dump_recipe(lr_only))
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    manager = load_manager(path)
    spe = 8
    wrapped = manager.modify(model, optimizer, steps_per_epoch=spe, loggers=sparseml_loggers())
    expected = lr_schedule(path, spe, 30)
    for step in range(30):
        wrapped.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected[step], rel=1e-9), step


def test_pruning_schedule_of_the_published_recipe() -> None:
    schedule = pruning_schedule(COMPRESSION_RECIPE)
    steps = schedule.update_steps(steps_per_epoch=10, total_steps=300)
    assert [s / 10 for s in steps] == [float(e) for e in range(2, 29, 2)]  # 14 pruning steps, epochs 2..28
    assert schedule.target(2.0) == pytest.approx(0.25) and schedule.target(28.0) == pytest.approx(0.5)
    after = schedule.sparsity_after_step(10, 300)
    assert after[19] == 0.0 and after[20] == pytest.approx(0.25) and after[-1] == pytest.approx(0.5)


def test_derive_recipe_overrides_and_magnitude_twin(tmp_path: Path) -> None:
    from compression.recipes import SHARED_PRUNING_FIELDS
    from experiments.obs_vs_magnitude import magnitude_recipe

    obs = derive_recipe(COMPRESSION_RECIPE, tmp_path / "obs.yaml", epoch_scale=0.125,
                        overrides={"OBSPruningModifier": {"num_grads": 16}})
    fields = find_modifiers(load_recipe(obs), "OBSPruningModifier")[0].fields
    assert fields["num_grads"] == 16 and fields["end_epoch"] == 3.5 and float(fields["damp"]) == 1e-8
    assert "num_grads=16" in obs.read_text().splitlines()[3]
    twin = find_modifiers(load_recipe(magnitude_recipe(obs, tmp_path / "mag.yaml")), "GlobalMagnitudePruningModifier")
    assert len(twin) == 1 and twin[0].fields == {k: fields[k] for k in SHARED_PRUNING_FIELDS}
    with pytest.raises(RecipeError, match="no QuantizationModifier"):
        derive_recipe(COMPRESSION_RECIPE, tmp_path / "x.yaml", overrides={"QuantizationModifier": {"a": 1}})


# ----------------------------------------------------------------------------------------------
# Training loop: resume


def _resume_setup(tokenizer, tmp_path: Path):
    from compression.architecture import build_model, drop_layers

    words = " ".join(f"w{i} alpha beta" for i in range(40))
    records = [QARecord(f"q{i}", "t", words, f"what is w{i}?", ({"text": f"w{i} alpha", "answer_start": words.index(f"w{i} alpha")},))
               for i in range(0, 40, 3)]
    features = build_train_features(records, tokenizer, WindowParams(max_seq_length=48, doc_stride=16),
                                    progress=False).subset(64)
    recipe = derive_recipe(COMPRESSION_RECIPE, tmp_path / "recipe.yaml", epoch_scale=0.125,
                           overrides={"OBSPruningModifier": {"num_grads": 4}})
    teacher = build_model("tiny")

    def student():
        model = build_model("tiny")
        return drop_layers(model, 2)

    return features, recipe, teacher, student


def test_resume_reproduces_an_uninterrupted_run(tokenizer, tmp_path: Path) -> None:
    from compression.train import TrainSettings, train_with_recipe

    features, recipe, teacher, make_student = _resume_setup(tokenizer, tmp_path)
    assert len(features) == 64
    settings = TrainSettings(batch_size=8, progress=False, trim_padding=True, num_threads=1)
    kwargs = dict(teacher=teacher, sparsity_patterns=pruned_param_patterns(load_recipe(COMPRESSION_RECIPE)))

    straight = make_student()
    full = train_with_recipe(straight, recipe, features, tmp_path / "straight", settings, **kwargs)
    assert full.finished and full.total_steps == 30 and full.trace[-1]["sparsity"] == pytest.approx(0.5, abs=0.005)

    interrupted = make_student()
    part = train_with_recipe(interrupted, recipe, features, tmp_path / "split", settings, stop_after_steps=13, **kwargs)
    assert not part.finished and part.completed_steps == 13  # mid-epoch, after pruning steps at 2, 4, 6, ...
    resumed_model = make_student()
    resumed = train_with_recipe(resumed_model, recipe, features, tmp_path / "split", settings, resume=True, **kwargs)
    assert resumed.finished and resumed.resumed_from_step == 13

    a, b = straight.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    logged = [json.loads(line) for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["lr"], r["sparsity"]) for r in logged] == \
           [(r["step"], r["loss"], r["lr"], r["sparsity"]) for r in full.trace]


def test_sigterm_mid_training_checkpoints_the_step_and_the_run_resumes_identically(tokenizer, tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    from compression.train import TrainSettings, train_with_recipe
    from compression.train_stop import TrainingStopped

    features, recipe, teacher, make_student = _resume_setup(tokenizer, tmp_path)
    settings = TrainSettings(batch_size=8, progress=False, trim_padding=True, num_threads=1)
    kwargs = dict(teacher=teacher, sparsity_patterns=pruned_param_patterns(load_recipe(COMPRESSION_RECIPE)))
    straight = make_student()
    full = train_with_recipe(straight, recipe, features, tmp_path / "straight", settings, **kwargs)

    log_path = tmp_path / "stopped" / "train_log.jsonl"

    def send_sigterm_after_some_steps() -> None:  # as a scheduler or a session's end would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log_path.is_file() and len(log_path.read_text().splitlines()) >= 5:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    handler_before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=send_sigterm_after_some_steps, daemon=True)
    sender.start()
    with pytest.raises(TrainingStopped) as stopped:
        train_with_recipe(make_student(), recipe, features, tmp_path / "stopped", settings, **kwargs)
    sender.join()
    assert stopped.value.signum == signal.SIGTERM and 5 <= stopped.value.step < full.total_steps
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the handler is put back
    resumed_model = make_student()
    resumed = train_with_recipe(resumed_model, recipe, features, tmp_path / "stopped", settings, resume=True, **kwargs)
    assert resumed.finished and resumed.resumed_from_step == stopped.value.step  # no finished step was lost
    a, b = straight.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_in_the_last_training_step_is_passed_on_after_the_handlers_are_restored() -> None:
    import os
    import signal

    from compression.train_stop import StopOnSignal

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.received == signal.SIGTERM and seen == []  # held while the step finishes
        stop.pass_on()
        assert seen == [signal.SIGTERM]  # then handled as it would have been
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_cli_reports_a_stopped_training_with_the_signal_status(monkeypatch, capsys) -> None:
    import argparse
    import signal

    from compression import cli
    from compression.train_stop import TrainingStopped

    def stopped(args):
        raise TrainingStopped(signal.SIGTERM, 17)

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=stopped, verbose=0)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 143
    assert "stopped after step 17, which is checkpointed" in capsys.readouterr().err


def test_cyclic_lr_needs_whole_cycles(tokenizer, tmp_path: Path) -> None:
    from compression.train import TrainSettings, train_with_recipe

    features, recipe, teacher, make_student = _resume_setup(tokenizer, tmp_path)
    with pytest.raises(CompressionError, match="cyclic_linear"):
        train_with_recipe(make_student(), recipe, features.subset(40), tmp_path / "odd",
                          TrainSettings(batch_size=8, progress=False), teacher=teacher)


# ----------------------------------------------------------------------------------------------
# The smoke pipeline, end to end


@pytest.fixture(scope="session")
def smoke_run(data_dir: Path, tmp_path_factory):
    from compression.cli import main

    out = tmp_path_factory.mktemp("smoke")
    started = time.perf_counter()
    status = main(["smoke", "--out-dir", str(out), "--data-dir", str(data_dir), "--no-progress"])
    elapsed = time.perf_counter() - started
    return {"out": out, "status": status, "elapsed": elapsed,
            "reports": {name: json.loads((out / "reports" / f"{name}.json").read_text())
                        for name in ("prune", "quantize", "export", "smoke")}}


def test_smoke_runs_end_to_end_in_time(smoke_run) -> None:
    assert smoke_run["status"] == 0, smoke_run["reports"]["smoke"]["failed"]
    assert smoke_run["elapsed"] < SMOKE_TIME_LIMIT_S, f"smoke took {smoke_run['elapsed']:.0f} s"
    summary = smoke_run["reports"]["smoke"]
    first_keys = {name: next(iter(report)) for name, report in smoke_run["reports"].items()}
    assert set(first_keys.values()) == {"provenance"}, first_keys  # every step report says what produced it
    assert summary["passed"] and set(summary["timings_s"]) >= {"teacher", "prune", "quantize", "export", "total"}
    for name in ("prune", "quantize", "export"):
        report = smoke_run["reports"][name]
        assert report["passed"], (name, report["failed_checks"])
        assert any("NOT THE STANDARD BENCHMARK" in note for note in report["notes"])
        assert any("SMOKE-SCALE" in note for note in report["notes"])


def test_smoke_prune_claims(smoke_run) -> None:
    from compression.architecture import build_model
    from compression.checkpoints import load_qa_model
    from compression.recipes import match_params
    from compression.sparsity import sparsity_report

    out, report = smoke_run["out"], smoke_run["reports"]["prune"]
    pruned = load_qa_model(out / "prune" / "model")
    teacher = load_qa_model(out / "teacher" / "model")
    kept = 2  # the tiny geometry keeps 2 of 4 layers (the real one 14 of 24)
    assert len(pruned.mobilebert.encoder.layer) == kept == report["model"]["layers_kept"]
    assert report["model"]["layers_original"] == len(build_model("tiny").mobilebert.encoder.layer) == 4
    frozen = find_modifiers(load_recipe(COMPRESSION_RECIPE), "TrainableParamsModifier")[0].fields["params"]
    for name in frozen:  # embeddings bit-identical to the starting model
        assert torch.equal(pruned.get_parameter(name), teacher.get_parameter(name)), name
    # kept layers started from the teacher's layers but were trained
    assert not torch.equal(pruned.mobilebert.encoder.layer[0].attention.self.query.weight,
                           teacher.mobilebert.encoder.layer[0].attention.self.query.weight)

    stats = sparsity_report(pruned, match_params(pruned, pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))))
    assert stats["num_params"] == 15 * kept  # exactly the listed parameters, 15 per layer
    assert abs(stats["global_sparsity"] - 0.5) <= 0.005
    assert stats["block4_aligned"] and stats["zeros_outside_zero_blocks"] == 0
    assert stats["global_sparsity"] == pytest.approx(report["sparsity_report"]["global_sparsity"])
    assert Path(report["plots"]["sparsity_heatmap"]).is_file() and Path(report["plots"]["lr"]).is_file()

    # the LR trace against the recipe's schedule, recomputed from the log, at sampled steps
    recipe = out / "prune" / "recipe.yaml"
    trace = [json.loads(line) for line in (out / "prune" / "train_log.jsonl").read_text().splitlines()]
    spe = report["training"]["steps_per_epoch"]
    expected = lr_schedule(recipe, spe, len(trace))
    for step in (0, 1, spe // 4 - 1, spe // 4, spe, len(trace) // 2, len(trace) - 1):
        assert trace[step]["lr"] == pytest.approx(expected[step], rel=1e-9), step
    # every modifier was active: OBS pruned at least twice, distillation loss logged, LR rewound
    assert report["checks"]["sparsity_schedule"]["pruning_step_count"] >= 2
    assert all(r["distill_loss"] is not None for r in trace)
    assert len({round(r["lr"], 12) for r in trace}) > 10
    obs = find_modifiers(load_recipe(recipe), "OBSPruningModifier")[0].fields
    assert (obs["mask_type"], obs["fisher_block_size"], float(obs["damp"]), obs["global_sparsity"]) == ("block4", 4, 1e-8, True)


def test_smoke_quantize_claims(smoke_run) -> None:
    from compression.checkpoints import load_qa_model
    from compression.quantize import is_qat_model
    from compression.report import zero_masks

    out, report = smoke_run["out"], smoke_run["reports"]["quantize"]
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    pruned = load_qa_model(out / "prune" / "model")
    qat = load_qa_model(out / "quantize" / "model")
    assert is_qat_model(qat)
    before, after = zero_masks(pruned, patterns), zero_masks(qat, patterns)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)  # same zeros
    fake_quants = [m for m in qat.modules() if isinstance(m, torch.ao.quantization.FakeQuantizeBase)]
    assert fake_quants and not any(bool(m.observer_enabled[0]) for m in fake_quants)  # qa_outputs included
    assert report["checks"]["qat"]["quantized_embedding_tables"]
    assert report["checks"]["observer_freeze"]["first_frozen_step"] == report["training"]["steps_per_epoch"] // 2 + 1
    assert set(report["checks"]["qat"]["submodules_quantized"]) == {"mobilebert.embeddings", "mobilebert.encoder",
                                                                     "qa_outputs"}


def test_smoke_export_claims(smoke_run) -> None:
    import onnx

    from compression.graph_checks import INT8_MATMUL_OPS, onnx_linear_weights

    out = smoke_run["out"]
    model_dir = out / "model"
    for name in ("model.onnx", "config.json", "tokenizer.json", "vocab.txt", "manifest.json", "verify.json"):
        assert (model_dir / name).is_file(), name
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["trained"] is True and manifest["precision"] == "int8" and manifest["sequence_length"] == 384
    assert set(manifest["steps_ran"]) == {"teacher", "prune", "quantize"}
    assert "NOT THE STANDARD BENCHMARK" in manifest["warning"]
    verify = json.loads((model_dir / "verify.json").read_text())
    assert verify["passed"], verify["failed_checks"]
    ort = verify["checks"]["ort_vs_torch"]
    assert ort["passed"] and ort["max_abs_diff"] <= ort["tolerance"]["bound"]
    assert ort["mean_abs_diff"] <= ort["tolerance"]["mean_bound"]
    # INT8 matmuls for every listed parameter, recomputed from the graph
    weights = onnx_linear_weights(onnx.load(str(model_dir / "model.onnx")))
    listed = manifest["sparsity_details"]["params"]
    assert len(listed) == 30 and all(weights[name].node_op in INT8_MATMUL_OPS for name in listed)
    assert all(canonical_param_name(n) == n for n in listed)
    onnx_eval = smoke_run["reports"]["export"]["evaluation"]["onnx"]
    assert onnx_eval["questions"] > 0 and 0.0 <= onnx_eval["f1"] <= 100.0 and not math.isnan(onnx_eval["f1"])
    # scored against the QAT model before publishing; the smoke preset trains on 128-token windows, so the
    # QAT model's F1 on the export's 384-token windows is measured at export
    f1_check = verify["checks"]["f1_vs_torch"]
    assert f1_check["passed"] and f1_check["onnx"] == onnx_eval and f1_check["torch"]["measured_in"] == "export"
    assert f1_check["torch"]["windows"] == onnx_eval["windows"]
    deepsparse = verify["checks"]["deepsparse_vs_ort"]
    assert deepsparse["passed"] in (True, None)  # None only where DeepSparse cannot run on this CPU


def test_the_cli_console_is_quiet_without_verbose() -> None:
    """Without -v: no pkg_resources deprecation warning (sparseml imports it) and no transformers notice
    that a QA head is newly initialised (fine-tuning an encoder always starts that way); -v shows them."""
    import warnings

    import transformers

    from compression.cli import _configure_logging

    before = transformers.logging.get_verbosity()
    try:
        for verbose, shown in ((False, 0), (True, 1)):
            with warnings.catch_warnings(record=True) as seen:
                warnings.resetwarnings()
                warnings.simplefilter("always")
                transformers.logging.set_verbosity_warning()
                _configure_logging(verbose)
                warnings.warn("pkg_resources is deprecated as an API.", UserWarning)
            assert sum("pkg_resources is deprecated" in str(w.message) for w in seen) == shown
            assert (transformers.logging.get_verbosity() == transformers.logging.ERROR) is not verbose
    finally:
        transformers.logging.set_verbosity(before)
