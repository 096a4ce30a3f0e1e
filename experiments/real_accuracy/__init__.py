"""Experiment ``real-accuracy``: a pretrained BERT-family encoder through the whole pipeline and the harness
(``python -m experiments real-accuracy``).

The 48 SQuAD v1.1 dev articles are split by article: 8 held out (read once, for the final table), 4 for
validation (every evaluation a step makes, and so every choice: the export's F1 check), 36 for training.

1. **Teacher**: the pretrained encoder (default the all-MiniLM-L6-v2 wheel, :mod:`compression.pretrained`)
   with a new QA head, fine-tuned densely on every window of the 36 training articles.
2. **Pruning**: the packaged oBERT recipe, derived for the model's family, with distillation from the teacher:
   OBS (OBSPruningModifier), global magnitude (GlobalMagnitudePruningModifier) and per-layer magnitude
   (MagnitudePruningModifier), the last two with the same schedule, params and mask, to 50% and 80% 4-block
   sparsity, per seed. The recipe's epochs are scaled down to fit a CPU (``prune_epoch_scale``); each run's
   window budget is drawn at random (its seed) from every one of the 36 training articles, in proportion to its
   windows (``TrainFeatures.sample``), and its report records the articles it covers. Every 50% run comes first (all methods and seeds), then QAT, then
   the 80% runs.
3. **QAT** of the 50% oBERT model (the quantization recipe, derived likewise), then **export** of every model
   (dense teacher, the pruned ones FP32, the QAT one INT8) through the one export path, verified; the table's
   sparsity is read from each export (``verify.json``).
4. **Rows, as each part finishes**: every finished part (the teacher, each pruning run, the QAT) is exported, scored
   once on the held-out articles by PyTorch and through ``python -m harness run`` on one engine, and written as a
   row (:mod:`~experiments.real_accuracy.rows`) into a results directory that can be committed as it grows
   (``--commit``); the protocol table is regenerated from the rows each time and names the parts still missing. A
   part whose row is committed is not trained again on a machine that lost its model.
5. **Engine comparison**: the 8 held-out articles are written as a SQuAD file in a data directory the harness
   accepts, and ``python -m harness run`` (a separate process: its command line, as a user runs it) scores and
   times the dense teacher, the QAT's oBERT model and its INT8 export with DeepSparse, OpenVINO and ONNX Runtime,
   with and without length bucketing, the INT8 model also packed and with DeepSparse's ``NM_FAST_VNNI_EMULATION``.

Its machine time (hours on 2 cores, over several sessions: everything resumes) is in docs/accuracy.md.

Everything is cached under ``--out-dir`` and keyed by its settings: an interrupted experiment continues where
it stopped (training resumes from its last checkpoint, mid-epoch ones every ``checkpoint_interval_s``).
Every figure is from training on 40 SQuAD v1.1 dev articles and evaluating on the 8 held out: NOT the
standard benchmark.

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
