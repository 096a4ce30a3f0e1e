"""Experiment ``real-accuracy``: a pretrained BERT-family encoder through the whole pipeline and the harness
(``python -m experiments real-accuracy``; the protocol, its settings and its results: docs/accuracy.md).

The 48 SQuAD v1.1 dev articles are split by article: 36 for training, 4 for validation (every choice a step makes),
8 held out (read once, for the tables): NOT the standard benchmark. The encoder is fine-tuned into a dense teacher,
pruned with oBERT and two magnitude baselines at several sparsities and seeds (with distillation), the 50% oBERT
model gets INT8 QAT, and every model is exported through the one export path, verified. Each finished part is
scored on the held-out articles by PyTorch and through ``python -m harness run`` and written as a row that can be
committed as it grows; the engine comparison runs the teacher, the QAT model and its INT8 export on every engine.

Everything is cached under ``--out-dir`` and keyed by its settings: an interrupted experiment continues where it
stopped (training resumes from its last checkpoint).

Modules: :mod:`~experiments.real_accuracy.config` (what it trains and measures, file names),
:mod:`~experiments.real_accuracy.stages` (teacher, pruning, QAT and export runs through
:mod:`compression.steps`, held-out scores; their caching), :mod:`~experiments.real_accuracy.harness_driver`
(``python -m harness run`` jobs and their run.json records), :mod:`~experiments.real_accuracy.rows` (the committed
rows and the protocol table), :mod:`~experiments.real_accuracy.results` (the engine comparison's rows, seed
statistics and checks), :mod:`~experiments.real_accuracy.tables` (the Markdown table and the plots),
:mod:`~experiments.real_accuracy.run` (the whole experiment).
"""

from experiments.real_accuracy.config import RealAccuracyConfig
from experiments.real_accuracy.run import run_real_accuracy

__all__ = ["RealAccuracyConfig", "run_real_accuracy"]
