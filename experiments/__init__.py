"""Experiments: measurements that run the compression pipeline and the harness together, above both (nothing in
``squad``, ``engines``, ``harness`` or ``compression`` imports this package).

- :mod:`experiments.obs_vs_magnitude`: is the second-order (oBERT) machinery at work? oBERT against magnitude
  pruning at the same 4-block sparsity on a small model.
- :mod:`experiments.real_accuracy`: a pretrained BERT-family encoder through compression and the harness.
- :mod:`experiments.cli`: ``python -m experiments NAME`` (console script ``obert-experiment``).
"""
