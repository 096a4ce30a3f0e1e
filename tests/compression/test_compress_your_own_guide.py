"""docs/compression.md, "Compress your own BERT QA model": the guide's commands, extracted from the document and
run end to end on a tiny stand-in BERT (the guide's placeholders replaced by it, the data directory and a temp
output directory); and the full preset's refusal to distil a non-MobileBERT student from its MobileBERT teacher."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "compression.md"
MARKER = "<!-- guide-test -->"


# ----------------------------------------------------------------------------------------------
# --teacher: required for a student that is not a MobileBERT when the preset's teacher is MobileBERT


def _checkpoint(directory: Path, model_type: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    return directory


def test_full_prune_of_a_bert_without_teacher_is_an_error_with_the_fix(tmp_path, capsys) -> None:
    from compression.cli import main

    student = _checkpoint(tmp_path / "my-bert", "bert")
    status = main(["prune", "--model-name-or-path", str(student), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and err.startswith("obert-compress: error: prune:")
    assert "bert model" in err and "neuralmagic/mobilebert-uncased-finetuned-squadv1" in err
    assert f"--teacher {student}" in err
    assert not (tmp_path / "out" / "prune").exists()  # refused before anything ran


def test_full_quantize_of_a_pruned_bert_without_teacher_suggests_the_prune_steps_teacher(tmp_path, capsys) -> None:
    from compression.cli import main

    pruned = _checkpoint(tmp_path / "out" / "prune" / "model", "bert")
    (pruned / "compression_info.json").write_text(json.dumps({"teacher": "/models/my-dense-bert"}))
    status = main(["quantize", "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.startswith("obert-compress: error: quantize:") and "--teacher /models/my-dense-bert" in err


@pytest.mark.parametrize("preset, model_type, teacher, refused", [
    ("full", "bert", None, True),
    ("full", "mobilebert", None, False),  # the published setup: MobileBERT from MobileBERT
    ("full", "bert", "/my/teacher", False),
    ("smoke", "bert", None, False),  # smoke has no hub teacher: the student distils from itself
])
def test_which_students_need_a_teacher(tmp_path, preset, model_type, teacher, refused) -> None:
    from compression.cli import _require_teacher
    from compression.errors import CompressionError

    student = str(_checkpoint(tmp_path / "student", model_type))
    args = argparse.Namespace(preset=preset, teacher=teacher, command="prune")
    if refused:
        with pytest.raises(CompressionError, match="--teacher"):
            _require_teacher(args, student)
    else:
        _require_teacher(args, student)


# ----------------------------------------------------------------------------------------------
# The guide, end to end


def guide_blocks(text: str) -> list[str]:
    """The ```bash blocks that follow a ``<!-- guide-test -->`` marker, in order."""
    return re.findall(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, flags=re.S)


def test_the_guide_has_marked_blocks_covering_the_whole_flow() -> None:
    blocks = guide_blocks(GUIDE.read_text())
    script = "\n".join(blocks)
    assert len(blocks) >= 4
    for needle in ("--model-name-or-path", "--teacher", "compression prune", "compression quantize",
                   "compression export", "./run_offline.sh --model"):
        assert needle in script, needle


PLACEHOLDERS = ("MODEL", "TEACHER", "DATA", "OUT")


def _substitute(script: str, values: dict[str, str]) -> str:
    """Replace the values the guide's settings block gives the placeholders (``NAME=...`` at a line's start)."""
    for name in PLACEHOLDERS:
        script, count = re.subn(rf"^{name}=.*$", f"{name}={values[name]}", script, count=1, flags=re.M)
        assert count == 1, f"the guide sets no {name}=..."
    return script


def tiny_bert_qa(directory: Path, data_dir: Path, vocab: Path) -> Path:
    """The stand-in for "your fine-tuned BERT QA model": a BertForQuestionAnswering of a tiny geometry (2 layers,
    hidden 32) with the BERT uncased vocabulary, fine-tuned densely for a few seconds on the dev-train split the way
    the smoke preset's own teacher is (a model with random logits near zero would fail the export's F1 check by
    chance: 8-bit rounding flips its answers)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

    from compression.presets import get_pipeline_preset
    from compression.recipes import dense_recipe, dump_recipe
    from compression.steps.config import RunConfig
    from compression.steps.data import prepare_data
    from compression.train import train_with_recipe

    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=64,
                                                max_position_embeddings=512))
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    preset = get_pipeline_preset("smoke")
    finetune = preset.teacher_finetune
    work = directory.with_name(directory.name + "-finetune")
    config = RunConfig(preset=preset, out_dir=work, data_dir=data_dir, progress=False,
                       max_train_questions=finetune.max_questions)
    recipe = work / "recipe.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(dump_recipe(dense_recipe(finetune.epochs, finetune.learning_rate)))
    train_with_recipe(model.train(), recipe, prepare_data(config, tokenizer).train_features, work,
                      config.settings(finetune.learning_rate, fp16=False), description="stand-in")
    model.eval().save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.mark.slow
def test_the_guide_runs_end_to_end_on_a_tiny_bert(dev_files, tmp_path) -> None:
    data_dir = dev_files.dev_json.parent
    started = time.monotonic()
    model = tiny_bert_qa(tmp_path / "tiny-bert", data_dir, dev_files.vocab)
    print(f"stand-in fine-tuned in {time.monotonic() - started:.0f} s")
    out = tmp_path / "out"
    script = _substitute("\n".join(guide_blocks(GUIDE.read_text())),
                         {"MODEL": str(model), "TEACHER": str(model), "DATA": str(data_dir), "OUT": str(out)})
    env = {**os.environ, "OBERT_OFFLINE": "1", "OBERT_CACHE_DIR": str(tmp_path / "cache"),
           "OBERT_MODELS_DIR": str(tmp_path / "models")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is the venv's
    started = time.monotonic()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", f"cd {REPO}\n{script}\n", "--"], env=env,
                          capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"guide failed ({elapsed:.0f} s):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"

    # the exported model: INT8, sparse, a BERT, verified
    model_dir = out / "model"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["geometry"]["family"] == "bert"
    verification = json.loads((model_dir / "verify.json").read_text())
    assert verification["passed"] and not verification["failed_checks"]
    assert (model_dir / "model.onnx").is_file() and (model_dir / "model-qdq.onnx").is_file()
    prune_report = json.loads((out / "reports" / "prune.json").read_text())
    assert prune_report["model"]["teacher"] == str(model) and prune_report["model"]["geometry"]["family"] == "bert"

    # the harness ran it: a performance and an accuracy run, complete, on that model, with an F1 (meaningless here)
    records = {json.loads(p.read_text())["mode"]: p.parent for p in (out / "runs").glob("*/run.json")}
    assert set(records) == {"performance", "accuracy"}, proc.stdout[-3000:]
    for run_dir in records.values():
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "complete" and Path(record["model"]["path"]).parent == model_dir
    accuracy = json.loads((records["accuracy"] / "accuracy.txt").read_text())
    assert 0 <= accuracy["f1"] <= 100
    assert elapsed < 300, f"the guide took {elapsed:.0f} s"
