"""oBERT compression pipeline for MobileBERT: layer dropping, 4-block oBERT pruning with KD, INT8 QAT,
ONNX export."""

__version__ = "0.1.0"
