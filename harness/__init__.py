"""MLPerf Inference harness for oBERT-compressed MobileBERT on SQuAD v1.1."""

__version__ = "0.1.0"

import os as _os

# DeepSparse and SparseZoo send usage analytics on import unless told not to; a benchmark harness that
# often runs offline should neither phone home nor wait on the network. Set it to 0 to allow them.
_os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
