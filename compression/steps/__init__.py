"""The compression steps as the pipeline runs them: ``prune`` -> ``quantize`` -> ``export`` (and, offline, the smoke
teacher), one module per step. Each step reads the previous step's output by default, writes its own report and
checks what the report claims (:mod:`compression.report`); a failed check is reported (and makes the CLI exit
non-zero) but keeps the artifacts for inspection. Every step ends in :func:`compression.steps.common.finish_step`.

Layout of an output directory (``--out-dir``):

```
data/        dev split (offline), feature caches, the tokenizer's vocab
teacher/     smoke only: the densely fine-tuned tiny teacher (HF checkpoint + teacher.json), cached
prune/       recipe.yaml (derived), train_log.jsonl, epochs.jsonl, checkpoint/, model/ (HF checkpoint)
quantize/    recipe.yaml, train_log.jsonl, epochs.jsonl, checkpoint/, model/ (QAT state + config + tokenizer)
model/       the exported model directory (model.onnx, manifest.json, verify.json, config, tokenizer)
reports/     prune.json, quantize.json, export.json and their plots
pipeline.json  which steps ran, when, how long, with which settings
```

- :mod:`compression.steps.config`: :class:`RunConfig`, what every step gets besides its own options
- :mod:`compression.steps.common`: ``pipeline.json`` and reports, :func:`finish_step`
- :mod:`compression.steps.data`: a step's training and evaluation windows, held-out evaluation
- :mod:`compression.steps.teacher`: the smoke preset's teacher
- :mod:`compression.steps.prune`, :mod:`~compression.steps.quantize`, :mod:`~compression.steps.export`: the steps
- :mod:`compression.steps.smoke`: all of them at toy scale

The library they use (models, recipes, training, export, verification) is the rest of :mod:`compression`.
"""

from compression.steps.config import RunConfig
from compression.steps.export import run_export
from compression.steps.prune import run_prune
from compression.steps.quantize import run_quantize
from compression.steps.smoke import run_smoke

__all__ = ["RunConfig", "run_export", "run_prune", "run_quantize", "run_smoke"]
