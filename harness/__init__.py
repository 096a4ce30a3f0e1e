"""MLPerf Inference harness for oBERT-compressed MobileBERT on SQuAD v1.1."""

__version__ = "0.1.0"
