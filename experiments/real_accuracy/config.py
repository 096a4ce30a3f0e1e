"""What the real-accuracy experiment trains and measures (:class:`RealAccuracyConfig`), the pipeline preset its
steps run with, its file names and row labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compression.presets import PipelinePreset
from compression.train_features import WindowParams
from squad.features import FeatureParams

LABEL = ("trained on 40 SQuAD v1.1 dev articles, evaluated on the 8 held out: NOT the standard benchmark")
RESULTS_FILE = "real_accuracy.json"
TABLE_FILE = "real_accuracy.md"
PLOT_FILE = "real_accuracy.png"
SPARSITY_PLOT_FILE = "real_accuracy_f1_vs_sparsity.png"


@dataclass(frozen=True)
class RealAccuracyConfig:
    """What the experiment trains and measures (the defaults fit a 2-core CPU in a few hours)."""

    pretrained: str = "all-minilm-l6-v2"
    # 256-token training windows (96 overlapping): one window holds nearly every SQuAD paragraph with its
    # question, at about half the time per window of 384 (docs/accuracy.md, "Why these sizes").
    window: WindowParams = WindowParams(max_seq_length=256, doc_stride=96)
    eval_params: FeatureParams = FeatureParams()  # MLPerf's 384/128/64: the windows the harness scores
    batch_size: int = 16
    threads: int = 2
    teacher_seed: int = 42
    teacher_epochs: float = 2.0  # over all ~9,960 training windows
    teacher_max_windows: int | None = None
    max_train_questions: int | None = None  # every question of the training articles
    validation_articles: int = 4  # of the 40 non-held-out articles: evaluated on for every choice, never trained on
    teacher_learning_rate: float = 1e-4
    prune_windows: int = 2000  # training windows per pruning "epoch" (125 steps at batch 16), from every article
    prune_epoch_scale: float = 0.1  # the recipe's 30 epochs -> 3; pruning every 25 steps from step 25 to 350
    quantize_epoch_scale: float = 0.5  # the QAT recipe's 2 epochs -> 1; observers frozen after half of it
    num_grads: int = 32  # OBS Fisher gradients per pruning step (the recipe: 512)
    sparsities: tuple[float, ...] = (0.5, 0.8)
    methods: tuple[str, ...] = ("obs", "magnitude", "magnitude-layer")  # compression.recipes.PRUNING_METHODS
    seeds: tuple[int, ...] = (42, 43)
    single_seed_above: float = 0.5  # rows of a higher sparsity run the first seed only (the budget: README)
    quantize_sparsity: float = 0.5  # the oBERT model that gets INT8 QAT
    max_eval_windows: int | None = None
    checkpoint_interval_s: float | None = 600.0
    harness: bool = True
    harness_max_questions: int | None = None  # quick runs: only the first held-out questions go to the harness
    harness_backends: tuple[str, ...] = ("deepsparse", "openvino", "onnxruntime")
    # every row's model also runs through the harness on this engine (its FP32 is PyTorch's arithmetic: F1 agrees)
    row_harness_backend: str = "onnxruntime"
    padded_backends: tuple[str, ...] = ("deepsparse", "openvino", "onnxruntime")  # also run without length buckets
    single_stream_duration_ms: int = 20000
    # Below any single-window latency of the models measured, so that LoadGen never runs out of queries
    # (it generates 2 x duration / this up front); quick()'s toy model needs far less.
    single_stream_expected_latency_ms: float = 0.5

    @staticmethod
    def quick() -> RealAccuracyConfig:
        """Minutes instead of hours, for tests (numbers not meaningful)."""
        # 60%, not the recipe's 50%: a final_sparsity override that did not take would show
        return RealAccuracyConfig(window=WindowParams(max_seq_length=128, doc_stride=48), teacher_epochs=1.0,
                                  teacher_max_windows=160, prune_windows=160, max_train_questions=300, num_grads=4,
                                  sparsities=(0.6,), quantize_sparsity=0.6, methods=("obs",),
                                  seeds=(42, 43), single_seed_above=1.0, threads=1,
                                  max_eval_windows=48, checkpoint_interval_s=None,
                                  harness_backends=("onnxruntime", "openvino"), padded_backends=("onnxruntime",),
                                  harness_max_questions=60,
                                  single_stream_duration_ms=1000, single_stream_expected_latency_ms=0.005)

    def fingerprint(self, *names: str) -> dict[str, Any]:
        values = asdict(self)
        return {name: values[name] for name in names}

    def seeds_for(self, sparsity: float) -> tuple[int, ...]:
        return self.seeds if sparsity <= self.single_seed_above else self.seeds[:1]


def pipeline_preset(config: RealAccuracyConfig, teacher_dir: Path | None, *, sparsity: float | None = None,
                    max_windows: int | None = None) -> PipelinePreset:
    """The preset the experiment's pipeline steps run with (``sparsity``: the pruning target)."""
    overrides = {}
    if sparsity is not None:
        overrides = {"OBSPruningModifier": {"final_sparsity": sparsity, "num_grads": config.num_grads}}
    return PipelinePreset(
        name="real-accuracy", description="pretrained BERT-family encoder on the dev split (CPU-sized schedule)",
        model=str(teacher_dir) if teacher_dir else None, teacher=str(teacher_dir) if teacher_dir else None,
        geometry=None, train_data="dev-split", window=config.window, eval_params=config.eval_params,
        batch_size=config.batch_size, prune_epoch_scale=config.prune_epoch_scale,
        quantize_epoch_scale=config.quantize_epoch_scale, recipe_overrides=overrides, max_train_windows=max_windows,
        train_window_selection="sample", validation_articles=config.validation_articles,
        max_eval_windows=config.max_eval_windows, threads=config.threads, trim_padding=True,
        checkpoint_interval_s=config.checkpoint_interval_s,
    )


METHOD_LABELS = {"obs": "oBERT", "magnitude": "global magnitude", "magnitude-layer": "per-layer magnitude"}


def row_label(method: str, sparsity: float) -> str:
    return f"{METHOD_LABELS[method]} {round(100 * sparsity)}%"
