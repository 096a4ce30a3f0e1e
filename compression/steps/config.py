"""What every step gets besides its own options: the preset, the output directory and the run-wide settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compression.presets import PipelinePreset
from compression.train import TrainSettings, resolve_device


@dataclass
class RunConfig:
    """Everything a step needs besides its own options (built by the CLI from flags and the preset)."""

    preset: PipelinePreset
    out_dir: Path
    data_dir: Path | None = None
    train_data: str | None = None  # None: the preset's
    eval_data: Path | None = None  # None: held-out split (dev-split training) or the data dir's dev set
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    batch_size: int | None = None
    seed: int | None = None
    max_train_questions: int | None = -1  # -1: the preset's; None: all
    max_eval_windows: int | None = -1

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or self.preset.batch_size

    @property
    def effective_seed(self) -> int:
        return self.preset.seed if self.seed is None else self.seed

    @property
    def effective_max_train_questions(self) -> int | None:
        return self.preset.max_train_questions if self.max_train_questions == -1 else self.max_train_questions

    @property
    def effective_max_eval_windows(self) -> int | None:
        return self.preset.max_eval_windows if self.max_eval_windows == -1 else self.max_eval_windows

    def settings(self, learning_rate: float, fp16: bool) -> TrainSettings:
        device = resolve_device(self.device)
        return TrainSettings(
            batch_size=self.effective_batch_size, seed=self.effective_seed, learning_rate=learning_rate,
            fp16=fp16 and device.startswith("cuda"), device=device, trim_padding=self.preset.trim_padding,
            num_threads=self.threads or self.preset.threads, progress=self.progress,
            checkpoint_interval_s=self.preset.checkpoint_interval_s,
        )
