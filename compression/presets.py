"""Pipeline presets: ``full`` is the published oBERT-MobileBERT setup, ``smoke`` the same recipes at toy
scale for a CPU.

``full`` (needs a GPU, SQuAD train and the teacher; see ``seed_commands.md``):
  teacher and starting model ``neuralmagic/mobilebert-uncased-finetuned-squadv1``; SQuAD v1.1 train (Hugging
  Face ``squad``); windows of 384 tokens overlapping by 128; batch 16; AdamW; seed 42; pruning 30 epochs
  (initial LR 1e-4, fp16) and QAT 2 epochs (initial LR 3e-5, fp32) with the packaged recipes unchanged
  (only the LayerPruningModifier is replaced by dropping the layers directly); evaluation on all of
  SQuAD dev after every epoch.

``smoke`` (minutes on 2 CPU cores, offline):
  the ``tiny`` geometry (4 layers, 2 kept); a teacher fine-tuned densely from scratch on a slice of the
  dev-train split (cached); the same recipes with every epoch field scaled (pruning x1/8: 3.75 epochs,
  pruning steps every 0.25 epochs from 0.25 to 3.5; QAT x1/2: 1 epoch, observers frozen at 0.5), OBS with
  16 gradients; 640 training windows of 128 tokens (40 steps per epoch) and batches cut to their longest
  window; one torch thread. Every modifier stays active.
  Its numbers show that the pipeline works, nothing about the published model's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compression.errors import CompressionError
from compression.train_features import WindowParams
from squad.features import FeatureParams

PUBLISHED_TEACHER = "neuralmagic/mobilebert-uncased-finetuned-squadv1"


@dataclass(frozen=True)
class TeacherFinetune:
    """Dense fine-tuning of a from-scratch tiny model, used as teacher and starting point offline."""

    epochs: float
    learning_rate: float
    max_questions: int | None


@dataclass(frozen=True)
class PipelinePreset:
    name: str
    description: str
    model: str | None  # starting checkpoint (hub id / dir); None: build the geometry and fine-tune a teacher
    teacher: str | None
    geometry: str | None  # architecture preset of a from-scratch model
    train_data: str  # "hf:squad", "dev-split" or a SQuAD-format file
    window: WindowParams
    eval_params: FeatureParams
    batch_size: int = 16
    seed: int = 42
    prune_learning_rate: float = 1e-4
    quantize_learning_rate: float = 3e-5
    prune_fp16: bool = False
    quantize_fp16: bool = False
    prune_epoch_scale: float | None = None
    quantize_epoch_scale: float | None = None
    recipe_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_train_questions: int | None = None
    max_train_windows: int | None = None  # cut the training windows (keeps steps/epoch a round number)
    # how max_train_windows picks: "first" (file order: the first articles only) or "sample" (at random, seeded with
    # the run's seed, stratified by article in proportion to its windows: a budget covers every training article)
    train_window_selection: str = "first"
    validation_articles: int = 0  # dev-split: training articles set aside to evaluate on (never trained on)
    threads: int | None = None  # torch CPU threads (1 for smoke: 2 threads on 2 shared cores thrash)
    max_eval_windows: int | None = None
    eval_every_epoch: bool = False
    trim_padding: bool = False
    teacher_finetune: TeacherFinetune | None = None
    checkpoint_interval_s: float | None = None  # also checkpoint mid-epoch this often (long CPU epochs)
    expected: dict[str, str] = field(default_factory=dict)


PRESETS: dict[str, PipelinePreset] = {
    "full": PipelinePreset(
        name="full",
        description="the published oBERT-MobileBERT setup (GPU): 30 epochs pruning + 2 epochs QAT on SQuAD v1.1 train",
        model=PUBLISHED_TEACHER,
        teacher=PUBLISHED_TEACHER,
        geometry=None,
        train_data="hf:squad",
        window=WindowParams(max_seq_length=384, doc_stride=128),
        eval_params=FeatureParams(max_seq_length=384, doc_stride=128, max_query_length=64),
        prune_fp16=True,
        eval_every_epoch=True,
        expected={
            "steps_per_epoch": "about 5,540 (88.6k training windows / batch 16)",
            "prune_time": "about 30-40 h on one A100/H100-class GPU (30 epochs; OBS steps with 512 gradients "
                          "add a few minutes each, 14 of them)",
            "quantize_time": "about 3-4 h (2 epochs, fp32 fake-quantization)",
            "gpu_memory": "about 6 GB (student + teacher + AdamW state + OBS Fisher blocks at batch 16, fp16)",
        },
    ),
    "smoke": PipelinePreset(
        name="smoke",
        description="toy-scale run of the same recipes on CPU (tiny MobileBERT, dev split, epochs scaled down)",
        model=None,
        teacher=None,
        geometry="tiny",
        train_data="dev-split",
        window=WindowParams(max_seq_length=128, doc_stride=32),
        eval_params=FeatureParams(max_seq_length=128, doc_stride=64, max_query_length=32),
        prune_epoch_scale=0.125,
        quantize_epoch_scale=0.5,
        recipe_overrides={"OBSPruningModifier": {"num_grads": 16}},
        max_train_questions=300,
        max_train_windows=640,  # 40 steps/epoch: every scaled epoch boundary (x0.25) falls on a whole step
        max_eval_windows=640,
        threads=1,
        trim_padding=True,
        teacher_finetune=TeacherFinetune(epochs=4.0, learning_rate=1e-3, max_questions=300),
        expected={"total_time": "about 2-3 minutes on 2 CPU cores"},
    ),
}


def get_pipeline_preset(name: str) -> PipelinePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise CompressionError(f"unknown --preset {name!r}; expected one of {', '.join(PRESETS)}") from None
