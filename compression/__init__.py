"""oBERT compression pipeline for MobileBERT: layer dropping, 4-block oBERT pruning with KD, INT8 QAT,
ONNX export."""

import os

__version__ = "0.1.0"

# sparseml, sparsezoo and deepsparse send usage analytics (and look up the country) over the network
# when imported; this pipeline runs offline, so opt out unless the user decided otherwise.
os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
